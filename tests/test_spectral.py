"""Orthonormal DCT and the Spectral Forcing operator (spec spectral_forcing_and_jit.md Sec. 9)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from phipd_jax import spectral


@pytest.mark.parametrize('size', [1, 7, 16, 64])
def test_dct_matrix_is_orthonormal_and_equals_scipy(size):
  d = np.asarray(spectral.dct_matrix(size), np.float64)
  np.testing.assert_allclose(d @ d.T, np.eye(size), atol=1e-5)
  x = np.random.default_rng(size).normal(size=(size, 3))
  np.testing.assert_allclose(d @ x, scipy.fft.dct(x, type=2, norm='ortho', axis=0), atol=1e-5)


def test_dct2_round_trip_and_equals_scipy_dctn_on_non_square_images():
  x = np.random.default_rng(0).normal(size=(2, 12, 20, 3)).astype(np.float32)
  coefficients = spectral.dct2(jnp.asarray(x))
  np.testing.assert_allclose(coefficients, scipy.fft.dctn(x, type=2, norm='ortho', axes=(1, 2)),
                             atol=1e-5)
  np.testing.assert_allclose(spectral.idct2(coefficients), x, atol=1e-5)


def test_released_mask_values_at_the_ends():
  # Spec Sec. 7: DC at t_data = 0 is sigmoid(30 * 0.05) = 0.8176; the far corner at t_data = 1
  # is exactly sigmoid(0) = 0.5 (the released operator is not the identity at the data end).
  mask = np.asarray(spectral.forcing_mask(jnp.array([0.0, 1.0]), 256, 256))
  assert mask[0, 0, 0] == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-6)
  assert mask[0, 0, 0] == pytest.approx(0.8176, abs=1e-4)
  assert mask[1, 255, 255] == pytest.approx(0.5, abs=1e-6)
  # The spec's table at t_data = 1: mean mask 0.996, 5.1% of coefficients below 0.99.
  assert mask[1].mean() == pytest.approx(0.996, abs=5e-4)
  assert (mask[1] < 0.99).mean() == pytest.approx(0.051, abs=2e-3)
  # And at the median training time t_data = 0.31: mean 0.193 (spec table row for c = 0.345).
  assert float(spectral.forcing_mask(0.31, 256, 256).mean()) == pytest.approx(0.193, abs=2e-3)


@pytest.mark.parametrize('schedule', spectral.SCHEDULES)
def test_mask_is_non_decreasing_in_time_at_every_coefficient(schedule):
  times = jnp.linspace(0.0, 1.0, 41)
  mask = np.asarray(spectral.forcing_mask(times, 32, 24, schedule=schedule))
  assert np.all(np.diff(mask, axis=0) >= -1e-7)
  assert np.all((mask > 0) & (mask <= 1))
  # The cutoff opens up: strictly more energy passes at the data end than at the noise end.
  assert mask[-1].sum() > mask[0].sum() + 0.5 * mask[0].size


def test_identity_where_the_mask_is_one():
  z = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  # Power-law contour: cutoff = inf at t_data = 1, an exact identity (up to float32 DCT error).
  out = spectral.spectral_forcing(z, jnp.ones((2,)), schedule='power_law')
  np.testing.assert_allclose(out, z, atol=1e-5)
  # Any schedule with a cutoff far beyond the corner: M = 1 everywhere.
  out = spectral.spectral_forcing(z, jnp.zeros((2,)), c_min=5.0, c_max=5.0)
  np.testing.assert_allclose(out, z, atol=1e-5)
  # The released linear schedule at t_data = 1 is close to, not exactly, the identity: only the
  # highest radii are attenuated (documented tolerance: relative error below 5% on white noise,
  # below 1e-3 on a smooth image whose energy sits at low frequencies).
  out = spectral.spectral_forcing(z, jnp.ones((2,)))
  relative = float(jnp.linalg.norm(out - z) / jnp.linalg.norm(z))
  assert 1e-3 < relative < 0.05, relative
  grid = jnp.linspace(-1, 1, 32)
  smooth = jnp.broadcast_to(jnp.sin(2 * grid)[:, None, None] * jnp.cos(grid)[None, :, None],
                            (1, 32, 32, 3))
  out = spectral.spectral_forcing(smooth, jnp.ones((1,)))
  assert float(jnp.linalg.norm(out - smooth) / jnp.linalg.norm(smooth)) < 1e-3


def test_operator_is_linear_per_channel_and_never_adds_energy():
  keys = jax.random.split(jax.random.key(1), 2)
  a = jax.random.normal(keys[0], (3, 16, 16, 3))
  b = jax.random.normal(keys[1], (3, 16, 16, 3))
  t = jnp.array([0.0, 0.4, 0.9])
  sf = lambda z: spectral.spectral_forcing(z, t)
  np.testing.assert_allclose(sf(2.0 * a - 0.5 * b), 2.0 * sf(a) - 0.5 * sf(b), atol=1e-5)
  # Per channel: channel 1 of the output depends only on channel 1 of the input.
  changed = a.at[..., 0].set(0.0).at[..., 2].set(5.0)
  np.testing.assert_allclose(sf(changed)[..., 1], sf(a)[..., 1], atol=1e-6)
  energy_in = jnp.sum(a**2, axis=(1, 2, 3))
  energy_out = jnp.sum(sf(a)**2, axis=(1, 2, 3))
  assert np.all(np.asarray(energy_out) <= np.asarray(energy_in) + 1e-4)
  assert float(energy_out[0]) < 0.1 * float(energy_in[0])  # Noise end: a strong low-pass.
  # Each sample uses its own t: the batch is the vmap of single images.
  single = jnp.concatenate([spectral.spectral_forcing(a[i:i + 1], t[i]) for i in range(3)])
  np.testing.assert_allclose(sf(a), single, atol=1e-6)


def test_window_equal_to_the_image_is_the_full_image_operator_and_tiles_are_independent():
  z = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))
  t = jnp.array([0.2, 0.7])
  np.testing.assert_allclose(spectral.spectral_forcing(z, t, window=16),
                             spectral.spectral_forcing(z, t), atol=1e-6)
  tiled = spectral.spectral_forcing(z, t, window=8)
  top_left = spectral.spectral_forcing(z[:, :8, :8], t)
  np.testing.assert_allclose(tiled[:, :8, :8], top_left, atol=1e-5)
  with pytest.raises(ValueError, match='window=6'):
    spectral.spectral_forcing(z, t, window=6)


def test_jit_equals_no_jit_and_bad_arguments_fail_early():
  z = jax.random.normal(jax.random.key(3), (2, 16, 24, 3))
  t = jnp.array([0.1, 0.8])
  for schedule in spectral.SCHEDULES:
    eager = spectral.spectral_forcing(z, t, schedule=schedule)
    jitted = jax.jit(lambda z, t: spectral.spectral_forcing(z, t, schedule=schedule))(z, t)
    np.testing.assert_allclose(eager, jitted, atol=1e-6)
  with pytest.raises(ValueError, match='schedule'):
    spectral.spectral_forcing(z, t, schedule='cosine')
  with pytest.raises(ValueError, match='c_min'):
    spectral.spectral_forcing(z, t, c_min=0.0)
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    spectral.spectral_forcing(z[0], t)
