"""The Process interface: step identities, EDM, grids, inversion round trips, no recompiles.

Oracles: for data ``x0 ~ N(MU, S^2 I)`` and ``x_t = a x0 + b eps`` the optimal denoiser is
``E[x0 | x_t] = MU + a S^2 / (a^2 S^2 + b^2) (x_t - a MU)``, and the probability-flow ODE keeps
each sample's standard score.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phipd_jax import diffusion
from phipd_jax.diffusion import guidance, inversion, samplers

MU, S = 0.7, 0.4
SHAPE = (4, 8, 8, 3)
PROCESSES = {
    'flow': diffusion.FlowMatching(),
    'ddpm': diffusion.DDPM(),
    'edm': diffusion.EDM(),
}
TIMES = {  # Interior times of each process (flow t, DDPM k, EDM sigma), one per sample.
    'flow': jnp.array([0.05, 0.3, 0.6, 0.95]),
    'ddpm': jnp.array([3, 200, 600, 990]),
    'edm': jnp.array([0.01, 0.5, 3.0, 60.0]),
}


def oracle(process, mu=MU, s=S):
  """``denoise(x_t, t) -> (x0_hat, eps_hat)``, the exact posterior mean of N(mu, s^2) data."""

  def denoise(x_t, t):
    a = diffusion.processes.expand(process.alpha(t), x_t)
    b = diffusion.processes.expand(process.sigma(t), x_t)
    x0 = mu + a * s**2 / (a**2 * s**2 + b**2) * (x_t - a * mu)
    return x0, (x_t - a * x0) / jnp.maximum(b, 1e-12)

  return denoise


@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_noisy_of_to_x0_eps_of_target_round_trips(name):
  process = PROCESSES[name]
  x0 = jax.random.normal(jax.random.key(0), SHAPE)
  eps = jax.random.normal(jax.random.key(1), SHAPE)
  t = TIMES[name]
  x_t = process.noisy(x0, eps, t)
  for prediction in process.predictions:
    target = process.target(x0, eps, t, prediction)
    x0_hat, eps_hat = process.to_x0_eps(target, x_t, t, prediction)
    np.testing.assert_allclose(process.noisy(x0_hat, eps_hat, t), x_t, atol=2e-4, rtol=1e-4,
                               err_msg=f'{name}/{prediction}')
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3, err_msg=f'{name}/{prediction}')


def test_first_order_step_is_ddim_flow_euler_and_edm_euler():
  x0_hat = jax.random.normal(jax.random.key(2), SHAPE)
  eps_hat = jax.random.normal(jax.random.key(3), SHAPE)
  fixed = lambda process: (lambda x, t: (x0_hat, eps_hat))
  # DDIM (Song et al. 2021, Eq. 12, eta = 0): sqrt(ab') x0_hat + sqrt(1 - ab') eps_hat.
  ddpm = PROCESSES['ddpm']
  x = ddpm.noisy(x0_hat, eps_hat, 500)
  ab = np.asarray(ddpm.alpha_bar)
  step = samplers.euler_step(ddpm, fixed(ddpm))(x, 500, 300)
  np.testing.assert_allclose(step, np.sqrt(ab[300]) * x0_hat + np.sqrt(1 - ab[300]) * eps_hat,
                             atol=1e-5)
  np.testing.assert_allclose(samplers.euler_step(ddpm, fixed(ddpm))(x, 20, -1), x0_hat, atol=1e-6)
  # Flow Euler: x + (t' - t)(eps_hat - x0_hat) for x consistent with (x0_hat, eps_hat) at t.
  flow = PROCESSES['flow']
  x = flow.noisy(x0_hat, eps_hat, 0.7)
  np.testing.assert_allclose(samplers.euler_step(flow, fixed(flow))(x, 0.7, 0.4),
                             x + (0.4 - 0.7) * (eps_hat - x0_hat), atol=1e-5)
  # Through a network with x-prediction, the generic step equals the Euler step for t >= clamp.
  x_star = jax.random.normal(jax.random.key(4), SHAPE)
  denoise = samplers.denoiser(flow, lambda x_in, t_in, y: x_star, 'x')
  v = (x - x_star) / 0.7
  np.testing.assert_allclose(samplers.euler_step(flow, denoise)(x, 0.7, 0.4), x - 0.3 * v,
                             atol=1e-5)
  # EDM Euler: x + (sigma' - sigma)(x - D)/sigma.
  edm = PROCESSES['edm']
  x = jax.random.normal(jax.random.key(5), SHAPE) * 3.0
  d = jax.random.normal(jax.random.key(6), SHAPE)
  edm_denoise = lambda x_t, t: (d, (x_t - d) / t)
  np.testing.assert_allclose(samplers.euler_step(edm, edm_denoise)(x, 3.0, 1.5),
                             x + (1.5 - 3.0) * (x - d) / 3.0, atol=1e-5)


def test_edm_preconditioning_weight_and_grid():
  edm = diffusion.EDM()
  # D(x; sigma) = c_skip x + c_out F -> x as sigma -> 0, whatever the network outputs.
  x = jax.random.normal(jax.random.key(0), SHAPE)
  junk = 5.0 * jax.random.normal(jax.random.key(1), SHAPE)
  for sigma, tolerance in [(1e-2, 0.2), (1e-4, 2e-3), (1e-6, 2e-5)]:
    d, _ = edm.to_x0_eps(junk, x, sigma, 'edm')
    assert float(jnp.max(jnp.abs(d - x))) < tolerance, sigma
  # The preconditioned loss weight: w(sigma) |F - F*|^2 = lambda(sigma) |D - x0|^2 with
  # lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 (Karras et al. 2022, Table 1).
  sigma = jnp.array([0.01, 0.3, 2.0, 40.0])
  x0 = jax.random.normal(jax.random.key(2), SHAPE)
  eps = jax.random.normal(jax.random.key(3), SHAPE)
  x_t = edm.noisy(x0, eps, sigma)
  lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
  np.testing.assert_allclose(edm.edm_weight(sigma), lam, rtol=1e-6)
  d, _ = edm.to_x0_eps(junk, x_t, sigma, 'edm')
  f_loss = edm.loss_weight(sigma, 'edm') * jnp.mean(
      (junk - edm.target(x0, eps, sigma, 'edm')) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(f_loss, lam * jnp.mean((d - x0) ** 2, axis=(1, 2, 3)), rtol=1e-4)
  # c_in normalises: Var(c_in x_t) = 1 for unit-variance-sigma_d data.
  np.testing.assert_allclose(edm.c_in(sigma) ** 2 * (0.25 + sigma**2), 1.0, rtol=1e-6)
  # The Karras grid: N + 1 points from 80 to 0.002, decreasing, no trailing zero.
  grid = np.asarray(edm.time_grid(50))
  assert grid.shape == (51,) and np.all(np.diff(grid) < 0)
  np.testing.assert_allclose([grid[0], grid[-1]], [80.0, 0.002], rtol=1e-5)
  assert edm.conditioning == 'log_sigma'
  np.testing.assert_allclose(edm.model_input(x_t, sigma)[1], np.log(sigma) / 4, rtol=1e-6)
  raw = diffusion.EDM(conditioning='sigma')
  np.testing.assert_allclose(raw.model_input(x_t, sigma)[1], sigma)
  with pytest.raises(ValueError, match='conditioning'):
    diffusion.EDM(conditioning='c_noise')


def test_edm_training_sigma_is_log_normal():
  sigma = diffusion.EDM().sample_time(jax.random.key(0), 100_000)
  log_sigma = np.log(np.asarray(sigma))
  assert abs(log_sigma.mean() + 1.2) < 0.02 and abs(log_sigma.std() - 1.2) < 0.02


def analytic_endpoint(x_start, signal, noise):
  return MU + S * (x_start - signal * MU) / np.sqrt(signal**2 * S**2 + noise**2)


@pytest.mark.parametrize('method, steps, tolerance', [('euler', 200, 3e-2), ('heun', 60, 8e-3)])
def test_edm_samplers_land_on_the_analytic_answer(method, steps, tolerance):
  edm = PROCESSES['edm']
  eps = jax.random.normal(jax.random.key(0), SHAPE)
  x0 = samplers.sample_from(edm, oracle(edm), jnp.zeros(SHAPE), eps, 1.0, steps, method)
  want = analytic_endpoint(80.0 * eps, 1.0, 80.0)  # At sigma_min = 0.002: S * 1.00001.
  np.testing.assert_allclose(x0, want, atol=tolerance)


@pytest.mark.parametrize('name, method', [('flow', 'euler'), ('ddpm', 'ddim'), ('edm', 'euler'),
                                          ('flow', 'heun'), ('edm', 'heun')])
def test_inversion_then_sampling_returns_the_input(name, method):
  """Invert with the oracle, sample back: the error shrinks with the number of steps.

  Observed max errors over 768 values with |x_src| ~ 1 (steps 10 / 20 / 40 / 80): flow Euler
  0.381 / 0.205 / 0.107 / 0.054 and DDIM 0.447 / 0.232 / 0.119 / 0.060 (first order: x1.9 per
  doubling), EDM Euler 0.60 / 0.34 / 0.19 / 0.096; Heun is second order: flow 0.051 / 0.012 /
  0.0029 / 0.0007 (x4.2), EDM 0.079 / 0.011 / 0.0014 / 0.00017 (x7.8).
  """
  process = PROCESSES[name]
  x_src = MU + S * jax.random.normal(jax.random.key(7), SHAPE)
  denoise = oracle(process)
  errors = []
  for steps in (10, 20, 40):
    x_T = inversion.invert(process, denoise, x_src, steps, method=method)
    back = samplers.solve(process, denoise, x_T, process.time_grid(steps), method)
    errors.append(float(jnp.max(jnp.abs(back - x_src))))
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[1] / errors[2] > 1.7, errors  # At least first order.
  assert errors[2] < (0.2 if method != 'heun' else 0.004), errors
  if method == 'heun':
    assert errors[1] / errors[2] > 3.5, errors  # Second order.


def test_inverted_oracle_noise_is_gaussian_for_gaussian_data():
  """The exact ODE maps N(MU, S^2) data to N(0, 1) noise (x sigma_max for EDM)."""
  process = PROCESSES['flow']
  x_src = MU + S * jax.random.normal(jax.random.key(8), (64, 8, 8, 3))
  x_T = inversion.invert(process, oracle(process), x_src, 100, method='heun')
  assert abs(float(x_T.mean())) < 0.02 and abs(float(x_T.std()) - 1.0) < 0.02


def test_ddim_eps_error_is_bounded_by_the_x0_clip():
  """Cosine schedule: alpha_bar[999] = 2.4e-9, so a 1% eps error explodes x0_hat; clipping x0_hat
  to the data range keeps the output close to the exact answer."""
  ddpm = diffusion.DDPM(schedule='cosine')
  assert float(ddpm.alpha_bar[-1]) < 3e-9
  exact = oracle(ddpm, 0.0, 0.29)  # Data std 0.29, inside [-1, 1].
  error = 0.01 * jax.random.normal(jax.random.key(9), SHAPE)

  def with_eps_error(process, denoise):
    def noisy(x_t, t):
      eps = denoise(x_t, t)[1] + error
      a = diffusion.processes.expand(process.alpha(t), x_t)
      b = diffusion.processes.expand(process.sigma(t), x_t)
      return (x_t - b * eps) / a, eps  # What an eps-network with a 1% error implies.
    return noisy

  noisy_oracle = with_eps_error(ddpm, exact)

  eps = jax.random.normal(jax.random.key(10), SHAPE)
  want = samplers.sample_from(ddpm, exact, jnp.zeros(SHAPE), eps, 1.0, 25, 'ddim')
  raw = samplers.sample_from(ddpm, noisy_oracle, jnp.zeros(SHAPE), eps, 1.0, 25, 'ddim')
  clipped = samplers.sample_from(ddpm, guidance.clip_denoised(ddpm, noisy_oracle, 1.0),
                                 jnp.zeros(SHAPE), eps, 1.0, 25, 'ddim')
  raw_error = float(jnp.std(raw - want))
  clipped_error = float(jnp.std(clipped - want))
  assert raw_error > 0.3, raw_error  # The failure mode is real: larger than the data's std.
  assert clipped_error < 0.05, clipped_error
  trailing = diffusion.DDPM(spacing='trailing').time_grid(4)
  np.testing.assert_array_equal(trailing, [999, 749, 499, 249, -1])
  # Trailing spacing is no remedy here: it starts at k = 999 too (only its later steps move), so
  # the first x0_hat is as amplified as with linspace (docs/results.md, EDM section).
  ddpm_trailing = diffusion.DDPM(schedule='cosine', spacing='trailing')
  assert ddpm_trailing.time_grid(25)[0] == ddpm.time_grid(25)[0] == 999
  exact_trailing = oracle(ddpm_trailing, 0.0, 0.29)
  noisy_trailing = with_eps_error(ddpm_trailing, exact_trailing)
  want_trailing = samplers.sample_from(ddpm_trailing, exact_trailing, jnp.zeros(SHAPE), eps, 1.0,
                                       25, 'ddim')
  raw_trailing = samplers.sample_from(ddpm_trailing, noisy_trailing, jnp.zeros(SHAPE), eps, 1.0,
                                      25, 'ddim')
  trailing_error = float(jnp.std(raw_trailing - want_trailing))
  assert trailing_error > 0.5 * raw_error and trailing_error > 100 * clipped_error, (
      trailing_error, raw_error)


def test_sweeping_radius_strength_and_guidance_does_not_recompile():
  process = PROCESSES['flow']
  from phipd_jax import noise as noise_lib
  draw = noise_lib.noise_fn('fss')

  def apply_fn(x_in, t_in, y):
    return x_in * (1.0 + y[:, None, None, None].astype(jnp.float32)) * t_in[:, None, None, None]

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x, key, radius, strength, scale):
    conditional = samplers.make_denoiser(process, apply_fn, 'v')
    denoise = guidance.classifier_free_guidance(conditional, jnp.zeros((4,), jnp.int32), scale,
                                                10, interval=(0.0, 0.9),
                                                normalized_time=process.normalized_time)
    eps = draw(key, x, radius)
    return samplers.sample_from(process, denoise, x, eps, strength, 6, 'heun')

  x = jax.random.normal(jax.random.key(0), SHAPE)
  for radius, strength, scale in [(2.0, 1.0, 1.0), (8.0, 0.5, 3.0), (0.5, 0.3, 7.5)]:
    run(x, jax.random.key(1), radius, strength, scale)


def test_integrate_records_the_trajectory():
  process = PROCESSES['flow']
  x = jax.random.normal(jax.random.key(0), SHAPE)
  grid = process.time_grid(5)
  end, trajectory = samplers.integrate(samplers.euler_step(process, oracle(process)), x, grid,
                                       record=True)
  assert trajectory.shape == (6,) + SHAPE
  np.testing.assert_allclose(trajectory[0], x)
  np.testing.assert_allclose(trajectory[-1], end)


def test_leading_spacing_is_the_released_ovg_ddim_grid_and_inverts():
  """spacing='leading' (offset 1) is the released OVG code's DDIM grid: sampling 981 -> 961 ...
  -> 1 -> 0, inversion 0 -> 1 -> 21 -> ... -> 981 (each step from max(t - 20, 0) to t); the
  source is x at k = 0. Inversion then sampling on it returns the source (exact denoiser), and
  its x_T differs from the linspace grid's by a few percent (DDIM is first order: neither grid
  returns it exactly at 50 steps)."""
  kwargs = dict(schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
  leading = diffusion.DDPM(spacing='leading', **kwargs)
  grid = np.asarray(leading.time_grid(50))
  np.testing.assert_array_equal(grid, list(range(981, 0, -20)) + [0])
  walk = np.asarray(inversion.inversion_grid(leading, 50))
  np.testing.assert_array_equal(walk[1:], np.arange(1, 1000, 20))
  np.testing.assert_array_equal(walk[:-1], np.maximum(walk[1:] - 20, 0))
  np.testing.assert_array_equal(leading.time_grid(4, 499), [376, 251, 126, 1, 0])

  x_src = MU + S * jax.random.normal(jax.random.key(11), SHAPE)

  def round_trip(process):
    x_t = inversion.invert(process, oracle(process), x_src, 50, method='ddim')
    back = samplers.solve(process, oracle(process), x_t, process.time_grid(50), 'ddim')
    return x_t, float(jnp.max(jnp.abs(back - x_src)))

  x_t, error = round_trip(leading)
  x_t_linspace, error_linspace = round_trip(diffusion.DDPM(**kwargs))
  assert error < 1.5 * error_linspace and error < 0.2, (error, error_linspace)  # First order.
  relative = float(jnp.linalg.norm(x_t - x_t_linspace) / jnp.linalg.norm(x_t_linspace))
  assert 0.005 < relative < 0.2, relative
