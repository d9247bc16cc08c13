"""Radially averaged power spectra of images or noise maps, and distances between them.

The power spectrum of an image ``[H, W, C]`` is ``|FFT2(x - mean(x))|^2 / (H W)`` per channel
(orthonormal scaling: white noise of variance s^2 has a flat spectrum at s^2), averaged over
channels and over integer radius bins ``round(sqrt(ky^2 + kx^2))`` of the centred frequency
index (cycles per image; :func:`phipd_jax.spectral.radius_bins`), bins ``0 .. min(H, W) / 2``.
Natural images fall roughly as ``k^-2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import spectral

Array = jax.Array


def radial_power_spectrum(images: Array) -> Array:
  """Mean radially averaged power spectrum of a set, float32 ``[min(H, W) // 2 + 1]``.

  Args:
    images: ``[N, H, W, C]`` (any real scale; the per-image mean is removed).

  Returns:
    Power per radius bin ``k = 0 .. min(H, W) / 2`` (cycles per image), averaged over images,
    channels and the frequencies of each bin.
  """
  images = jnp.asarray(images, jnp.float32)
  _, height, width, _ = images.shape
  centred = images - jnp.mean(images, axis=(1, 2), keepdims=True)
  power = jnp.abs(jnp.fft.fft2(centred, axes=(1, 2))) ** 2 / (height * width)
  power = jnp.mean(power, axis=(0, 3))  # [H, W]
  bins = spectral.radius_bins(height, width)
  num_bins = min(height, width) // 2 + 1
  keep = bins < num_bins
  totals = jnp.zeros(num_bins).at[bins[keep]].add(power[keep])
  counts = np.bincount(bins[keep], minlength=num_bins)
  return totals / counts


def spectrum_distance(spectrum: Array, reference: Array) -> float:
  """Mean ``|log10 P(k) - log10 P_ref(k)|`` over bins ``k >= 1`` (decades; 0 = equal)."""
  spectrum, reference = np.asarray(spectrum)[1:], np.asarray(reference)[1:]
  tiny = 1e-12
  return float(np.mean(np.abs(np.log10(spectrum + tiny) - np.log10(reference + tiny))))


def high_frequency_share(spectrum: Array, fraction: float = 0.5) -> float:
  """Share of the (k >= 1) power in bins above ``fraction`` of the Nyquist radius, in [0, 1]."""
  spectrum = np.asarray(spectrum)[1:]
  radii = np.arange(1, len(spectrum) + 1)
  return float(spectrum[radii > fraction * radii[-1]].sum() / spectrum.sum())


def band_energy_ratio(spectrum: Array, fraction: float = 0.5) -> float:
  """Low-band over high-band power (bins ``1 .. fraction * Nyquist`` vs above), in ``(0, inf)``.

  Bins are radial averages and count equally, so white noise (a flat spectrum) has a ratio of
  about ``fraction / (1 - fraction)`` (1 at 0.5); natural images, with power falling like
  ``k^-2``, have ratios well above 1. Useful on inverted noise maps: a ratio above white noise's means
  low-frequency structure leaked into the noise (spectral collapse).
  """
  share = high_frequency_share(spectrum, fraction)
  return float((1.0 - share) / max(share, 1e-12))
