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
