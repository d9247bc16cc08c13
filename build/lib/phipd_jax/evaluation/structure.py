"""Structure metrics: does an output keep the input's layout?

* :func:`edge_alignment`: precision / recall / F of binary edge maps against reference edges
  with a pixel tolerance, in the spirit of the BSDS500 boundary benchmark (Martin, Fowlkes &
  Malik, TPAMI 2004; Arbelaez et al., TPAMI 2011). The benchmark matches pixels one-to-one
  (bipartite); here a pixel counts as matched when the other map has an edge within
  ``tolerance`` pixels (Euclidean distance transform), which is slightly more lenient and has a
  high chance level on dense edge maps: always report it beside a mismatched-pair reference.
* :func:`canny_edges` (scikit-image's Canny), :func:`line_map` (the dark lines of an edge-map
  drawing), :func:`boundary_map` (BSDS500 human boundaries).
* :func:`gradient_correlation`: Pearson correlation of Sobel gradient magnitudes, in [-1, 1];
  no threshold, so a cleaner floor than edge F (about 0 for unrelated images).
* :func:`ssim` / :func:`psnr` (dm-pix) for outputs with a paired target.

Images are float ``[N, H, W, 3]`` in ``[-1, 1]`` unless stated otherwise.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

Array = jax.Array

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601.


def grayscale(images: Array) -> Array:
  """Luma in ``[0, 1]``, ``[N, H, W]``, of ``[N, H, W, 3]`` images in ``[-1, 1]``."""
  images = jnp.asarray(images, jnp.float32)
  return jnp.clip((images + 1.0) / 2.0, 0.0, 1.0) @ jnp.asarray(_LUMA)


def canny_edges(images: Array, sigma: float = 1.0) -> np.ndarray:
  """Canny edges (scikit-image, default hysteresis thresholds) of each image's luma.

  Args:
    images: ``[N, H, W, 3]`` in ``[-1, 1]``.
    sigma: Gaussian smoothing, pixels.

  Returns:
    bool ``[N, H, W]``.
  """
  from skimage import feature  # pylint: disable=g-import-not-at-top
  luma = np.asarray(grayscale(images))
  return np.stack([feature.canny(image, sigma=sigma) for image in luma])


def line_map(drawings: Array, threshold: float = 0.5) -> np.ndarray:
  """The lines of edge-map drawings (dark lines on a light background, e.g. edges2shoes).

  Args:
    drawings: ``[N, H, W, 3]`` in ``[-1, 1]``.
    threshold: luma in ``[0, 1]`` below which a pixel is a line.

  Returns:
    bool ``[N, H, W]``.
  """
  return np.asarray(grayscale(drawings)) < threshold


def boundary_map(boundaries: Array, agreement: float = 0.5) -> np.ndarray:
  """BSDS500 human boundaries marked by at least ``agreement`` of the annotators.

  Args:
    boundaries: ``[N, H, W]`` or ``[N, H, W, 1]``, the mean annotator map in ``[0, 1]`` (or
      uint8 ``0 .. 255`` as the ``bsds500`` builder stores it).
    agreement: fraction of annotators, in ``(0, 1]``.

  Returns:
    bool ``[N, H, W]``.
  """
  boundaries = np.asarray(boundaries)
  if boundaries.dtype == np.uint8:
    boundaries = boundaries.astype(np.float32) / 255.0
  if boundaries.ndim == 4:
    boundaries = boundaries[..., 0]
  return boundaries >= agreement - 1e-6


def edge_alignment(predicted: np.ndarray, reference: np.ndarray,
                   tolerance: float = 2.0) -> dict[str, np.ndarray]:
  """Per-image precision, recall and F of ``predicted`` edges against ``reference`` edges.

  precision = share of predicted edge pixels with a reference edge within ``tolerance`` pixels;
  recall = share of reference edge pixels with a predicted edge within ``tolerance``;
  F = 2 P R / (P + R). An empty predicted map has precision 1 (no false edges) and an empty
  reference map recall 1; F is 0 when P + R = 0.

  Args:
    predicted: bool ``[N, H, W]``.
    reference: bool ``[N, H, W]``.
    tolerance: matching distance, pixels (BSDS uses 0.0075 of the diagonal: 0.34 px at 32x32,
      so 1-2 px is the practical choice at small sizes).

  Returns:
    ``{'precision', 'recall', 'f'}``, each float64 ``[N]`` in ``[0, 1]``.

  Raises:
    ValueError: shapes differ or are not ``[N, H, W]``.
  """
  predicted, reference = np.asarray(predicted, bool), np.asarray(reference, bool)
  if predicted.shape != reference.shape or predicted.ndim != 3:
    raise ValueError(f'edge_alignment: need two bool [N, H, W] maps of one shape, got '
                     f'{predicted.shape} and {reference.shape}')
  precision, recall = [], []
  for mine, theirs in zip(predicted, reference):
    near_theirs = _distance_to(theirs) <= tolerance
    near_mine = _distance_to(mine) <= tolerance
    precision.append(near_theirs[mine].mean() if mine.any() else 1.0)
    recall.append(near_mine[theirs].mean() if theirs.any() else 1.0)
  precision, recall = np.array(precision), np.array(recall)
  total = precision + recall
  f = np.where(total > 0, 2 * precision * recall / np.maximum(total, 1e-12), 0.0)
  return {'precision': precision, 'recall': recall, 'f': f}


def _distance_to(edges: np.ndarray) -> np.ndarray:
  """Euclidean distance (pixels) from every pixel to the nearest True pixel (inf if none)."""
  if not edges.any():
    return np.full(edges.shape, np.inf)
  return ndimage.distance_transform_edt(~edges)


_SOBEL = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], np.float32)


def gradient_magnitude(images: Array) -> Array:
  """Sobel gradient magnitude of each image's luma (edge-padded), float32 ``[N, H, W]``."""
  luma = jnp.pad(grayscale(images), ((0, 0), (1, 1), (1, 1)), mode='edge')[..., None]
  kernels = jnp.asarray(np.stack([_SOBEL, _SOBEL.T], axis=-1)[:, :, None, :])  # HWIO
  gradients = jax.lax.conv_general_dilated(luma, kernels, (1, 1), 'VALID',
                                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return jnp.sqrt(jnp.sum(gradients**2, axis=-1) + 1e-12)


@jax.jit
def gradient_correlation(images: Array, reference: Array) -> Array:
  """Pearson correlation of Sobel gradient magnitudes per image pair, float32 ``[N]``.

  1 = the same edges with proportional strengths; about 0 for unrelated images; invariant to
  the brightness and contrast of either image.

  Args:
    images, reference: ``[N, H, W, 3]`` in ``[-1, 1]`` (an edge drawing works as reference).
  """
  a = gradient_magnitude(images).reshape(images.shape[0], -1)
  b = gradient_magnitude(reference).reshape(reference.shape[0], -1)
  a = a - a.mean(axis=1, keepdims=True)
  b = b - b.mean(axis=1, keepdims=True)
  denominator = jnp.sqrt(jnp.sum(a * a, axis=1) * jnp.sum(b * b, axis=1))
  return jnp.sum(a * b, axis=1) / jnp.maximum(denominator, 1e-12)


def ssim(images: Array, reference: Array) -> Array:
  """SSIM (dm-pix; Wang et al. 2004, 11x11 Gaussian window) per pair on ``[0, 1]`` RGB, ``[N]``."""
  return pix.ssim(_unit(images), _unit(reference), max_val=1.0)


def psnr(images: Array, reference: Array) -> Array:
  """PSNR in dB (dm-pix) per pair on ``[0, 1]`` RGB, float32 ``[N]``."""
  return pix.psnr(_unit(images), _unit(reference))


def _unit(images: Array) -> Array:
  return jnp.clip((jnp.asarray(images, jnp.float32) + 1.0) / 2.0, 0.0, 1.0)
