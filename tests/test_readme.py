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

import pytest

from phipd_jax import trainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, tfds_dir):
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size, config.data.resize = 16, 48
  config.train.num_steps, config.train.checkpoint_every = 2, 2
  config.optim.warmup_steps, config.sample.write_grids = 1, False
  workdir = str(tmp_path_factory.mktemp('readme') / 'quickstart')
  trainer.train(config, workdir)
  return workdir


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


def test_readme_sample_examples_run(tiny_run, shared_data, tmp_path):
  commands = readme_commands('sample.py')
  assert {'generate', 'translate', 'invert'} <= {c.split('--mode ')[1].split()[0]
                                                  for c in commands}
  images = tmp_path / 'my_images'
  images.mkdir()
  for stem in ['100007', '100039']:
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', 'test', stem + '.jpg'), images)
  substitutions = {'runs/quickstart': tiny_run, 'my_images/': str(images) + '/',
                   'out/': str(tmp_path / 'out') + '/'}
  for command in commands:
    result = _run(command, substitutions)
    assert result.returncode == 0, command + '\n' + result.stderr[-2000:]
    assert 'error' not in result.stderr.lower(), command + '\n' + result.stderr[-2000:]
  assert (tmp_path / 'out' / 'generate' / 'samples.png').exists()
  assert (tmp_path / 'out' / 'phipd' / 'grid.png').exists()
  assert (tmp_path / 'out' / 'invert' / 'inverted.npz').exists()


def test_readme_evaluate_generate_example_runs(tiny_run, tmp_path):
  command = [c for c in readme_commands('evaluate.py') if '--mode' not in c][0]
  other = os.path.join(os.path.dirname(tiny_run), 'other')
  shutil.copytree(tiny_run, other)
  command = command.replace('--num 256', '--num 8')
  result = _run(command, {'runs/a,runs/b': f'{tiny_run},{other}',
                          'out/': str(tmp_path / 'out') + '/'})
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'evaluated 2 run(s)' in result.stdout  # Both workdirs, not only the first.
  assert (tmp_path / 'out' / 'generate.json').exists()


def test_translation_study_on_any_ab_folder(tiny_run, shared_data, tmp_path):
  """--eval_dir points the study at any pix2pix AB folder; the folder is in the JSON and table."""
  folder = tmp_path / 'ab'
  folder.mkdir()
  source = os.path.join(shared_data, 'edges2shoes_handbags', 'train')
  for name in sorted(os.listdir(source))[:34]:
    shutil.copy(os.path.join(source, name), folder)
  out = tmp_path / 'study.json'
  result = subprocess.run(
      [sys.executable, 'evaluate.py', '--mode', 'translate', '--workdirs', tiny_run,
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
