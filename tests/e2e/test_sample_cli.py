"""train.py writes sample grids; sample.py generates and translates real images end to end."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sample(*args):
  return subprocess.run([sys.executable, 'sample.py', *args], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600)


def test_train_writes_grids_metrics_and_config(trained_run):
  samples = os.path.join(trained_run, 'samples')
  grid = np.asarray(Image.open(os.path.join(samples, 'translate_000004.png')))
  # 3 translation rows; columns: input, 3 phi-PD radii, 2 SDEdit strengths, the photo.
  assert grid.shape[1] > 7 * 16 * 6 and grid.shape[0] > 3 * 16 * 6
  assert np.load(os.path.join(samples, 'generate_000004.npz'))['samples'].shape == (4, 16, 16, 3)
  assert os.path.exists(os.path.join(trained_run, 'config.json'))
  assert os.listdir(os.path.join(trained_run, 'tb'))


def test_translate_folder_with_a_bad_file(trained_run, shared_data, tmp_path):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  for stem in ['100007', '100039']:
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', 'test', stem + '.jpg'), inputs)
  Image.open(inputs / '100039.jpg').convert('RGBA').save(inputs / 'rgba.png')
  (inputs / 'broken.jpg').write_bytes(b'not an image')
  output = tmp_path / 'out'
  for method in ['phipd']:  # sdedit on a folder: tests/e2e/test_readme.py.
    result = _sample('--workdir', trained_run, '--mode', 'translate', '--input', str(inputs),
                     '--method', method, '--radius', '3', '--strength', '0.8', '--resize',
                     '--output', str(output / method))
    assert result.returncode == 1, result.stderr[-2000:]  # One input failed ...
    assert 'broken.jpg' in result.stderr  # ... reported by name ...
    assert 'mode RGBA converted to RGB' in result.stderr
    for name in ['100007.jpg', '100039.jpg', 'rgba.png']:  # ... and the rest processed.
      out = np.asarray(Image.open(output / method / name))
      assert out.shape == (16, 16, 3), name
    assert os.path.exists(output / method / 'grid.png')
    assert 'translated 3 image(s)' in result.stdout


def test_translate_without_resize_is_a_clear_error(trained_run, shared_data, tmp_path):
  result = _sample('--workdir', trained_run, '--mode', 'translate', '--input',
                   os.path.join(shared_data, 'bsds500', 'images', 'test', '100007.jpg'),
                   '--output', str(tmp_path))
  assert result.returncode == 1
  assert 'differs from the training size 16x16; pass --resize' in result.stderr


def test_missing_run_is_a_clear_error(tmp_path):
  missing = _sample('--workdir', str(tmp_path / 'nothing'), '--mode', 'generate')
  assert missing.returncode == 1 and 'no config.json' in missing.stderr
  assert 'Traceback' not in missing.stderr


def test_invert_writes_noise_maps_and_their_diagnostics(trained_run, shared_data, tmp_path):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  (inputs / 'sub').mkdir()  # A sub-folder is skipped, not counted as a failed image.
  for stem in ['100007', '100039']:
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', 'test', stem + '.jpg'), inputs)
  result = _sample('--workdir', trained_run, '--mode', 'invert', '--input', str(inputs),
                   '--resize', '--output', str(tmp_path / 'out'))
  assert result.returncode == 0, result.stderr[-2000:]
  saved = np.load(tmp_path / 'out' / 'inverted.npz')
  assert saved['noise'].shape == (2, 16, 16, 3) and np.all(np.isfinite(saved['noise']))
  assert list(saved['names']) == ['100007.jpg', '100039.jpg']
  for name in ('hf_power_ratio', 'lf_power_ratio', 'lag1_decorrelation'):
    assert np.isfinite(saved[name]), name
  for png in ('noise.png', 'spectrum.png'):
    assert (tmp_path / 'out' / png).stat().st_size > 1000
  assert '0 failed' in result.stdout


@pytest.mark.parametrize('args, message', [
    (['--radius', '-4'], '--radius=-4.0 must be >= 0'),
    (['--strength', '1.5'], '--strength=1.5 must be in (0, 1]'),
    (['--input', '/no/such/folder'], '--input /no/such/folder does not exist'),
    (['--guidance_scale', '-1'], '--guidance_scale=-1.0 must be >= 0'),
    (['--target_class', '0'], '--target_class=0 must be in [0, 0)'),
    (['--method', 'ovg'], '--method ovg translates between classes of one model, but this run '
     'is unconditional'),
])
def test_bad_sample_flags_fail_before_anything_is_loaded(trained_run, tmp_path, args, message):
  output = tmp_path / 'out'
  base = ['--workdir', trained_run, '--mode', 'translate', '--input', trained_run,
          '--output', str(output)]
  result = _sample(*base, *args)
  assert result.returncode == 1, result.stderr[-2000:]
  assert message in result.stderr
  assert result.stderr.count('error:') == 1 and 'Traceback' not in result.stderr
  assert not output.exists()  # Nothing written: the checks run before the checkpoint loads.
