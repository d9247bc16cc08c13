"""Metrics with known values: SWD on Laplacian-pyramid patches, radial power spectra."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from phipd_jax import evaluation
from phipd_jax.evaluation import distribution as swd_lib


def _smooth_images(count, size=32, seed=0):
  """Random smooth colour images in [-1, 1] (sums of a few low-frequency sinusoids)."""
  rng = np.random.default_rng(seed)
  grid = np.linspace(0, 2 * np.pi, size, endpoint=False)
  images = np.zeros((count, size, size, 3), np.float32)
  for _ in range(4):
    fy, fx = rng.integers(1, 4, size=(2, count))
    phase = rng.uniform(0, 2 * np.pi, size=(count, 1, 1, 3))
    amplitude = rng.uniform(0.1, 0.25, size=(count, 1, 1, 3))
    images += amplitude * np.sin(fy[:, None, None, None] * grid[None, :, None, None]
                                 + fx[:, None, None, None] * grid[None, None, :, None] + phase)
  return np.clip(images, -1, 1)


def test_laplacian_pyramid_levels_reconstruct_the_images():
  images = jnp.asarray(_smooth_images(3, 64) + 0.1 * np.random.default_rng(1).normal(
      size=(3, 64, 64, 3)).astype(np.float32))
  levels = evaluation.laplacian_pyramid(images, min_size=16)
  assert [level.shape[1] for level in levels] == [64, 32, 16]
  reconstruction = levels[-1]
  for level in reversed(levels[:-1]):
    reconstruction = swd_lib._upsample(reconstruction) + level
  np.testing.assert_allclose(reconstruction, images, atol=1e-5)
  with pytest.raises(ValueError, match='power of two'):
    evaluation.laplacian_pyramid(jnp.zeros((1, 48, 48, 3)), min_size=16)


def test_sliced_wasserstein_of_a_shift_has_the_closed_form():
  # b = a + c u: every projection shifts by c (u . d), so SWD = c E|u . d| over random unit
  # directions d in D dimensions: E|d_1| = Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2)).
  dim, shift = 20, 0.5
  a = jax.random.normal(jax.random.key(0), (4000, dim))
  u = jnp.zeros((dim,)).at[0].set(1.0)
  value = float(evaluation.sliced_wasserstein(a, a + shift * u, jax.random.key(1), 256, 4))
  expected = shift * math.exp(special.gammaln(dim / 2) - special.gammaln((dim + 1) / 2)) / math.sqrt(
      math.pi)
  assert value == pytest.approx(expected, rel=0.05)
  assert float(evaluation.sliced_wasserstein(a, a, jax.random.key(1))) == 0.0
  with pytest.raises(ValueError, match='must be equal'):
    evaluation.sliced_wasserstein(a, a[:10], jax.random.key(1))


def test_swd_is_near_zero_for_two_samples_of_one_distribution_and_grows_with_blur():
  key = jax.random.key(0)
  real = _smooth_images(200, 32, seed=0) + 0.05 * np.random.default_rng(2).normal(
      size=(200, 32, 32, 3)).astype(np.float32)
  same = _smooth_images(200, 32, seed=5) + 0.05 * np.random.default_rng(3).normal(
      size=(200, 32, 32, 3)).astype(np.float32)
  kwargs = dict(descriptors=4096)
  floor = evaluation.swd(real, same, key, **kwargs)
  blurred_once = np.asarray(swd_lib._blur(jnp.asarray(real)))
  blurred_twice = np.asarray(swd_lib._blur(jnp.asarray(blurred_once)))
  once = evaluation.swd(blurred_once, same, key, **kwargs)
  twice = evaluation.swd(blurred_twice, same, key, **kwargs)
  assert set(floor) == {'swd_32', 'swd_16', 'swd_mean'}
  # The finest level sees the lost texture: a monotone increase with the blur.
  assert floor['swd_32'] < once['swd_32'] < twice['swd_32']
  assert once['swd_32'] > 1.5 * floor['swd_32'], (floor, once)
  # Equal images with the same key: identical descriptor draws are not guaranteed (two keys),
  # but the distance stays at the sampling floor.
  assert evaluation.swd(real, real, key, **kwargs)['swd_mean'] < 1.5 * floor['swd_mean'] + 5


def test_radial_power_spectrum_of_white_noise_is_flat_at_the_variance():
  sigma = 0.7
  noise = sigma * jax.random.normal(jax.random.key(0), (64, 32, 32, 3))
  spectrum = np.asarray(evaluation.radial_power_spectrum(noise))
  assert spectrum.shape == (17,)
  np.testing.assert_allclose(spectrum[1:], sigma**2, rtol=0.1)
  assert evaluation.spectrum_distance(spectrum, spectrum) == 0.0
  # Scaling the images by a scales the power by a^2: log10(a^2) decades everywhere.
  scaled = np.asarray(evaluation.radial_power_spectrum(3.0 * noise))
  assert evaluation.spectrum_distance(scaled, spectrum) == pytest.approx(math.log10(9.0), abs=1e-5)
  # High-frequency share: area above half Nyquist, ~3/4 of the disc-and-corners for white noise.
  assert 0.5 < evaluation.high_frequency_share(spectrum) < 0.8


def test_radial_power_spectrum_puts_a_sinusoid_in_its_bin():
  size, k = 32, 5
  grid = np.arange(size)
  wave = np.cos(2 * np.pi * k * grid / size)[None, :, None, None] * np.ones((1, 1, size, 1))
  spectrum = np.asarray(evaluation.radial_power_spectrum(jnp.asarray(wave, jnp.float32)))
  assert int(np.argmax(spectrum)) == k
  assert spectrum[k] > 100 * np.delete(spectrum, k).max()
  smooth = evaluation.radial_power_spectrum(_smooth_images(16, 32))
  assert evaluation.high_frequency_share(smooth) < 0.05  # Natural-like images: low-pass.
