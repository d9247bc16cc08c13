"""tfds builders for the datasets the library ships with or points to (array_record, no TF).

Each builder writes ``array_record`` files that :func:`tfds.data_source` reads back with random
access as NumPy, pixel-exact (images are stored PNG-encoded). Images are stored at their
native size; resizing and cropping happen in the input pipeline (:mod:`phipd_jax.data.pipeline`).

Held-out splits follow fixed, documented rules so that training never sees them:

* ``skimage_photos``: the seven colour photographs bundled in scikit-image (no download).
  ``train`` = the left two thirds of every photo (columns ``< 2W/3``); ``test`` = the right third.
* ``edges2shoes_handbags``: pix2pix "AB" images (photo left, edge map right) from a folder,
  default ``../shared/data/edges2shoes_handbags/train``. Files sorted by their numeric id;
  every 10th (ids ``i`` with ``i % 10 == 0``) is ``test``, the rest ``train``.
* ``bsds500``: BSDS500's own ``train``/``val``/``test`` folders, with the mean of the human
  boundary maps as ``boundaries`` (uint8, 255 = every annotator marked a boundary).
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')

SKIMAGE_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
                  'immunohistochemistry', 'retina')
SKIMAGE_TRAIN_FRACTION = 2 / 3
EDGES2SHOES_TEST_EVERY = 10


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array[..., 0] if array.shape[-1:] == (1,) else array).save(buffer, format='PNG')
  return buffer.getvalue()


class SkimagePhotos(tfds.core.GeneratorBasedBuilder):
  """The colour photographs bundled with scikit-image; the embedded default (no download)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'name': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples('train'), 'test': self._generate_examples('test')}

  def _generate_examples(self, split: str) -> Iterator:
    import skimage.data  # pylint: disable=g-import-not-at-top
    for name in SKIMAGE_PHOTOS:
      photo = getattr(skimage.data, name)()[..., :3]
      boundary = int(round(photo.shape[1] * SKIMAGE_TRAIN_FRACTION))
      part = photo[:, :boundary] if split == 'train' else photo[:, boundary:]
      yield name, {'image': _png(np.ascontiguousarray(part)), 'name': name}


def pix2pix_files(folder: str) -> list[tuple[int, str]]:
  """``(id, path)`` of the ``<id>_AB.<ext>`` (or ``<id>.<ext>``) images in ``folder``, by id.

  Raises:
    FileNotFoundError: the folder is missing or holds no such image.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'pix2pix folder not found: {folder}')
  files = []
  for name in os.listdir(folder):
    match = re.match(r'^(\d+)(_AB)?\.(jpg|jpeg|png)$', name, re.IGNORECASE)
    if match:
      files.append((int(match.group(1)), os.path.join(folder, name)))
  if not files:
    raise FileNotFoundError(f'no <id>_AB.jpg images in {folder}')
  return sorted(files)


class Edges2ShoesHandbags(tfds.core.GeneratorBasedBuilder):
  """pix2pix AB pairs (photo left half, edge map right half) as ``photo`` and ``edges``.

  The folder is ``download_config.manual_dir`` (default: the shared copy beside the repo).
  """

  name = 'edges2shoes_handbags'  # tfds would derive 'edges2_shoes_handbags' from the class name.
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'A folder of <id>_AB.jpg images, photo left, edge map right.'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'photo': tfds.features.Image(shape=(None, None, 3)),
            'edges': tfds.features.Image(shape=(None, None, 3)),
            'id': np.int64,
        }),
    )

  def _split_generators(self, dl_manager):
    folder = os.fspath(dl_manager.manual_dir)
    files = pix2pix_files(folder)
    test = [f for f in files if f[0] % EDGES2SHOES_TEST_EVERY == 0]
    train = [f for f in files if f[0] % EDGES2SHOES_TEST_EVERY != 0]
    return {'train': self._generate_examples(train), 'test': self._generate_examples(test)}

  def _generate_examples(self, files) -> Iterator:
    for index, path in files:
      pair = np.asarray(Image.open(path).convert('RGB'))
      half = pair.shape[1] // 2
      yield index, {'photo': _png(pair[:, :half]), 'edges': _png(pair[:, half:2 * half]),
                    'id': index}


class Bsds500(tfds.core.GeneratorBasedBuilder):
  """BSDS500 photos with the mean human boundary map (Arbelaez et al., TPAMI 2011)."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'The BSDS500 folder with images/ and groundTruth/.'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'boundaries': tfds.features.Image(shape=(None, None, 1)),
            'id': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    root = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(root, split) for split in ('train', 'val', 'test')}

  def _generate_examples(self, root: str, split: str) -> Iterator:
    import scipy.io  # pylint: disable=g-import-not-at-top
    image_dir = os.path.join(root, 'images', split)
    for name in sorted(os.listdir(image_dir)):
      if not name.endswith('.jpg'):
        continue
      stem = name[:-4]
      image = np.asarray(Image.open(os.path.join(image_dir, name)).convert('RGB'))
      truth = scipy.io.loadmat(os.path.join(root, 'groundTruth', split, stem + '.mat'))
      maps = [truth['groundTruth'][0, k]['Boundaries'][0, 0]
              for k in range(truth['groundTruth'].shape[1])]
      mean = np.mean(np.stack(maps).astype(np.float32), axis=0)
      boundaries = np.round(255 * mean).astype(np.uint8)[..., None]
      yield stem, {'image': _png(image), 'boundaries': _png(boundaries), 'id': stem}


BUILDERS = {
    'skimage_photos': (SkimagePhotos, None),
    'edges2shoes_handbags': (Edges2ShoesHandbags,
                             os.path.join(SHARED_DATA, 'edges2shoes_handbags', 'train')),
    'bsds500': (Bsds500, os.path.join(SHARED_DATA, 'bsds500')),
}


def prepared_builder(name: str, data_dir: str, manual_dir: str | None = None):
  """The tfds builder for one of :data:`BUILDERS`, prepared (built once) under ``data_dir``.

  A custom ``manual_dir`` (e.g. any pix2pix AB folder) is prepared in its own sub-directory of
  ``data_dir`` so that it never mixes with the default copy.

  Raises:
    FileNotFoundError: the source folder is missing.
  """
  builder_class, default_dir = BUILDERS[name]
  manual_dir = manual_dir or default_dir
  if manual_dir is not None:
    if not os.path.isdir(manual_dir):
      raise FileNotFoundError(f'data: source folder for {name!r} not found: {manual_dir} '
                              '(set --config.data.dir)')
    if manual_dir != default_dir:
      tag = re.sub(r'[^A-Za-z0-9]+', '_', os.path.abspath(manual_dir)).strip('_')[-80:]
      data_dir = os.path.join(data_dir, 'custom', tag)
  builder = builder_class(data_dir=data_dir, file_format='array_record')
  if not os.path.isdir(os.path.join(builder.data_dir)) or not builder.info.splits:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
  return builder
