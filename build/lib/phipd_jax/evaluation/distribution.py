"""Sliced Wasserstein distance (SWD) between image sets on Laplacian-pyramid patches.

Source: Karras, Aila, Laine, Lehtinen, *Progressive Growing of GANs*, ICLR 2018, Sec. 5 and
App. D (``sliced_wasserstein.py`` of its release): per level of a Laplacian pyramid, random
7x7 patches are the descriptors of an image set; each set's descriptors are normalised per
channel by their own mean and std; the distance is the mean over random unit directions of the
1-D Wasserstein-1 distance of the projections (sorted differences). Reported x 1e3 like the
paper; lower is closer; the finest level measures texture and edges, the coarsest colour and
layout. Comparable only at the same image size, descriptor count and direction count.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32)
_KERNEL = np.outer(_BINOMIAL, _BINOMIAL) / 256.0  # 5x5 Gaussian, sums to 1.


def _blur(images: Array) -> Array:
  """Depthwise 5x5 binomial blur with reflect padding, ``[N, H, W, C]``."""
  channels = images.shape[-1]
  kernel = jnp.tile(jnp.asarray(_KERNEL)[:, :, None, None], (1, 1, 1, channels))
  padded = jnp.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
  return jax.lax.conv_general_dilated(padded, kernel, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=channels)


def _downsample(images: Array) -> Array:
  return _blur(images)[:, ::2, ::2]


def _upsample(images: Array) -> Array:
  n, h, w, c = images.shape
  zeros = jnp.zeros((n, 2 * h, 2 * w, c), images.dtype).at[:, ::2, ::2].set(images)
  return 4.0 * _blur(zeros)


def laplacian_pyramid(images: Array, min_size: int = 16) -> list[Array]:
  """Laplacian pyramid, finest level first; the last level is the coarsest Gaussian level.

  Args:
    images: float ``[N, H, W, C]``, ``H == W`` a power-of-two multiple of ``min_size``.
    min_size: side of the coarsest level (16 in Karras et al.).

  Returns:
    Levels of sides ``H, H/2, ..., min_size``; they sum back to the images when upsampled.

  Raises:
    ValueError: a size that does not halve down to ``min_size``.
  """
  size = images.shape[1]
  if images.shape[2] != size or size < min_size or size % min_size or (
      (size // min_size) & (size // min_size - 1)):
    raise ValueError(f'laplacian_pyramid: images {images.shape} must be square with side '
                     f'min_size={min_size} times a power of two')
  levels, current = [], images.astype(jnp.float32)
  while current.shape[1] > min_size:
    smaller = _downsample(current)
    levels.append(current - _upsample(smaller))
    current = smaller
  levels.append(current)
  return levels


def patch_descriptors(level: Array, key: Array, count: int, patch: int = 7) -> Array:
  """``count`` random ``patch x patch`` patches of a level, normalised per channel.

  Args:
    level: ``[N, S, S, C]``.
    key: PRNG key (image and position of every patch).
    count: number of descriptors.
    patch: side (7 in Karras et al.).

  Returns:
    float32 ``[count, patch * patch * C]``, each channel zero mean and unit std over the set.
  """
  n, size, _, channels = level.shape
  image_key, row_key, col_key = jax.random.split(key, 3)
  images = jax.random.randint(image_key, (count,), 0, n)
  rows = jax.random.randint(row_key, (count,), 0, size - patch + 1)
  cols = jax.random.randint(col_key, (count,), 0, size - patch + 1)
  offsets = jnp.arange(patch)
  patches = level[images[:, None, None], rows[:, None, None] + offsets[None, :, None],
                  cols[:, None, None] + offsets[None, None, :]]  # [count, p, p, C]
  mean = jnp.mean(patches, axis=(0, 1, 2), keepdims=True)
  std = jnp.std(patches, axis=(0, 1, 2), keepdims=True)
  return ((patches - mean) / jnp.maximum(std, 1e-8)).reshape(count, -1)


@functools.partial(jax.jit, static_argnames=('num_directions', 'repeats'))
def sliced_wasserstein(a: Array, b: Array, key: Array, num_directions: int = 128,
                       repeats: int = 4) -> Array:
  """Mean 1-D Wasserstein-1 distance of ``a``, ``b`` ``[M, D]`` along random unit directions.

  Equal ``M`` is required (sorted projections are compared element-wise). Returns a float32
  scalar (not yet x 1e3).
  """
  if a.shape != b.shape:
    raise ValueError(f'sliced_wasserstein: shapes {a.shape} and {b.shape} must be equal')
  directions = jax.random.normal(key, (repeats, a.shape[1], num_directions))
  directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
  projected_a = jnp.sort(jnp.einsum('md,rdk->rkm', a, directions), axis=-1)
  projected_b = jnp.sort(jnp.einsum('md,rdk->rkm', b, directions), axis=-1)
  return jnp.mean(jnp.abs(projected_a - projected_b))


def swd(images_a: Array, images_b: Array, key: Array, *, descriptors: int = 16384,
        min_size: int = 16, num_directions: int = 128, repeats: int = 4) -> dict[str, float]:
  """SWD x 1e3 between two image sets, per pyramid level and averaged.

  Args:
    images_a, images_b: ``[N_a, S, S, C]`` and ``[N_b, S, S, C]`` on the same scale (e.g. in
      ``[-1, 1]``); the set sizes may differ (descriptors are drawn with replacement).
    key: PRNG key; fix it to compare methods on the same descriptors and directions.
    descriptors: patches per set and level (Karras: 128 per image x 8192 images).
    min_size: coarsest level side.
    num_directions, repeats: random directions per repeat, and repeats.

  Returns:
    ``{'swd_<side>': ..., 'swd_mean': ...}`` (floats, x 1e3), one entry per level side.
  """
  levels_a = laplacian_pyramid(jnp.asarray(images_a), min_size)
  levels_b = laplacian_pyramid(jnp.asarray(images_b), min_size)
  result = {}
  for index, (level_a, level_b) in enumerate(zip(levels_a, levels_b)):
    keys = jax.random.split(jax.random.fold_in(key, index), 3)
    a = patch_descriptors(level_a, keys[0], descriptors)
    b = patch_descriptors(level_b, keys[1], descriptors)
    value = sliced_wasserstein(a, b, keys[2], num_directions, repeats)
    result[f'swd_{level_a.shape[1]}'] = 1e3 * float(value)
  result['swd_mean'] = float(np.mean([v for k, v in result.items()]))
  return result
