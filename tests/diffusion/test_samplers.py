"""Diffusion processes and samplers, checked against closed-form Gaussian oracles.

For data ``x0 ~ N(mu, s^2 I)`` and Gaussian noise, the optimal denoiser is linear:
flow matching ``E[x0 | x_t] = mu + (1-t) s^2 / ((1-t)^2 s^2 + t^2) (x_t - (1-t) mu)``; DDPM with
``x_k = a x0 + b eps``: ``E[x0 | x_k] = mu + a s^2 / (a^2 s^2 + b^2) (x_k - a mu)``. The
probability-flow ODE keeps each sample's standard score, so a start ``x_start`` at noise level
(signal a, noise b) must land on ``mu + s (x_start - a mu) / sqrt(a^2 s^2 + b^2)``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phipd_jax import diffusion
from phipd_jax import noise as noise_lib
from phipd_jax.diffusion import samplers

MU, S = 0.7, 0.4
SHAPE = (4, 8, 8, 3)


def flow_oracle(prediction):
  process = diffusion.FlowMatching()

  def apply_fn(x_t, t, y):
    del y
    t = t[:, None, None, None]
    x0 = MU + (1 - t) * S**2 / ((1 - t) ** 2 * S**2 + t**2) * (x_t - (1 - t) * MU)
    eps = (x_t - (1 - t) * x0) / t
    return {'x': x0, 'eps': eps, 'v': eps - x0}[prediction]

  return process, apply_fn


def ddpm_oracle(prediction, schedule='cosine'):
  process = diffusion.DDPM(schedule=schedule, num_steps=1000)
  alpha_bar = process.alpha_bar

  def apply_fn(x_k, t, y):
    del y
    k = jnp.round(t * process.num_steps).astype(jnp.int32)
    a = jnp.sqrt(alpha_bar[k])[:, None, None, None]
    b = jnp.sqrt(1 - alpha_bar[k])[:, None, None, None]
    x0 = MU + a * S**2 / (a**2 * S**2 + b**2) * (x_k - a * MU)
    eps = (x_k - a * x0) / b
    return {'x': x0, 'eps': eps, 'v': a * eps - b * x0}[prediction]

  return process, apply_fn


def analytic_endpoint(x_start, signal, noise):
  return MU + S * (x_start - signal * MU) / np.sqrt(signal**2 * S**2 + noise**2)


# -- The three ways of choosing the start noise, as oracles: the library's samplers never choose
# the noise (sampling.Sampler draws it with noise.noise_fn and calls samplers.sample_from). ---


def generate_oracle(process, denoise, key, shape, num_steps, method):
  """Generation: Gaussian noise of ``key`` at strength 1 from ``x_input = 0``."""
  zeros = jnp.zeros(shape, jnp.float32)
  eps = noise_lib.gaussian(key, zeros)
  return samplers.sample_from(process, denoise, zeros, eps, 1.0, num_steps, method)


def sdedit_oracle(process, denoise, key, x_input, strength, num_steps, method):
  """SDEdit (Meng et al. 2022): Gaussian noise of ``key`` at ``strength``, then the sampler."""
  eps = noise_lib.gaussian(key, x_input.astype(jnp.float32))
  return samplers.sample_from(process, denoise, x_input, eps, strength, num_steps, method)


def phipd_translate_oracle(process, denoise, key, x_input, radius, num_steps, method,
                           strength=1.0):
  """phi-PD (paper Sec. 4): FSS noise of ``x_input`` at ``radius`` drawn from ``key``, then the
  sampler (from noise at strength 1, structured SDEdit below)."""
  eps = noise_lib.fss(key, x_input.astype(jnp.float32), radius)
  return samplers.sample_from(process, denoise, x_input, eps, strength, num_steps, method)


def test_flow_interpolation_and_targets():
  process = diffusion.FlowMatching()
  x0, eps = jnp.full(SHAPE, 0.3), jnp.full(SHAPE, -1.2)
  t = jnp.array([0.0, 0.25, 0.5, 1.0])
  x_t = process.noisy(x0, eps, t)
  np.testing.assert_allclose(x_t[0], x0[0])
  np.testing.assert_allclose(x_t[3], eps[3])
  np.testing.assert_allclose(x_t[1], 0.75 * 0.3 + 0.25 * -1.2, rtol=1e-6)
  for prediction in process.predictions:
    target = process.target(x0, eps, t, prediction)
    x0_hat, eps_hat = process.to_x0_eps(target, x_t, t, prediction)
    np.testing.assert_allclose(x0_hat[1:3], x0[1:3], atol=1e-5)
    np.testing.assert_allclose(eps_hat[1:3], eps[1:3], atol=1e-5)
  np.testing.assert_allclose(process.target(x0, eps, t, 'v'), eps - x0)


@pytest.mark.parametrize('schedule', ['cosine', 'linear'])
def test_ddpm_schedule_and_conversions(schedule):
  process = diffusion.DDPM(schedule=schedule)
  alpha_bar = np.asarray(process.alpha_bar)
  assert alpha_bar.shape == (1000,) and np.all(np.diff(alpha_bar) < 0)
  assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 1e-3
  if schedule == 'linear':  # Ho et al. 2020: alpha_bar_T ~ 4e-5.
    np.testing.assert_allclose(alpha_bar[-1], 4.04e-5, rtol=0.05)
  x0 = jax.random.normal(jax.random.key(0), SHAPE)
  eps = jax.random.normal(jax.random.key(1), SHAPE)
  k = jnp.array([0, 100, 500, 999])
  x_k = process.noisy(x0, eps, k)
  np.testing.assert_allclose(
      x_k[2], np.sqrt(alpha_bar[500]) * x0[2] + np.sqrt(1 - alpha_bar[500]) * eps[2], rtol=1e-5)
  for prediction in process.predictions:
    target = process.target(x0, eps, k, prediction)
    x0_hat, eps_hat = process.to_x0_eps(target, x_k, k, prediction)
    np.testing.assert_allclose(x0_hat[1:3], x0[1:3], atol=1e-4)
    np.testing.assert_allclose(eps_hat[1:3], eps[1:3], atol=1e-4)


def test_time_samplers():
  uniform = diffusion.FlowMatching(time_sampler='uniform').sample_time(jax.random.key(0), 20000)
  assert 0 <= float(uniform.min()) and float(uniform.max()) <= 1
  assert abs(float(uniform.mean()) - 0.5) < 0.01
  logit = diffusion.FlowMatching(logit_mean=0.8, logit_std=0.8).sample_time(jax.random.key(0),
                                                                              20000)
  np.testing.assert_allclose(float(jnp.median(logit)), float(jax.nn.sigmoid(0.8)), atol=0.01)
  k = diffusion.DDPM().sample_time(jax.random.key(0), 20000)
  assert k.dtype == jnp.int32 and int(k.min()) == 0 and int(k.max()) == 999


@pytest.mark.parametrize('prediction', ('v', 'x', 'eps'))
@pytest.mark.parametrize('method, steps, tolerance', [('euler', 200, 2e-2), ('heun', 100, 2.5e-3)])
def test_flow_samplers_land_on_the_analytic_answer(prediction, method, steps, tolerance):
  process, apply_fn = flow_oracle(prediction)
  denoise = diffusion.denoiser(process, apply_fn, prediction)
  eps = jax.random.normal(jax.random.key(0), SHAPE)
  x0 = generate_oracle(process, denoise, jax.random.key(0), SHAPE, steps, method)
  np.testing.assert_allclose(x0, analytic_endpoint(eps, 0.0, 1.0), atol=tolerance)


def test_heun_is_second_order():
  process, apply_fn = flow_oracle('v')
  denoise = diffusion.denoiser(process, apply_fn, 'v')
  want = analytic_endpoint(jax.random.normal(jax.random.key(0), SHAPE), 0.0, 1.0)
  errors = {}
  for method in ['euler', 'heun']:
    for steps in [10, 20]:
      x0 = generate_oracle(process, denoise, jax.random.key(0), SHAPE, steps, method)
      errors[method, steps] = float(jnp.max(jnp.abs(x0 - want)))
  assert errors['heun', 10] < errors['euler', 10] / 5
  assert errors['euler', 10] / errors['euler', 20] > 1.6  # First order: ~2x.
  assert errors['heun', 10] / errors['heun', 20] > 2.5  # Second order (last step Euler): > 2x.


@pytest.mark.parametrize('prediction', ('v', 'x', 'eps'))
@pytest.mark.parametrize('schedule', ['cosine', 'linear'])
def test_ddim_lands_on_the_analytic_answer(prediction, schedule):
  process, apply_fn = ddpm_oracle(prediction, schedule)
  denoise = diffusion.denoiser(process, apply_fn, prediction)
  eps = jax.random.normal(jax.random.key(0), SHAPE)
  x0 = generate_oracle(process, denoise, jax.random.key(0), SHAPE, 250, 'ddim')
  a_T = float(np.sqrt(process.alpha_bar[-1]))
  want = analytic_endpoint(a_T * 0.0 + np.sqrt(1 - a_T**2) * eps, a_T, np.sqrt(1 - a_T**2))
  np.testing.assert_allclose(x0, want, atol=2e-2)


@pytest.mark.parametrize('kind', ['flow', 'ddpm'])
def test_sdedit_partial_strength_lands_on_the_analytic_answer(kind):
  x_input = jnp.full(SHAPE, -0.5)
  key = jax.random.key(3)
  eps = jax.random.normal(key, SHAPE)
  strength = 0.6
  if kind == 'flow':
    process, apply_fn = flow_oracle('v')
    signal, noise_level, steps, method = 1 - strength, strength, 60, 'heun'
  else:
    process, apply_fn = ddpm_oracle('eps')
    k = int(process.step_from_strength(strength))
    signal = float(np.sqrt(process.alpha_bar[k]))
    noise_level, steps, method = np.sqrt(1 - signal**2), 200, 'ddim'
  denoise = diffusion.denoiser(process, apply_fn, 'v' if kind == 'flow' else 'eps')
  out = sdedit_oracle(process, denoise, key, x_input, strength, steps, method)
  want = analytic_endpoint(signal * x_input + noise_level * eps, signal, noise_level)
  np.testing.assert_allclose(out, want, atol=2e-2)


def test_phipd_translate_starts_from_structured_noise():
  """With the identity denoiser at t_start, zero steps' worth of motion: x_start is FSS noise."""
  process = diffusion.FlowMatching()
  x_input = jax.random.uniform(jax.random.key(1), SHAPE, minval=-1, maxval=1)
  key = jax.random.key(2)
  zero_velocity = lambda x_t, t: (x_t, x_t)  # eps_hat - x0_hat = 0: the sampler keeps x_start.
  out = phipd_translate_oracle(process, zero_velocity, key, x_input, 2.0, 4, 'euler')
  np.testing.assert_allclose(out, noise_lib.fss(key, x_input, 2.0), atol=1e-6)
  half = phipd_translate_oracle(process, zero_velocity, key, x_input, 2.0, 4, 'euler',
                                strength=0.5)
  np.testing.assert_allclose(half, 0.5 * x_input + 0.5 * noise_lib.fss(key, x_input, 2.0),
                             atol=1e-6)


def test_classifier_free_guidance_combination():
  process = diffusion.FlowMatching()
  # A "network" whose v-output is the label value: guided = u + w (c - u).
  apply_fn = lambda x, t, y: jnp.broadcast_to(y[:, None, None, None].astype(jnp.float32), x.shape)
  y = jnp.array([2, 2, 2, 2])
  denoise = diffusion.denoiser(process, apply_fn, 'v', y=y, guidance_scale=3.0, null_label=10)
  x = jnp.zeros(SHAPE)
  x0, eps = denoise(x, jnp.float32(0.5))
  np.testing.assert_allclose(eps - x0, 10 + 3.0 * (2 - 10), atol=1e-5)
  with pytest.raises(ValueError, match='null_label'):
    diffusion.denoiser(process, apply_fn, 'v', y=y, guidance_scale=2.0)


def test_sampler_compiles_once_per_shape_and_steps():
  process, apply_fn = flow_oracle('v')

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x_input, key, strength, radius):
    denoise = diffusion.denoiser(process, apply_fn, 'v')
    return phipd_translate_oracle(process, denoise, key, x_input, radius, 8, 'heun',
                                  strength=strength)

  x_input = jnp.zeros(SHAPE)
  for strength, radius in [(1.0, 2.0), (0.5, 8.0), (0.3, 1.0)]:
    run(x_input, jax.random.key(0), strength, radius)


def test_bad_configuration_raises():
  with pytest.raises(ValueError, match='prediction'):
    diffusion.FlowMatching().target(jnp.zeros(1), jnp.zeros(1), 0.5, 'score')
  with pytest.raises(ValueError, match='schedule'):
    diffusion.DDPM(schedule='sqrt')
  with pytest.raises(ValueError, match='method'):
    samplers.solve(diffusion.FlowMatching(), lambda x, t: (x, x), jnp.zeros(SHAPE),
                   jnp.linspace(1.0, 0.0, 5), 'rk4')
