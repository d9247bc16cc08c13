"""The README's sample.py and evaluate.py examples run as written against a tiny run.

Only paths and sizes are substituted: the run directory, the input folder, the output folder,
and ``--num`` (the tiny run is evaluated on a handful of samples).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_commands(script: str) -> list[str]:
  """Every ``python <script> ...`` command of the README's code blocks (continuations joined)."""
  text = open(os.path.join(REPO_ROOT, 'README.md')).read()
  blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
  commands = []
  for block in blocks:
    for command in block.replace('\\\n', ' ').splitlines():
      command = command.split('#')[0].strip()
      if command.startswith(f'python {script}'):
        commands.append(command)
  return commands


def _run(command: str, substitutions: dict) -> subprocess.CompletedProcess:
  args = []
  for arg in shlex.split(command):
    for key, value in substitutions.items():
      if arg.startswith(key):
        arg = value + arg[len(key):]
        break
    args.append(arg)
  return subprocess.run([sys.executable] + args[1:], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600)


def test_readme_sample_examples_run(trained_run, shared_data, tmp_path):
  # The multi-domain example (runs/ovg/..., --method ovg) needs a class-conditional run: its
  # flags are exercised on one by tests/e2e/test_two_domain.py.
  commands = [c for c in readme_commands('sample.py') if 'runs/quickstart' in c]
  assert {'generate', 'translate', 'invert'} <= {c.split('--mode ')[1].split()[0]
                                                  for c in commands}
  images = tmp_path / 'my_images'
  images.mkdir()
  for stem in ['100007', '100039']:
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', 'test', stem + '.jpg'), images)
  substitutions = {'runs/quickstart': trained_run, 'my_images/': str(images) + '/',
                   'out/': str(tmp_path / 'out') + '/'}
  for command in commands:
    result = _run(command, substitutions)
    assert result.returncode == 0, command + '\n' + result.stderr[-2000:]
    assert 'error' not in result.stderr.lower(), command + '\n' + result.stderr[-2000:]
  assert (tmp_path / 'out' / 'generate' / 'samples.png').exists()
  assert (tmp_path / 'out' / 'phipd' / 'grid.png').exists()
  assert (tmp_path / 'out' / 'invert' / 'inverted.npz').exists()


def test_readme_evaluate_generate_example_runs(trained_run, tmp_path):
  command = [c for c in readme_commands('evaluate.py') if '--mode' not in c][0]
  other = os.path.join(os.path.dirname(trained_run), 'other')
  shutil.copytree(trained_run, other)
  command = command.replace('--num 256', '--num 8')
  result = _run(command, {'runs/a,runs/b': f'{trained_run},{other}',
                          'out/': str(tmp_path / 'out') + '/'})
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'evaluated 2 run(s)' in result.stdout  # Both workdirs, not only the first.
  assert (tmp_path / 'out' / 'generate.json').exists()


def test_translation_study_on_any_ab_folder(trained_run, shared_data, tmp_path):
  """--eval_dir points the study at any pix2pix AB folder; the folder is in the JSON and table."""
  folder = tmp_path / 'ab'
  folder.mkdir()
  source = os.path.join(shared_data, 'edges2shoes_handbags', 'train')
  for name in sorted(os.listdir(source))[:34]:
    shutil.copy(os.path.join(source, name), folder)
  out = tmp_path / 'study.json'
  result = subprocess.run(
      [sys.executable, 'evaluate.py', '--mode', 'translate', '--workdirs', trained_run,
       '--eval_dir', str(folder), '--tasks', 'edges', '--num', '2', '--radii', '4',
       '--structured_radii', '4', '--strengths', '0.5', '--json', str(out)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  import json
  summary = json.loads(out.read_text())
  assert summary['eval_dir'] == str(folder) and summary['data'].startswith(str(folder))
  methods = {r['setting'] for r in summary['rows'] if r['method'] != 'reference'}
  assert methods == {'phipd r=4', 'structured_sdedit r=4 s=0.5', 'sdedit s=0.5', 'generate'}
  rows = [r for r in summary['rows'] if r['method'] == 'reference']
  assert {r['setting'] for r in rows} >= {'ground truth', 'input itself'}


def test_help_exits_0_for_every_entry_point():
  for script in ('train.py', 'sample.py', 'evaluate.py', 'benchmark.py'):
    result = subprocess.run([sys.executable, script, '--help'], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (script, result.stderr[-1000:])
    assert '--' in result.stdout
