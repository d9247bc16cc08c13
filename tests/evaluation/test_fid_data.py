"""FID image sources (folders, ADM .npz batches, tfds splits) and reference files."""

import numpy as np
import pytest
from PIL import Image

from phipd_jax.evaluation import fid, fid_data


def _batches(source, size=4):
  return list(source.batches(size))


def test_folder_source_reads_sorted_rgb_images_and_names_a_bad_file(tmp_path):
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, shape, dtype=np.uint8)
            for shape in ((8, 8, 3), (8, 8, 3), (6, 10, 3))]
  for index, image in enumerate(images):
    Image.fromarray(image).save(tmp_path / f'{index}.png')
  Image.fromarray(images[0][..., 0]).save(tmp_path / '3_gray.png')  # Converted to RGB.
  (tmp_path / 'notes.txt').write_text('not an image, not listed')
  source = fid_data.open_source(str(tmp_path))
  assert len(source) == 4
  batches = _batches(source)
  assert [b.shape for b in batches] == [(2, 8, 8, 3), (1, 6, 10, 3), (1, 8, 8, 3)]
  np.testing.assert_array_equal(batches[1][0], images[2])
  np.testing.assert_array_equal(batches[2][0], np.repeat(images[0][..., :1], 3, axis=-1))
  assert len(fid_data.open_source(str(tmp_path), num=2)) == 2
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(ValueError, match='broken.png: not a readable image'):
    _batches(fid_data.open_source(str(tmp_path)))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no image files'):
    fid_data.open_source(str(tmp_path / 'empty'))


def test_adm_reference_batch_is_read_as_it_is(tmp_path):
  """An ADM-style reference .npz: statistics used as stored, images (arr_0) featurised."""
  rng = np.random.default_rng(1)
  path = str(tmp_path / 'VIRTUAL_ref.npz')
  arrays = {'mu': rng.normal(size=4), 'sigma': np.eye(4), 'mu_s': rng.normal(size=3),
            'sigma_s': 2 * np.eye(3),
            'arr_0': rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)}
  np.savez(path, **arrays)
  reference = fid_data.read_reference(path)
  np.testing.assert_array_equal(reference['mu'], arrays['mu'])
  np.testing.assert_array_equal(reference['sigma_s'], arrays['sigma_s'])
  assert reference['images'] and 'pool' not in reference
  batches = _batches(fid_data.npz_source(path, num=5))
  np.testing.assert_array_equal(np.concatenate(batches), arrays['arr_0'][:5])

  np.savez(tmp_path / 'empty.npz', other=np.zeros(3))
  with pytest.raises(ValueError, match='neither FID statistics'):
    fid_data.read_reference(str(tmp_path / 'empty.npz'))
  with pytest.raises(ValueError, match='no arr_0 image array'):
    fid_data.npz_source(str(tmp_path / 'empty.npz'))
  (tmp_path / 'corrupt.npz').write_bytes(b'PK not really')
  with pytest.raises(ValueError, match='corrupt.npz: not a readable .npz'):
    fid_data.read_reference(str(tmp_path / 'corrupt.npz'))


def test_saved_reference_round_trips(tmp_path):
  rng = np.random.default_rng(2)
  features = {'pool': rng.normal(size=(10, 5)), 'spatial': rng.normal(size=(10, 3))}
  path = str(tmp_path / 'stats' / 'ref.npz')
  fid_data.save_reference(path, features, 'ab' * 32, 'folder x')
  reference = fid_data.read_reference(path)
  mu, sigma = fid.statistics(features['pool'])
  np.testing.assert_allclose(reference['mu'], mu)
  np.testing.assert_allclose(reference['sigma'], sigma)
  np.testing.assert_allclose(reference['mu_s'], features['spatial'].mean(0))
  np.testing.assert_allclose(reference['pool'], features['pool'], rtol=1e-6)
  assert reference['weights_sha256'] == 'ab' * 32 and not reference['images']


def test_tfds_split_source(tfds_dir, monkeypatch):
  """tfds:NAME:SPLIT[:FEATURE] reads a split's images at their stored size (here the shipped
  skimage photos builder, prepared under $TFDS_DATA_DIR)."""
  monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
  source = fid_data.open_source('tfds:skimage_photos:train', num=3)
  assert len(source) == 3
  batches = list(source.batches(8))
  assert sum(len(b) for b in batches) == 3
  assert all(b.dtype == np.uint8 and b.ndim == 4 and b.shape[-1] == 3 for b in batches)
  with pytest.raises(ValueError, match="no feature 'photo'"):
    fid_data.open_source('tfds:skimage_photos:train:photo')
  with pytest.raises(ValueError, match='expected tfds:NAME:SPLIT'):
    fid_data.open_source('tfds:skimage_photos')
