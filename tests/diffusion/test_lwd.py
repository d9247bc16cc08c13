"""LWD mask, weight hook and masked loss (Latent Wavelet Diffusion, arXiv:2506.00433)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phipd_jax import spectral
from phipd_jax import diffusion
from phipd_jax.diffusion import lwd

# Jitted once per shape (far cheaper on CPU than op-by-op eager compilation). Under jit sigma is
# traced, so the range guard is exercised separately with concrete values.
_energy = jax.jit(spectral.wavelet_energy_map)
_mask = jax.jit(lwd.lwd_mask, static_argnames='ell')
_masks_over_sigmas = jax.jit(jax.vmap(lwd.lwd_mask, in_axes=(None, 0, None)), static_argnums=2)
_fraction = jax.jit(lwd.mask_fraction_by_sigma, static_argnames='ell')
_loss = jax.jit(lwd.masked_flow_matching_loss, static_argnames='normalize')
SHAPE = (2, 16, 16, 4)


def _random_map(seed=0):
  """A ``[2, 16, 16]`` map in [0, 1] with exact 0 and 1 entries, like a min-max normalised map."""
  a = np.random.default_rng(seed).uniform(size=SHAPE[:3]).astype(np.float32)
  a[:, 0, 0], a[:, 5, 7] = 0.0, 1.0
  return a


def _textured_noisy_latent(sigma, seed=0):
  """``x_sigma = (1 - sigma) z0 + sigma eps`` with ``z0`` = smooth ramp + a strong 6x6 texture."""
  rng = np.random.default_rng(seed)
  batch, height, width, channels = SHAPE
  ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, None, :, None]
  z0 = np.broadcast_to(ramp, SHAPE).copy()
  checker = np.where((np.arange(6)[:, None] + np.arange(6)[None, :]) % 2 == 0, 1.0, -1.0)
  z0[:, 4:10, 6:12] += 20.0 * checker[None, :, :, None]
  eps = rng.normal(size=SHAPE).astype(np.float32)
  return ((1.0 - sigma) * z0 + sigma * eps).astype(np.float32)


def test_mask_is_binary_and_supervises_everything_for_sigma_at_most_ell():
  a = _random_map()
  for sigma in (0.0, 0.1, 0.3):
    mask = _mask(a, np.float32(sigma))
    assert mask.shape == (2, 16, 16, 1) and mask.dtype == jnp.float32
    np.testing.assert_array_equal(mask, 1.0)
  np.testing.assert_array_equal(_fraction(a, np.linspace(0.0, 0.3, 7, dtype=np.float32)), 1.0)
  # Per-sample sigma: the sample at sigma = 1 keeps exactly the positions with A >= 0.7.
  mask = np.asarray(_mask(a, np.array([0.2, 1.0], np.float32)))
  assert set(np.unique(mask)) == {0.0, 1.0}
  np.testing.assert_array_equal(mask[0], 1.0)
  np.testing.assert_array_equal(mask[1, ..., 0], (a[1] >= 0.7).astype(np.float32))


def test_argmax_is_always_supervised_and_the_fraction_does_not_increase_with_sigma():
  a = _energy(_textured_noisy_latent(0.5))
  sigmas = np.linspace(0.0, 1.0, 101, dtype=np.float32)
  masks = np.asarray(_masks_over_sigmas(a, sigmas, 0.3))  # [S, B, H, W, 1]
  flat = np.asarray(a).reshape(2, -1).argmax(axis=1)
  for b in range(2):
    np.testing.assert_array_equal(masks[:, b, ..., 0].reshape(101, -1)[:, flat[b]], 1.0)
  fraction = np.asarray(_fraction(a, sigmas))
  np.testing.assert_allclose(fraction, masks.mean(axis=(1, 2, 3, 4)), atol=1e-7)
  assert np.all(np.diff(fraction) <= 0.0)
  assert fraction[0] == 1.0 and fraction[-1] < fraction[0]


def test_textured_latent_is_partly_masked_at_high_sigma():
  # Guard against wrong time units: with sigma in [0, 1] the rule must act at sigma = 0.9.
  x_t = _textured_noisy_latent(0.9)
  a = _energy(x_t)
  fraction = np.asarray(_fraction(a, np.array([0.2, 0.9], np.float32)))
  assert fraction[0] == 1.0
  assert fraction[1] < 1.0
  assert fraction[1] < 0.6  # The texture patch (~14% of the area) and its neighbourhood.
  mask = np.asarray(jax.jit(lwd.lwd_weight_fn(0.3))(x_t, np.full((2,), 0.9, np.float32)))
  np.testing.assert_array_equal(mask[:, 5:9, 7:11], 1.0)  # The patch interior is supervised.
  np.testing.assert_allclose(mask.mean(), fraction[1], atol=1e-7)


@pytest.mark.parametrize('ell', [0.3, 0.1])
def test_discrete_timestep_rule_equals_the_continuous_rule(ell):
  # Released rule: T (A + ell) >= timestep, T = 1000, timestep = round(1000 sigma) in {0..1000}.
  # A is kept half a timestep away from ties, plus the exact ends 0 and 1.
  k = np.random.default_rng(1).integers(0, 1000, size=SHAPE[:3])
  a = ((k + 0.5) / 1000.0).astype(np.float32)
  a[:, 0, 0], a[:, 5, 7] = 0.0, 1.0
  timesteps = np.arange(0, 1001)
  discrete = 1000.0 * (a.astype(np.float64)[None] + ell) >= timesteps[:, None, None, None]
  continuous = _masks_over_sigmas(a, (timesteps / 1000.0).astype(np.float32), ell)[..., 0]
  np.testing.assert_array_equal(np.asarray(continuous), discrete.astype(np.float32))


def test_sigma_in_timestep_units_or_integer_dtype_raises():
  a = _random_map()
  for bad in (500.0, np.array([0.5, 500.0]), -0.1, 1.001):
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
      lwd.lwd_mask(a, bad)
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    lwd.mask_fraction_by_sigma(a, [0.5, 900.0])
  with pytest.raises(ValueError, match='integer'):  # Caught even under jit (dtype is static).
    jax.jit(lwd.lwd_mask)(a, jnp.array([300, 900], jnp.int32))
  with pytest.raises(ValueError, match='integer'):
    jax.jit(lwd.lwd_weight_fn())(_textured_noisy_latent(0.3), jnp.array([3, 4], jnp.int32))
  with pytest.raises(ValueError, match='ell'):
    lwd.lwd_weight_fn(-0.1)
  with pytest.raises(ValueError, match='sigma must be a scalar'):
    lwd.lwd_mask(a, np.full((3,), 0.5, np.float32))
  with pytest.raises(ValueError, match=r'\[B, H, W\]'):
    lwd.lwd_mask(a[..., None], 0.5)


def test_weight_fn_is_the_mask_of_the_noisy_latent_map_and_has_no_gradient():
  x_t = _textured_noisy_latent(0.7, seed=2)
  t = np.array([0.25, 0.7], np.float32)
  weight_fn = lwd.lwd_weight_fn(0.3)
  weights = jax.jit(weight_fn)(x_t, t)
  assert weights.shape == (2, 16, 16, 1) and weights.dtype == jnp.float32
  np.testing.assert_array_equal(weights, _mask(_energy(x_t), t))
  np.testing.assert_array_equal(weights[0], 1.0)  # t = 0.25 <= ell.
  grad = jax.jit(jax.grad(lambda x: jnp.sum(weight_fn(x, t) * x)))(x_t)
  np.testing.assert_array_equal(grad, weights * np.ones_like(x_t))  # Only the explicit factor.


def test_released_channels_reach_the_weight_fn_and_the_logged_fractions():
  """diffusion.lwd.channels='released' -> the weight and the logged fractions use the map of
  channels 0-2 (spectral.wavelet_energy_map's released rule, tested against the released
  indexing in tests/test_spectral.py)."""
  x_t = np.asarray(_textured_noisy_latent(0.7, seed=5))
  x_t = np.concatenate([x_t, 3.0 * x_t[..., :1]], axis=-1)  # A 4th channel the rule ignores.
  t = np.array([0.6, 0.7], np.float32)
  released = jax.jit(lwd.process_weight_fn(diffusion.FlowMatching(), 0.3,
                                           channels='released'))(x_t, t)
  np.testing.assert_array_equal(released, _mask(_energy(x_t[..., :3]), t))
  sigmas = np.array([0.5, 0.8], np.float32)
  eps = np.zeros_like(x_t)
  fractions = lwd.mask_fraction_at_sigmas(x_t, eps, sigmas, 0.3, channels='released')
  expected = lwd.mask_fraction_at_sigmas(x_t[..., :3], eps[..., :3], sigmas, 0.3)
  np.testing.assert_allclose(fractions, expected)
  with pytest.raises(ValueError, match="channels='first' must be one of"):
    lwd.lwd_weight_fn(0.3, channels='first')


def test_masked_loss_reference_normalisation_and_the_mask_deviation():
  rng = np.random.default_rng(3)
  v_pred, v_target = (rng.normal(size=SHAPE).astype(np.float32) for _ in range(2))
  squared = (v_pred.astype(np.float64) - v_target) ** 2
  ones = np.ones(SHAPE[:3] + (1,), np.float32)
  assert float(_loss(v_pred, v_target, ones)) == pytest.approx(squared.mean(), rel=1e-5)
  mask = (rng.uniform(size=SHAPE[:3] + (1,)) < 0.4).astype(np.float32)
  expected = np.sum(mask * squared) / np.prod(SHAPE)
  assert float(_loss(v_pred, v_target, mask)) == pytest.approx(expected, rel=1e-5)
  supervised = squared[np.broadcast_to(mask, SHAPE) == 1.0]
  assert supervised.size == mask.sum() * SHAPE[3]
  assert float(_loss(v_pred, v_target, mask, normalize='mask')) == pytest.approx(
      supervised.mean(), rel=1e-5)
  weight = np.array([0.5, 2.0], np.float32)
  expected = np.sum(weight[:, None, None, None] * mask * squared) / np.prod(SHAPE)
  assert float(_loss(v_pred, v_target, mask, weight)) == pytest.approx(expected, rel=1e-5)
  assert float(_loss(v_pred, v_target, 0.0 * ones, normalize='mask')) == 0.0
  with pytest.raises(ValueError, match='normalize'):
    lwd.masked_flow_matching_loss(v_pred, v_target, mask, normalize='sum')
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    lwd.masked_flow_matching_loss(v_pred, v_target[..., :2], mask)


def test_mask_normalisation_of_the_weight_hook_equals_the_masked_loss():
  """``normalize='mask'`` (deviation): mean(M / mean(M) * err) = the mean over supervised."""
  rng = np.random.default_rng(4)
  x_t = _textured_noisy_latent(0.8, seed=4)
  t = np.array([0.9, 0.95], np.float32)
  v_pred, v_target = (rng.normal(size=SHAPE).astype(np.float32) for _ in range(2))
  mask = jax.jit(lwd.lwd_weight_fn(0.3))(x_t, t)
  weight = jax.jit(lwd.lwd_weight_fn(0.3, normalize='mask'))(x_t, t)
  assert 0.0 < float(mask.mean()) < 1.0
  np.testing.assert_allclose(weight, mask / mask.mean(), rtol=1e-6)
  weighted = float(np.mean(np.square(v_pred - v_target) * np.asarray(weight)))
  assert weighted == pytest.approx(float(_loss(v_pred, v_target, mask, normalize='mask')),
                                   rel=1e-5)
  with pytest.raises(ValueError, match='normalize'):
    lwd.lwd_weight_fn(0.3, normalize='sum')


def test_process_weight_fn_refuses_processes_with_other_time_units():
  from phipd_jax.diffusion import processes
  flow = processes.FlowMatching()
  x_t, t = _textured_noisy_latent(0.5), np.array([0.5, 0.9], np.float32)
  np.testing.assert_array_equal(jax.jit(lwd.process_weight_fn(flow))(x_t, t),
                                jax.jit(lwd.lwd_weight_fn())(x_t, t))
  for process in (processes.DDPM(), processes.EDM()):
    with pytest.raises(ValueError, match='flow-matching process'):
      lwd.process_weight_fn(process)


def test_mask_fraction_at_sigmas_is_the_mask_mean_of_the_noisy_batch():
  rng = np.random.default_rng(5)
  x0 = _textured_noisy_latent(0.0)
  eps = rng.normal(size=SHAPE).astype(np.float32)
  sigmas = (0.1, 0.5, 0.9)
  fractions = np.asarray(jax.jit(lambda a, b: lwd.mask_fraction_at_sigmas(a, b, sigmas))(x0, eps))
  for fraction, sigma in zip(fractions, sigmas):
    x_s = ((1 - sigma) * x0 + sigma * eps).astype(np.float32)
    expected = np.asarray(_mask(_energy(x_s), np.float32(sigma))).mean()
    assert fraction == pytest.approx(expected, abs=1e-6)
  assert fractions[0] == 1.0 and fractions[2] < 1.0
  np.testing.assert_array_equal(lwd.mask_fraction_at_sigmas(x0, eps, sigmas, ell=1.0), 1.0)
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    lwd.mask_fraction_at_sigmas(x0, eps, (0.5, 900.0))
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    lwd.mask_fraction_at_sigmas(x0, eps[..., :2], sigmas)
