"""``evaluate.py --mode fid`` end to end against pytorch-fid on the same random weights."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pytorch_fid import fid_score

import fid_reference
from phipd_jax.evaluation import fid, fid_data, fid_run, runs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _evaluate(*args, env=None):
  return subprocess.run([sys.executable, 'evaluate.py', '--mode', 'fid', *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, **(env or {})})


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('weights') / 'pt_inception-2015-12-05-6726825d.pth')
  return fid_reference.save_pth(fid_reference.random_state_dict(seed=0), path)


def _photos(shared_data, split, count, folder):
  folder.mkdir()
  source = os.path.join(shared_data, 'bsds500', 'images', split)
  for name in sorted(os.listdir(source))[:count]:
    shutil.copy(os.path.join(source, name), folder)
  return str(folder)


def test_fid_of_two_photo_folders_equals_pytorch_fid(shared_data, weights, tmp_path,
                                                     monkeypatch):
  """BSDS500 test vs train photos (481x321, both orientations, 16 each): FID within 1e-3
  relative of pytorch-fid's; the JSON has every metric, the counts and the weights' SHA-256; the
  saved reference statistics equal pytorch-fid's statistics of the same folder."""
  test = _photos(shared_data, 'test', 16, tmp_path / 'test')
  train = _photos(shared_data, 'train', 16, tmp_path / 'train')
  out, stats = tmp_path / 'fid.json', tmp_path / 'train_stats.npz'
  result = _evaluate('--images', test, '--reference', train, '--fid_weights', weights,
                     '--json', str(out), '--save_reference', str(stats), '--is_splits', '2',
                     '--batch_size', '8')
  assert result.returncode == 0, result.stderr[-3000:]
  ours = json.loads(out.read_text())

  monkeypatch.setattr(fid_reference.pytorch_fid_inception, 'load_state_dict_from_url',
                      lambda *a, **k: fid_reference.torch.load(weights, weights_only=True))
  fid_reference.torch.set_num_threads(1)  # The other xdist worker has the other core.
  network = fid_reference.pytorch_fid_inception.InceptionV3([3]).eval()
  test_stats, train_stats = (
      fid_score.compute_statistics_of_path(folder, network, batch_size=1, dims=2048,
                                           device='cpu', num_workers=0)
      for folder in (test, train))
  expected = fid_score.calculate_frechet_distance(*test_stats, *train_stats)
  assert ours['fid'] == pytest.approx(expected, rel=1e-3)
  assert ours['num_samples'] == 16 and ours['num_reference'] == 16
  for key in ('sfid', 'kid_mean', 'kid_std', 'is_mean', 'is_std', 'precision', 'recall'):
    assert np.isfinite(ours[key]), key
  assert 1.0 <= ours['is_mean'] <= 1008 and 0.0 <= ours['precision'] <= 1.0
  assert len(ours['weights_sha256']) == 64
  assert f'FID {ours["fid"]:.3f} (16 samples' in result.stdout

  saved = fid_data.read_reference(str(stats))
  assert saved['weights_sha256'] == ours['weights_sha256']
  scale = np.abs(train_stats[1]).max()
  np.testing.assert_allclose(saved['sigma'], train_stats[1], rtol=0, atol=1e-4 * scale)
  assert fid.frechet_distance(*test_stats, saved['mu'], saved['sigma']) == pytest.approx(
      expected, rel=1e-3)


def test_missing_or_wrong_weights_stop_before_any_work(tmp_path):
  """No weights, a missing file, a file of other keys: a one-line error, exit 1, nothing
  written (the JSON path stays absent)."""
  images = tmp_path / 'images'
  images.mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / 'black.png')
  out = tmp_path / 'fid.json'
  env = {fid_reference.inception.WEIGHTS_ENV: ''}
  result = _evaluate('--images', str(images), '--reference', str(images), '--json', str(out),
                     env=env)
  assert result.returncode == 1
  assert 'pt_inception-2015-12-05-6726825d.pth' in result.stderr
  assert '--fid_weights FILE or set PHIPD_FID_WEIGHTS' in result.stderr
  wrong = fid_reference.random_state_dict(seed=1)
  wrong.pop('Mixed_7c.branch_pool.conv.weight')
  path = fid_reference.save_pth(wrong, str(tmp_path / 'wrong.pth'))
  result = _evaluate('--images', str(images), '--reference', str(images), '--fid_weights', path,
                     '--json', str(out))
  assert result.returncode == 1
  assert 'missing key(s)' in result.stderr and 'Mixed_7c.branch_pool.conv.weight' in result.stderr
  result = _evaluate('--images', str(tmp_path / 'nope'), '--reference', str(images),
                     '--fid_weights', path)
  assert result.returncode == 1 and 'nope: not a run directory, an image folder' in result.stderr
  assert not out.exists()


def test_fid_of_a_run_and_generate_columns(trained_run, tmp_path, capsys):
  """A run as --images: --num samples generated, scored against its held-out split; --num is
  required for a run; evaluate_generation (--mode generate) with the weights adds the FID / KID
  columns. In-process (the CLI's flags are the folder test's); weights as .npz (no torch)."""
  weights = str(tmp_path / 'fid_inception.npz')
  fid_reference.inception.save_npz(fid_reference.random_state_dict(seed=0), weights)
  with pytest.raises(ValueError, match='--num: how many samples to generate'):
    fid_run.evaluate_fid(trained_run, trained_run, weights=weights, num=None)
  out = tmp_path / 'run.json'
  ours = fid_run.evaluate_fid(trained_run, trained_run, weights=weights, num=12, batch_size=6,
                              is_splits=2, json_path=str(out))
  assert json.loads(out.read_text())['fid'] == ours['fid']
  assert ours['num_samples'] == 12 and ours['num_reference'] >= 2
  assert ours['images'].startswith(f'run {trained_run} (12 samples')
  assert 'held out by' in ours['reference'] and np.isfinite(ours['fid'])
  summary = runs.evaluate_generation([trained_run], num=8, batch_size=8, fid_weights=weights)
  run_row, photos_row = summary['rows'][0], summary['rows'][1]
  assert run_row['num_samples'] == 8 and np.isfinite(run_row['fid'])
  assert photos_row['name'] == 'train photos' and np.isfinite(photos_row['kid_mean'])
  assert summary['fid_weights_sha256'] == ours['weights_sha256']
  assert '| FID (N) |' in capsys.readouterr().out
