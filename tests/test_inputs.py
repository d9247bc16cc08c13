"""Reading user images for sampling: sizes, the --any_size guard, folders."""

import numpy as np
import pytest
from PIL import Image

from phipd_jax import inputs


def test_any_size_refuses_large_images_unless_forced(tmp_path):
  path = tmp_path / 'big.png'
  Image.fromarray(np.zeros((512, 512, 3), np.uint8)).save(path)
  with pytest.raises(ValueError, match='above --max_pixels=65536.*--force'):
    inputs.read_image(str(path), 32, 4, any_size=True, max_pixels=256 * 256)
  assert inputs.read_image(str(path), 32, 4, any_size=True, max_pixels=None).shape == (512, 512, 3)
  with pytest.raises(ValueError, match='differs from the training size 32x32; pass --resize'):
    inputs.read_image(str(path), 32, 4)
  assert inputs.read_image(str(path), 32, 4, resize=True).shape == (32, 32, 3)


def test_folders_skip_sub_folders_and_hidden_files(tmp_path):
  (tmp_path / 'sub').mkdir()
  (tmp_path / '.hidden.png').write_bytes(b'')
  (tmp_path / 'notes.txt').write_text('x')
  (tmp_path / 'a.png').write_bytes(b'')
  (tmp_path / 'noext').write_bytes(b'')
  names = [p.split('/')[-1] for p in inputs.list_images(str(tmp_path))]
  assert names == ['a.png', 'noext']
  with pytest.raises(FileNotFoundError):
    inputs.list_images(str(tmp_path / 'missing'))


def test_read_inputs_reports_each_bad_file_and_reads_the_rest(tmp_path, capsys):
  Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(tmp_path / 'good.png')
  Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / 'wide.png')
  (tmp_path / 'broken.jpg').write_bytes(b'not an image')
  images, failures = inputs.read_inputs(str(tmp_path), 8, 4)
  assert list(images) == [str(tmp_path / 'good.png')] and failures == 2
  np.testing.assert_array_equal(images[str(tmp_path / 'good.png')], np.ones((8, 8, 3)))
  errors = capsys.readouterr().err
  assert errors.count('error: ') == 2 and 'broken.jpg' in errors and 'wide.png' in errors
  images, failures = inputs.read_inputs(str(tmp_path), 8, 4, any_size=True)
  assert len(images) == 2 and failures == 1
