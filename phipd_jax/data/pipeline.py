"""grain input pipeline: ``[B, H, W, C]`` float32 batches in ``[-1, 1]`` indexed by step.

The training set is a ``grain.MapDataset`` whose element ``s`` is the local batch of step
``s``, so a resumed run reads exactly the batches an uninterrupted run would have read, and each
process reads its own contiguous rows of the global batch (process ``p`` of ``P``: rows
``[p B / P, (p + 1) B / P)``), so any process count assembles the same global batch.

Sources: the builders of :mod:`phipd_jax.data.builders` (``skimage_photos``,
``edges2shoes_handbags``, ``bsds500``) or any tfds catalog name (``cifar10``, ``celeb_a``,
``imagenet2012``, ...) read with ``tfds.data_source`` where it has been downloaded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from phipd_jax.data import builders

# Splits of small datasets are decoded and resized once and kept in memory below this size.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclasses.dataclass(frozen=True)
class Example:
  """A decoded training image (uint8 ``[h, w, 3]``) and its class label (0 if none)."""

  image: np.ndarray  # uint8 [h, w, 3]
  label: int


def to_model_range(images: np.ndarray) -> np.ndarray:
  """uint8 ``[0, 255]`` -> float32 ``[-1, 1]``."""
  return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float ``[-1, 1]`` (clipped) -> uint8 ``[0, 255]``."""
  images = np.asarray(images, np.float32)
  return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
  """Bicubic (antialiased) resize so that the shorter side is ``size`` pixels."""
  height, width = image.shape[:2]
  scale = size / min(height, width)
  new = (max(size, round(width * scale)), max(size, round(height * scale)))
  if new == (width, height):
    return image
  return np.asarray(Image.fromarray(image).resize(new, Image.BICUBIC))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Central ``size x size`` crop of ``[H, W, C]`` (``H, W >= size``)."""
  height, width = image.shape[:2]
  top, left = (height - size) // 2, (width - size) // 2
  return image[top:top + size, left:left + size]


def as_rgb(image: np.ndarray) -> np.ndarray:
  """``[H, W]``, ``[H, W, 1]``, RGB or RGBA -> ``[H, W, 3]`` (gray replicated, alpha dropped)."""
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


def data_source(data_config, split: str):
  """Random-access tfds source of ``data_config.name`` / ``split`` (builds ours on first use).

  Raises:
    FileNotFoundError: the source folder of a shipped dataset is missing.
    ValueError: an unknown dataset name with no prepared tfds copy.
  """
  name = data_config.name
  data_dir = os.path.expanduser(data_config.tfds_dir)
  if name in builders.BUILDERS:
    builder = builders.prepared_builder(name, data_dir, data_config.get('dir') or None)
    return builder.as_data_source(split)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir)
  except Exception as error:  # tfds raises several types; name the field either way.
    raise ValueError(
        f'data.name={name!r}: not a shipped dataset ({sorted(builders.BUILDERS)}) and tfds could '
        f'not open it under data.tfds_dir={data_dir!r} ({type(error).__name__}: {error})'
    ) from error


def _decode(record, data_config) -> Example:
  image = as_rgb(np.asarray(record[data_config.image_key]))
  label = int(record[data_config.label_key]) if data_config.get('label_key') else 0
  return Example(image, label)


def load_examples(data_config, split: str, resize: Optional[int]) -> Sequence[Example]:
  """All examples of a split, decoded and resized (short side = ``resize``), in memory.

  Raises:
    ValueError: the decoded split would exceed :data:`IN_MEMORY_LIMIT_BYTES`.
  """
  source = data_source(data_config, split)
  examples, total = [], 0
  for index in range(len(source)):
    example = _decode(source[index], data_config)
    if resize:
      example = Example(resize_short_side(example.image, resize), example.label)
    total += example.image.nbytes
    if total > IN_MEMORY_LIMIT_BYTES:
      raise ValueError(f'data: split {split!r} of {data_config.name!r} is too large to hold in '
                       'memory; set data.in_memory=False')
    examples.append(example)
  return examples


class _Augment(grain.transforms.RandomMap):
  """Random ``size x size`` crop and optional horizontal flip."""

  def __init__(self, size: int, flip: bool):
    self.size, self.flip = size, flip

  def random_map(self, example: Example, rng: np.random.Generator):
    image = example.image
    height, width = image.shape[:2]
    if height < self.size or width < self.size:
      raise ValueError(f'data: image {image.shape} smaller than data.image_size={self.size}')
    top = rng.integers(0, height - self.size + 1)
    left = rng.integers(0, width - self.size + 1)
    image = image[top:top + self.size, left:left + self.size]
    if self.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    return {'image': to_model_range(image), 'label': np.int32(example.label)}


class _Decode(grain.transforms.Map):
  """Streaming path for large catalog datasets: decode, resize, then crop at random."""

  def __init__(self, data_config):
    self.data_config = data_config

  def map(self, record):
    example = _decode(record, self.data_config)
    return Example(resize_short_side(example.image, self.data_config.resize), example.label)


def train_dataset(data_config, global_batch: int, seed: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Training batches: element ``s`` is this process's slice of the global batch of step ``s``.

  Args:
    data_config: ``config.data`` (``name``, ``image_size``, ``resize``, ``flip``, keys, dirs).
    global_batch: global batch size (divisible by ``process_count``).
    seed: shuffle and augmentation seed (the same on every process).
    num_steps: number of steps the dataset must cover.
    process_index, process_count: this process and the number of processes.

  Returns:
    ``MapDataset`` of ``{'image': float32 [B_local, S, S, 3] in [-1, 1], 'label': int32 [B]}``.
  """
  if global_batch % process_count:
    raise ValueError(f'batch_size={global_batch} must be divisible by the process count '
                     f'{process_count}')
  local_batch = global_batch // process_count
  if data_config.get('in_memory', True):
    dataset = grain.MapDataset.source(load_examples(data_config, data_config.train_split,
                                                    data_config.resize))
  else:
    dataset = grain.MapDataset.source(data_source(data_config, data_config.train_split))
    dataset = dataset.map(_Decode(data_config))
  epochs = -(-num_steps * global_batch // len(dataset)) + 1
  dataset = dataset.repeat(epochs).shuffle(seed=seed)
  # Augment before slicing, so an example's crop depends on its global position only.
  dataset = dataset.random_map(_Augment(data_config.image_size, data_config.flip), seed=seed)
  rows = _ProcessRows(dataset, global_batch, local_batch, process_index)
  return grain.MapDataset.source(rows).batch(local_batch, drop_remainder=True)


class _ProcessRows:
  """Rows ``[p * L, (p + 1) * L)`` of every global batch: process ``p``'s contiguous slice, so
  concatenating the processes' batches in order gives the single-process global batch."""

  def __init__(self, dataset, global_batch: int, local_batch: int, process_index: int):
    self.dataset, self.global_batch, self.local_batch = dataset, global_batch, local_batch
    self.offset = process_index * local_batch

  def __len__(self) -> int:
    return len(self.dataset) // self.global_batch * self.local_batch

  def __getitem__(self, index: int):
    step, row = divmod(index, self.local_batch)
    return self.dataset[step * self.global_batch + self.offset + row]


def eval_images(data_config, split: str, key: str, count: int) -> np.ndarray:
  """``count`` centre-cropped, resized images of ``split`` (for translation grids).

  Returns:
    float32 ``[count, S, S, 3]`` in ``[-1, 1]``, in split order (deterministic).
  """
  source = data_source(data_config, split)
  images = []
  for index in range(min(count, len(source))):
    image = as_rgb(np.asarray(source[index][key]))
    images.append(center_crop(resize_short_side(image, data_config.image_size),
                              data_config.image_size))
  return to_model_range(np.stack(images))


def flat_shaded(images: np.ndarray, segments: int) -> np.ndarray:
  """Flat-shaded rendering: every SLIC superpixel filled with its mean colour.

  A stand-in for a simple renderer's output (sim-to-real in miniature): the layout and the
  mean colours of a photo without its texture and shading detail.

  Args:
    images: float32 ``[N, H, W, 3]`` in ``[-1, 1]``.
    segments: approximate number of superpixels per image.

  Returns:
    float32 ``[N, H, W, 3]`` in ``[-1, 1]``.
  """
  from skimage import color, segmentation  # pylint: disable=g-import-not-at-top
  out = []
  for image in images:
    labels = segmentation.slic((image + 1.0) / 2.0, n_segments=segments, compactness=10.0,
                               start_label=0, channel_axis=-1)  # slic expects [0, 1].
    out.append(color.label2rgb(labels, image, kind='avg', bg_label=-1))
  return np.stack(out).astype(np.float32)
