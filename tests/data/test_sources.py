"""Data problems reported early and by name; prepared copies follow their source folder."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from phipd_jax.data import builders, pipeline


def _write_ab(folder, index: int, seed: int = 0) -> str:
  """One 64x32 pix2pix AB jpg (noise photo left, white edges right) named ``<index>_AB.jpg``."""
  rng = np.random.default_rng(seed + index)
  pair = np.full((32, 64, 3), 255, np.uint8)
  pair[:, :32] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  path = os.path.join(folder, f'{index}_AB.jpg')
  Image.fromarray(pair).save(path, quality=90)
  return path


def _ab_folder(tmp_path, ids=(1, 2, 3, 10)):
  folder = tmp_path / 'ab'
  folder.mkdir()
  for index in ids:
    _write_ab(folder, index)
  return folder


@pytest.fixture
def ab_config(tiny_config, tmp_path):
  """An edges2shoes_handbags config on a 4-image AB folder (3 train, 1 test), own tfds dir."""
  data = tiny_config.data
  data.name, data.dir, data.image_key = 'edges2shoes_handbags', str(_ab_folder(tmp_path)), 'photo'
  data.tfds_dir = str(tmp_path / 'tfds')
  return data


def _prepared_files(data) -> dict:
  """``{path: mtime_ns}`` of every file of the prepared copies under ``data.tfds_dir``."""
  pattern = os.path.join(data.tfds_dir, '**', '*')
  return {path: os.stat(path).st_mtime_ns for path in glob.glob(pattern, recursive=True)
          if os.path.isfile(path)}


def test_missing_folder_is_named_before_anything_is_written(ab_config):
  ab_config.dir = '/nonexistent/ab_folder'
  with pytest.raises(FileNotFoundError, match=r'data\.dir=/nonexistent/ab_folder.*set'):
    pipeline.check_source(ab_config)
  assert not os.path.exists(ab_config.tfds_dir)


def test_empty_folder_is_named(ab_config, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'README.txt').write_text('not an image')
  ab_config.dir = str(empty)
  with pytest.raises(FileNotFoundError, match=r'data\.dir=.*empty.*no <id>_AB\.jpg images'):
    pipeline.check_source(ab_config)
  with pytest.raises(FileNotFoundError, match=r'data\.dir=.*empty'):
    pipeline.data_source(ab_config, 'train')


def test_truncated_jpg_is_named_by_check_source_and_by_the_builder(ab_config):
  path = os.path.join(ab_config.dir, '3_AB.jpg')
  content = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(content[:len(content) * 3 // 5])  # Above the "suspicious size" threshold.
  with pytest.raises(ValueError, match=r'data\.dir=.*3_AB\.jpg'):
    pipeline.check_source(ab_config)
  assert not os.path.exists(ab_config.tfds_dir)  # Checked before anything is written.
  with pytest.raises(ValueError, match=r'3_AB\.jpg: unreadable image'):
    builders.read_rgb(path)
  with pytest.raises(ValueError, match=r'3_AB\.jpg: unreadable image'):
    pipeline.data_source(ab_config, 'train')  # The builder's decode names the file too.


def test_not_an_image_and_a_tiny_file_are_named(ab_config):
  garbage = os.path.join(ab_config.dir, '2_AB.jpg')
  with open(garbage, 'wb') as f:
    f.write(b'\x00' * 5000)
  with pytest.raises(ValueError, match=r'2_AB\.jpg: unreadable image'):
    pipeline.check_source(ab_config)
  os.remove(garbage)
  _write_ab(ab_config.dir, 2)
  narrow = os.path.join(ab_config.dir, '5_AB.jpg')
  Image.new('RGB', (1, 32)).save(narrow)
  with pytest.raises(ValueError, match=r'5_AB\.jpg: 1 pixels wide, not an AB pair'):
    pipeline.data_source(ab_config, 'train')


def test_check_source_passes_on_a_good_folder_and_reads_only(ab_config):
  line = pipeline.check_source(ab_config)
  assert '\n' not in line
  assert f'4 images in data.dir={ab_config.dir} (3 train, 1 test)' in line
  assert line.endswith('to be prepared') and not os.path.exists(ab_config.tfds_dir)
  assert len(pipeline.data_source(ab_config, 'train')) == 3
  assert pipeline.check_source(ab_config).endswith(': up to date')


def test_check_source_passes_on_the_shared_folder(shared_data, ab_config):
  folder = os.path.join(shared_data, 'edges2shoes_handbags', 'train')
  ab_config.dir = folder
  ids = [index for index, _ in builders.pix2pix_files(folder)]
  test = sum(index % 10 == 0 for index in ids)
  line = pipeline.check_source(ab_config)
  assert f'{len(ids)} images in data.dir={folder} ({len(ids) - test} train, {test} test)' in line
  ab_config.dir = ''  # The shipped default is the same folder, named as the default.
  assert f"data.dir='' (default {folder})" in pipeline.check_source(ab_config)


def test_split_and_name_problems_are_named(ab_config, tmp_path):
  ab_config.eval_split = 'validation'
  with pytest.raises(ValueError, match=r"data\.eval_split='validation'.*no split 'validation'"):
    pipeline.check_source(ab_config)
  ab_config.eval_split = 'test'
  os.remove(os.path.join(ab_config.dir, '10_AB.jpg'))
  with pytest.raises(ValueError, match=r"data\.eval_split='test'.*no images.*divisible by 10"):
    pipeline.check_source(ab_config)
  ab_config.name = 'skimage_photos'
  with pytest.raises(ValueError, match=r'data\.dir=.*reads no folder'):
    pipeline.check_source(ab_config)
  ab_config.dir = ''
  ab_config.name = 'no_such_dataset_xyz'
  with pytest.raises(ValueError, match=r"data\.name='no_such_dataset_xyz'"):
    pipeline.check_source(ab_config)
  ab_config.name = 'cifar10'  # A catalog name never prepared here: how to prepare it.
  with pytest.raises(FileNotFoundError, match=r'data\.tfds_dir=.*tfds build cifar10 '):
    pipeline.check_source(ab_config)


def test_prepared_catalog_dataset_passes(tiny_config):
  pipeline.data_source(tiny_config.data, 'train')  # skimage_photos in the session tfds dir,
  data_dir = os.path.expanduser(tiny_config.data.tfds_dir)  # read as a tfds catalog dataset.
  line = pipeline._check_catalog(tiny_config.data, 'skimage_photos', data_dir)
  assert line.startswith('skimage_photos: tfds catalog dataset prepared') and '7 train' in line


def test_changed_folder_is_rebuilt_with_a_message(ab_config, capsys):
  assert len(pipeline.data_source(ab_config, 'train')) == 3
  _write_ab(ab_config.dir, 4)
  capsys.readouterr()
  assert pipeline.check_source(ab_config).endswith(
      'to be rebuilt (1 files added, 0 removed, 0 changed)')
  assert len(pipeline.data_source(ab_config, 'train')) == 4
  out = capsys.readouterr().out
  assert (f'data.dir={ab_config.dir} changed since the prepared copy in ' in out
          and '(1 files added, 0 removed, 0 changed); rebuilding' in out)
  os.remove(os.path.join(ab_config.dir, '1_AB.jpg'))
  _write_ab(ab_config.dir, 2, seed=1)  # Other pixels: another size.
  train = pipeline.data_source(ab_config, 'train')
  assert '(0 files added, 1 removed, 1 changed); rebuilding' in capsys.readouterr().out
  assert sorted(int(train[i]['id']) for i in range(len(train))) == [2, 3, 4]
  assert pipeline.check_source(ab_config).endswith(': up to date')


def test_unchanged_folder_is_not_rebuilt(ab_config, capsys):
  pipeline.data_source(ab_config, 'train')
  before = _prepared_files(ab_config)
  assert any(path.endswith(builders.FINGERPRINT_FILE) for path in before)
  capsys.readouterr()
  assert len(pipeline.data_source(ab_config, 'train')) == 3
  assert len(pipeline.data_source(ab_config, 'test')) == 1
  assert capsys.readouterr().out == ''
  assert _prepared_files(ab_config) == before
  # A copy without a fingerprint (made before fingerprints) cannot be trusted: rebuilt once.
  record = next(path for path in before if path.endswith(builders.FINGERPRINT_FILE))
  os.remove(record)
  pipeline.data_source(ab_config, 'train')
  assert 'records no source fingerprint' in capsys.readouterr().out
  assert os.path.exists(record)


def test_preparation_is_quiet(ab_config, capsys):
  from tensorflow_datasets.core.utils import tqdm_utils
  active = tqdm_utils._active
  pipeline.data_source(ab_config, 'train')
  captured = capsys.readouterr()
  lines = captured.out.splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      f'preparing edges2shoes_handbags from {ab_config.dir} into ') and lines[0].endswith(' ...')
  assert 'Downloading' not in captured.out + captured.err
  assert 'examples' not in captured.out + captured.err  # No progress bars,
  assert tqdm_utils._active == active  # and the caller's progress-bar setting is restored.


def test_skimage_fingerprint_is_stable_and_names_the_version(tiny_config, tmp_path):
  import skimage
  first = builders.source_fingerprint('skimage_photos', None)
  assert first == builders.source_fingerprint('skimage_photos', None)
  assert first['entries']['scikit-image'] == skimage.__version__
  pipeline.data_source(tiny_config.data, 'train')
  data_dir = os.path.expanduser(tiny_config.data.tfds_dir)
  assert builders.plan_preparation('skimage_photos', data_dir).up_to_date
  copy = tmp_path / 'tfds'
  shutil.copytree(os.path.join(data_dir, 'skimage_photos'), copy / 'skimage_photos')
  record = glob.glob(str(copy / 'skimage_photos' / '*' / builders.FINGERPRINT_FILE))[0]
  old = dict(first, entries=dict(first['entries'], **{'scikit-image': '0.1'}), digest='old')
  with open(record, 'w') as f:
    json.dump(old, f)
  plan = builders.plan_preparation('skimage_photos', str(copy))
  assert not plan.up_to_date and plan.change == f'scikit-image 0.1 -> {skimage.__version__}'


def test_bsds500_ground_truth_is_checked(ab_config, tmp_path):
  import scipy.io
  root = tmp_path / 'bsds'
  for split in builders.BSDS500_SPLITS:
    (root / 'images' / split).mkdir(parents=True)
    (root / 'groundTruth' / split).mkdir(parents=True)
    Image.new('RGB', (24, 16), 'gray').save(root / 'images' / split / '1.jpg')
    scipy.io.savemat(root / 'groundTruth' / split / '1.mat', {'x': np.zeros(2)})
  ab_config.name, ab_config.dir, ab_config.eval_split = 'bsds500', str(root), 'val'
  assert '3 images in data.dir=' in pipeline.check_source(ab_config)
  os.remove(root / 'groundTruth' / 'val' / '1.mat')
  with pytest.raises(FileNotFoundError, match=r'ground truth not found: .*val/1\.mat'):
    pipeline.check_source(ab_config)
  (root / 'groundTruth' / 'val' / '1.mat').write_text('not a mat file')
  with pytest.raises(ValueError, match=r'val/1\.mat: not a MATLAB'):
    pipeline.check_source(ab_config)
