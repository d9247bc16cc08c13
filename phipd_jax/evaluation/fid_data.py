"""Image sources and reference statistics for :mod:`phipd_jax.evaluation.fid`.

Sources of images (uint8 ``[b, H, W, 3]`` batches, any size: the network resizes to 299):

* a folder of image files (pytorch-fid's extensions, sorted names, converted to RGB);
* an ``.npz`` with an ``arr_0`` image array (the ADM / guided-diffusion sample and reference
  batch format, uint8 ``[N, H, W, 3]``);
* ``tfds:NAME:SPLIT[:FEATURE]``: a tfds split (the library's shipped builders or any prepared
  tfds dataset under ``$TFDS_DATA_DIR``, default ``~/tensorflow_datasets``), feature ``image``
  unless named.

Reference files (:func:`save_reference`, :func:`read_reference`) are ``.npz`` with the ADM keys
``mu``, ``sigma`` (pool) and ``mu_s``, ``sigma_s`` (spatial), plus ``pool`` (the reference
features, for KID and precision / recall) and the weights' SHA-256 when we wrote them. An ADM
reference batch (``mu``, ``sigma``, ``mu_s``, ``sigma_s`` and 10k images in ``arr_0``) is used
as it is: its statistics for FID / sFID, its images' features for KID and precision / recall.
"""

from __future__ import annotations

import os
import types
import zipfile
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from phipd_jax import writers
from phipd_jax.data import pipeline
from phipd_jax.evaluation import fid, inception

IMAGE_EXTENSIONS = ('bmp', 'jpg', 'jpeg', 'pgm', 'png', 'ppm', 'tif', 'tiff', 'webp')
STATISTIC_KEYS = ('mu', 'sigma', 'mu_s', 'sigma_s')


class Source:
  """A set of images to score: ``len(source)`` images yielded by ``batches(batch_size)``."""

  def __init__(self, description: str, count: int, batches):
    self.description, self.count, self._batches = description, count, batches

  def __len__(self) -> int:
    return self.count

  def batches(self, batch_size: int) -> Iterator[np.ndarray]:
    return self._batches(batch_size)


def image_files(folder: str) -> list[str]:
  """The image files directly in ``folder``, sorted.

  Raises:
    FileNotFoundError: no such folder. ValueError: no image file in it.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{folder} is not a folder')
  files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                 if name.lower().rsplit('.', 1)[-1] in IMAGE_EXTENSIONS)
  if not files:
    raise ValueError(f'{folder}: no image files ({", ".join(IMAGE_EXTENSIONS)})')
  return files


def _read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError) as error:
    raise ValueError(f'{path}: not a readable image ({error})') from None


def _in_batches(read, count: int, batch_size: int) -> Iterator[np.ndarray]:
  """Consecutive images ``read(i)`` grouped into batches of one size."""
  batch = []
  for index in range(count):
    image = read(index)
    if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
      yield np.stack(batch)
      batch = []
    batch.append(image)
  if batch:
    yield np.stack(batch)


def folder_source(folder: str, num: Optional[int] = None) -> Source:
  files = image_files(folder)[:num]
  return Source(f'folder {folder}', len(files),
                lambda size: _in_batches(lambda i: _read_image(files[i]), len(files), size))


def _npz_keys(path: str) -> list[str]:
  try:
    with zipfile.ZipFile(path) as archive:
      return [name[:-4] for name in archive.namelist() if name.endswith('.npy')]
  except (OSError, zipfile.BadZipFile) as error:
    raise ValueError(f'{path}: not a readable .npz file ({error})') from None


def npz_source(path: str, num: Optional[int] = None) -> Source:
  """The ``arr_0`` images of an ADM-style batch (loaded once; ``num`` first ones)."""
  if 'arr_0' not in _npz_keys(path):
    raise ValueError(f'{path}: no arr_0 image array (keys {_npz_keys(path)})')
  with np.load(path) as data:
    images = data['arr_0'][:num]
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f'{path}: arr_0 must be uint8 [N, H, W, 3], got {images.dtype} '
                     f'{images.shape}')
  return Source(f'npz {path}', len(images),
                lambda size: (images[i:i + size] for i in range(0, len(images), size)))


def tfds_source(spec: str, num: Optional[int] = None) -> Source:
  """``tfds:NAME:SPLIT[:FEATURE]`` -> the split's images at their stored size."""
  parts = spec.split(':')
  if len(parts) not in (3, 4) or parts[0] != 'tfds':
    raise ValueError(f'{spec}: expected tfds:NAME:SPLIT[:FEATURE]')
  name, split = parts[1], parts[2]
  feature = parts[3] if len(parts) == 4 else 'image'
  config = types.SimpleNamespace(
      name=name, dir=None, tfds_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  source = pipeline.data_source(config, split)
  count = len(source) if num is None else min(num, len(source))
  if count and feature not in source[0]:
    raise ValueError(f'{spec}: no feature {feature!r} (features {sorted(source[0])})')
  return Source(spec, count, lambda size: _in_batches(
      lambda i: pipeline.as_rgb(np.asarray(source[i][feature])), count, size))


def open_source(where: str, num: Optional[int] = None) -> Source:
  """A folder, an ``.npz`` with ``arr_0`` or a ``tfds:`` split (see the module note)."""
  if where.startswith('tfds:'):
    return tfds_source(where, num)
  if where.endswith('.npz'):
    return npz_source(where, num)
  return folder_source(where, num)


def read_reference(path: str) -> dict:
  """A reference ``.npz``: ``{'mu', 'sigma'[, 'mu_s', 'sigma_s'][, 'pool'][, 'images']}``
  (``images``: True when an ``arr_0`` image array is present, to be featurised).

  Raises:
    ValueError: an unreadable file, or one with neither statistics nor images.
  """
  keys = _npz_keys(path)
  out = {}
  with np.load(path) as data:
    for key in STATISTIC_KEYS + ('pool',):
      if key in keys:
        out[key] = np.asarray(data[key], np.float64)
    if 'weights_sha256' in keys:
      out['weights_sha256'] = str(data['weights_sha256'])
  out['images'] = 'arr_0' in keys
  if 'mu' not in out and not out['images']:
    raise ValueError(f'{path}: neither FID statistics (mu, sigma) nor images (arr_0); keys '
                     f'{keys}')
  return out


def save_reference(path: str, features: dict, weights_sha256: str, source: str) -> None:
  """Writes the reference statistics of ``features`` (``{'pool', 'spatial', ...}``)."""
  mu, sigma = fid.statistics(features['pool'])
  mu_s, sigma_s = fid.statistics(features['spatial'])
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp.npz'
  np.savez(tmp, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s,
           pool=np.asarray(features['pool'], np.float32), weights_sha256=weights_sha256,
           source=source)
  os.replace(tmp, path)


def source_features(net: inception.Extractor, source: Source, batch_size: int,
                    label: Optional[str]) -> dict:
  return inception.features(net, source.batches(batch_size), batch_size, total=len(source),
                            progress=label)


def score_samples(net: inception.Extractor, samples: np.ndarray, reference_features: dict,
                  batch_size: int = 50) -> dict:
  """:func:`fid.all_metrics` of ``samples`` (float ``[N, S, S, 3]`` in ``[-1, 1]``, quantised
  to uint8 as saved PNGs would be) against precomputed reference features."""
  features = inception.features(net, [writers.to_uint8(samples)], batch_size)
  return fid.all_metrics(features, reference_features, is_splits=min(10, len(samples)))
