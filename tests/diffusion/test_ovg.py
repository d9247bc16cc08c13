"""Orthogonal Variance Guidance (arXiv:2602.13303, as released in ``nicoboou/ovg``).

Oracles: for data ``x0 ~ N(MU, S^2 I)`` the optimal EDM denoiser is
``D(x; sigma) = MU + S^2 / (S^2 + sigma^2) (x - MU)`` and the optimal DDPM noise prediction is
``E[eps | x_k] = b (x_k - a MU) / (a^2 S^2 + b^2)`` (``a = alpha(k)``, ``b = sigma(k)``).
Linear toys give closed-form gradients: EDM ``D = a x`` (``a = c_skip``, the oracle of zero-mean
data with std ``sigma_d``): ``eps = (1 - a) x / s`` with ``s = sigma + 1e-6``,
``g_n = 4 (||eps||^2 - d) (1 - a)^2 x / s^2``, ``g_c = 2 a (a x - x_src)``. DDIM ``eps = b x`` (the
oracle of zero-mean unit data, so ``x0_hat = a x``): ``g_n = 4 (b^2 ||x||^2 - d) b^2 x``,
``g_c = 2 a (a x - x_src)``.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phipd_jax import diffusion
from phipd_jax.diffusion import guidance, inversion, samplers
from phipd_jax.diffusion.processes import expand

MU, S = 0.3, 0.5
SHAPE = (3, 8, 8, 3)
D = 8 * 8 * 3
EPS = 1e-6
EDM = diffusion.EDM()
DDIM = diffusion.DDPM(schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)
PROCESS = {'edm': EDM, 'ddim': DDIM}
METHOD = {'edm': 'euler', 'ddim': 'ddim'}


def oracle(branch):
  """The exact posterior denoiser of N(MU, S^2) data: x-prediction (EDM), eps (DDIM)."""
  process = PROCESS[branch]

  def denoise(x, t):
    a, b = expand(process.alpha(t), x), expand(process.sigma(t), x)
    if branch == 'edm':
      return process.to_x0_eps(MU + S**2 / (S**2 + b**2) * (x - MU), x, t, 'x')
    return process.to_x0_eps(b * (x - a * MU) / (a**2 * S**2 + b**2), x, t, 'eps')

  return denoise


def mix(x):
  """A per-sample nonlinear map (channel mixing, a spatial shift, tanh)."""
  w = jnp.array([[0.8, -0.3, 0.2], [0.1, 0.9, -0.4], [-0.2, 0.3, 0.7]], jnp.float32)
  return jnp.tanh(jnp.einsum('bhwc,cd->bhwd', x, w) + 0.5 * jnp.roll(x, 1, axis=1))


def network(branch):
  """A nonlinear, per-sample denoiser (EDM: preconditioned x0; DDIM: eps-prediction)."""
  process = PROCESS[branch]

  def denoise(x, t):
    if branch == 'edm':
      c_in, c_skip, c_out = (expand(f(t), x) for f in (EDM.c_in, EDM.c_skip, EDM.c_out))
      return process.to_x0_eps(c_skip * x + c_out * mix(c_in * x), x, t, 'x')
    return process.to_x0_eps(0.6 * x + 0.5 * mix(x), x, t, 'eps')

  return denoise


def normal(seed, shape=SHAPE):
  """Test data from numpy (threefry's normal compiles for seconds on CPU)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def source(seed=0, batch=SHAPE[0]):
  return MU + S * normal(seed, (batch,) + SHAPE[1:])


def per_sample_norm(v):
  v = np.asarray(v, np.float64)
  return np.sqrt(np.sum(v.reshape(v.shape[0], -1) ** 2, axis=1))


def per_sample_cos(u, v):
  u = np.asarray(u, np.float64).reshape(u.shape[0], -1)
  v = np.asarray(v, np.float64).reshape(v.shape[0], -1)
  return np.sum(u * v, 1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))


ORACLE = {branch: oracle(branch) for branch in PROCESS}
NETWORK = {branch: network(branch) for branch in PROCESS}
# Jitted entry points (one compilation per static configuration, shared between tests).
terms = jax.jit(guidance.ovg_terms, static_argnums=(0, 1), static_argnames=('branch', 'eps'))
corrections = jax.jit(guidance.ovg_corrections)
ovg_invert, invert = inversion.ovg_invert, inversion.invert


# -- (1) eta_n = eta_c = 0 is plain inversion ------------------------------------------------------
@pytest.mark.parametrize('branch', ['edm', 'ddim'])
def test_zero_etas_equal_plain_inversion_bit_for_bit(branch):
  process, denoise = PROCESS[branch], ORACLE[branch]
  x_src = source()
  n = normal(1)
  plain, plain_path = invert(process, denoise, x_src, 8, method=METHOD[branch], start_noise=n,
                              record=True)
  ovg, ovg_path = ovg_invert(process, denoise, x_src, 8, eta_n=0.0, eta_c=0.0, branch=branch,
                             start_noise=n, record=True)
  np.testing.assert_array_equal(ovg, plain)
  np.testing.assert_array_equal(ovg_path, plain_path)
  guided, _ = ovg_invert(process, denoise, x_src, 8, eta_n=1.0, eta_c=1.0, branch=branch,
                         start_noise=n, record=True)
  assert np.max(np.abs(guided - plain)) > 1e-3  # The guided path is live.


# -- (2) no conflict: the updates are -eta g ------------------------------------------------------
def test_corrections_without_conflict_are_minus_eta_g():
  g_n = normal(0)
  r = normal(1)
  g_c = r - jnp.sum(r * g_n, (1, 2, 3), keepdims=True) / jnp.sum(g_n**2, (1, 2, 3),
                                                                 keepdims=True) * g_n
  np.testing.assert_allclose(per_sample_cos(g_n, g_c), 0.0, atol=1e-6)  # Orthogonal.
  u_n, u_c = corrections(g_n, g_c, 2.5, 0.3)
  np.testing.assert_allclose(u_n, -2.5 * g_n, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(u_c, -0.3 * g_c, rtol=1e-6, atol=1e-6)
  # Aligned (cos > 0): no projection either.
  u_n, u_c = corrections(g_n, g_c + g_n, 2.5, 0.3)
  np.testing.assert_allclose(u_n, -2.5 * g_n, rtol=1e-6)
  np.testing.assert_allclose(u_c, -0.3 * (g_c + g_n), rtol=1e-6)
  # A switched-off term is exactly zero, even for non-finite gradients.
  u_n, u_c = corrections(jnp.full(SHAPE, jnp.inf), g_c, 0.0, 0.0)
  np.testing.assert_array_equal(u_n, 0.0)
  np.testing.assert_array_equal(u_c, 0.0)


def linear_edm_toy(x, w_src):
  """EDM ``D = c_skip x`` and the closed forms at ``sigma = 0.7``: (denoise, g_n, g_c, x_src)."""
  sigma = 0.7
  a = float(EDM.c_skip(sigma))
  denoise = lambda z, t: EDM.to_x0_eps(expand(EDM.c_skip(t), z) * z, z, t, 'x')
  x_src = a * x - w_src
  s = sigma + EPS
  eps_hat = (1 - a) * x / s
  norm2 = jnp.sum(eps_hat**2, (1, 2, 3), keepdims=True)
  g_n = 4 * (norm2 - D) * (1 - a) ** 2 * x / s**2
  g_c = 2 * a * (a * x - x_src)
  return denoise, g_n, g_c, x_src, sigma


def orthogonal_to(v, key):
  r = normal(key, v.shape)
  return r - jnp.sum(r * v, (1, 2, 3), keepdims=True) / jnp.sum(v**2, (1, 2, 3),
                                                              keepdims=True) * v


def test_step_without_clip_adds_minus_eta_delta_g():
  x = 1.3 * normal(0)  # ||eps_hat||^2 > d: g_n along +x.
  denoise, g_n, g_c, x_src, sigma = linear_edm_toy(x, orthogonal_to(x, 1))
  out = terms(EDM, denoise, x, sigma, 0.9, x_src, eta_n=1e-4, eta_c=0.05, kappa=1e30)
  np.testing.assert_allclose(out.cos, 0.0, atol=1e-5)  # g_n is orthogonal to g_c.
  delta = np.log(0.9 / (sigma + EPS))
  np.testing.assert_allclose(out.delta, delta, rtol=1e-6)
  scale = float(np.max(np.abs(g_n)))
  np.testing.assert_allclose(out.u_n, -1e-4 * delta * g_n, rtol=1e-4, atol=1e-5 * scale * 1e-4)
  scale = float(np.max(np.abs(g_c)))
  np.testing.assert_allclose(out.u_c, -0.05 * delta * g_c, rtol=1e-4, atol=1e-5 * scale * 0.05)
  x_euler = x + (0.9 - sigma) * (x - float(EDM.c_skip(sigma)) * x) / sigma
  np.testing.assert_allclose(out.x_euler, x_euler, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.x_next, x_euler + out.u_n + out.u_c, rtol=1e-6, atol=1e-6)


# -- (3) conflict: mutual projection --------------------------------------------------------------
def test_conflicting_corrections_are_orthogonal():
  g_n = normal(0)
  g_c = -0.7 * g_n + normal(1)
  assert np.all(per_sample_cos(g_n, g_c) < -0.3)
  u_n, u_c = corrections(g_n, g_c, 3.0, 0.2)
  assert np.max(np.abs(per_sample_cos(u_n, g_c))) < 1e-5
  assert np.max(np.abs(per_sample_cos(u_c, g_n))) < 1e-5
  # Through the step (linear toy, x_src = (a + 0.3) x - w): cos < 0 and the final, scaled and
  # clipped corrections keep the orthogonality.
  x = 1.3 * normal(2)
  w = orthogonal_to(x, 3)
  denoise, _, _, x_src, sigma = linear_edm_toy(x, w - 0.3 * x)
  out = terms(EDM, denoise, x, sigma, 0.9, x_src, eta_n=1e3, eta_c=1e-2)
  assert np.all(out.cos < -0.1)
  assert np.max(np.abs(per_sample_cos(out.u_n, out.g_c))) < 1e-5
  assert np.max(np.abs(per_sample_cos(out.u_c, out.g_n))) < 1e-5


# -- (4) each correction is clipped to kappa R ----------------------------------------------------
@pytest.mark.parametrize('branch', ['edm', 'ddim'])
def test_each_correction_is_clipped_to_kappa_times_the_drift(branch):
  process, denoise = PROCESS[branch], NETWORK[branch]
  x_src = source()
  n = normal(1)
  grid = inversion.inversion_grid(process, 6)
  _, path = invert(process, denoise, x_src, 6, method=METHOD[branch], start_noise=n,
                   record=True)
  active = 0
  for kappa in (1.0, 0.25):
    for i in range(6):
      out = terms(process, denoise, path[i], grid[i], grid[i + 1], x_src, branch=branch,
                  eta_n=1e9, eta_c=7.08e-5, kappa=kappa)
      r = per_sample_norm(out.x_euler - path[i])
      np.testing.assert_allclose(out.drift_norm, r, rtol=1e-5)
      bound = kappa * (r + EPS) * (1 + 1e-6)
      assert np.all(per_sample_norm(out.u_n) <= bound), (kappa, i)
      assert np.all(per_sample_norm(out.u_c) <= bound), (kappa, i)
      active += np.sum(per_sample_norm(out.u_n) > 0.999 * kappa * r)
  assert active >= 6 * SHAPE[0]  # eta_n = 1e9 saturates the clip (the bound is not vacuous).


# -- (5) gradients: closed forms and jax.grad ------------------------------------------------------
def test_linear_toy_gradients_match_closed_forms():
  x = 1.2 * normal(0)
  denoise, g_n, g_c, x_src, sigma = linear_edm_toy(x, normal(1))
  out = terms(EDM, denoise, x, sigma, 0.9, x_src, eta_n=1.0, eta_c=1.0)
  np.testing.assert_allclose(out.g_n, g_n, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(g_n))))
  np.testing.assert_allclose(out.g_c, g_c, rtol=1e-4, atol=1e-6)
  # DDIM: eps = b x, x0_hat = a x (zero-mean unit data), g_c through the derived x0_hat.
  k = 300
  a, b = float(DDIM.alpha(k)), float(DDIM.sigma(k))
  eps_net = lambda z, t: DDIM.to_x0_eps(expand(DDIM.sigma(t), z) * z, z, t, 'eps')
  norm2 = jnp.sum((b * x) ** 2, (1, 2, 3), keepdims=True)
  out = terms(DDIM, eps_net, x, k, k + 20, x_src, eta_n=1.0, eta_c=1.0, branch='ddim')
  g_n = 4 * (norm2 - D) * b**2 * x
  np.testing.assert_allclose(out.g_n, g_n, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(g_n))))
  np.testing.assert_allclose(out.g_c, 2 * a * (a * x - x_src), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out.delta, 20.0)


@pytest.mark.parametrize('branch', ['edm', 'ddim'])
def test_gradients_equal_jax_grad_of_the_losses(branch):
  """The one-forward vjp against two jax.grad calls, through a nonlinear denoiser."""
  process, denoise = PROCESS[branch], NETWORK[branch]
  t, t_next = (0.8, 1.1) if branch == 'edm' else (400, 420)
  x_src = source()
  x = process.noisy(x_src, 1.2 * normal(1), t)
  a, b = process.alpha(t), process.sigma(t)

  def losses(z):
    x0_hat, eps_hat = denoise(z, t)
    if branch == 'edm':
      eps_hat = (z - x0_hat) / (b + EPS)
    else:
      x0_hat = (z - b * eps_hat) / a
    l_n = jnp.sum((jnp.sum(eps_hat**2, (1, 2, 3)) - D) ** 2)
    return l_n, jnp.sum((x0_hat - x_src) ** 2)

  g_n = jax.grad(lambda z: losses(z)[0])(x)
  g_c = jax.grad(lambda z: losses(z)[1])(x)
  out = terms(process, denoise, x, t, t_next, x_src, eta_n=1.0, eta_c=1.0, branch=branch)
  np.testing.assert_allclose(out.g_n, g_n, rtol=2e-4, atol=2e-5 * float(np.max(np.abs(g_n))))
  np.testing.assert_allclose(out.g_c, g_c, rtol=2e-4, atol=2e-5 * float(np.max(np.abs(g_c))))


# -- (6) per-sample independence ------------------------------------------------------------------
@pytest.mark.parametrize('branch', ['edm', 'ddim'])
def test_batch_equals_each_sample_alone(branch):
  process, denoise = PROCESS[branch], NETWORK[branch]
  x_src = source(batch=3)
  n = normal(1)
  kwargs = dict(eta_n=1e3, eta_c=1e-2, branch=branch)
  batch = ovg_invert(process, denoise, x_src, 5, start_noise=n, **kwargs)
  for i in range(3):
    alone = ovg_invert(process, denoise, x_src[i:i + 1], 5, start_noise=n[i:i + 1], **kwargs)
    # Float32 rounding differs with the batch size and the inversion amplifies it (observed
    # <= 2e-5 of the range); a batch-wide norm or clip would be off by O(1).
    np.testing.assert_allclose(batch[i:i + 1], alone, rtol=0,
                               atol=1e-4 * float(np.max(np.abs(alone))))


# -- (7) one compilation across eta values --------------------------------------------------------
def test_sweeping_etas_and_kappa_does_not_recompile():
  denoise = NETWORK['edm']

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x_src, n, eta_n, eta_c, kappa):
    return inversion.ovg_invert(EDM, denoise, x_src, 4, eta_n=eta_n, eta_c=eta_c, kappa=kappa,
                                start_noise=n)

  x_src, n = source(), normal(1)
  outs = [run(x_src, n, *v) for v in [(0.0, 0.0, 1.0), (1e3, 1e-4, 1.0), (1e9, 7e-5, 0.5)]]
  assert all(np.all(np.isfinite(o)) for o in outs)
  assert np.max(np.abs(outs[1] - outs[0])) > 1e-3


# -- the DDIM branch's forward fraction, presets, validation ---------------------------------------
def test_forward_fraction_replaces_the_first_states_with_forward_noising():
  denoise, x_src = ORACLE['ddim'], source()
  grid = inversion.inversion_grid(DDIM, 10)
  key = jax.random.key(5, impl='rbg')  # rbg: compiles fast on CPU.
  x_end, path = ovg_invert(DDIM, denoise, x_src, 10, eta_n=0.0, eta_c=0.0, branch='ddim',
                           forward_fraction=0.2, key=key, record=True)
  assert path.shape == (11,) + SHAPE
  np.testing.assert_array_equal(path[0], x_src)
  for i in (1, 2):  # round(10 * 0.2) = 2 replaced states: alpha x_src + sigma n, n ~ N(0, 1).
    n = (path[i] - DDIM.alpha(grid[i]) * x_src) / DDIM.sigma(grid[i])
    assert abs(float(jnp.mean(n))) < 0.15 and abs(float(jnp.std(n)) - 1) < 0.1, i
  keys = jax.random.split(key, 2)
  np.testing.assert_allclose(path[2], DDIM.noisy(x_src, jax.random.normal(keys[1], SHAPE),
                                                 grid[2]), rtol=1e-6, atol=1e-6)
  rest = samplers.integrate(samplers.euler_step(DDIM, denoise), path[2], grid[2:])
  np.testing.assert_allclose(x_end, rest, rtol=1e-6, atol=1e-6)
  other, _ = ovg_invert(DDIM, denoise, x_src, 10, eta_n=0.0, eta_c=0.0, branch='ddim',
                        forward_fraction=0.2, key=jax.random.key(6, impl='rbg'),
                        record=True)
  assert np.max(np.abs(other - x_end)) > 0.1
  # The released configs' presets run on the DDIM branch (1 and 2 forward steps of 50).
  assert guidance.OVG_PRESETS['edges2shoes'] == dict(eta_n=1e9, eta_c=7.08e-5, kappa=1.0,
                                                     forward_fraction=0.02)
  assert guidance.OVG_PRESETS['bbbc021'] == dict(eta_n=1e3, eta_c=1e-4, kappa=1.0,
                                                 forward_fraction=0.04)
  preset = dict(guidance.OVG_PRESETS['bbbc021'], forward_fraction=0.2)
  out, _ = ovg_invert(DDIM, denoise, x_src, 10, branch='ddim', key=key, record=True, **preset)
  assert np.all(np.isfinite(out)) and np.max(np.abs(out - x_end)) > 1e-3


@pytest.mark.parametrize('kwargs, match', [
    (dict(branch='ddim'), 'DDPM process'),
    (dict(branch='flow'), 'branch'),
    (dict(eta_n=-1.0), 'eta_n'),
    (dict(eta_c=-1e-3), 'eta_c'),
    (dict(kappa=0.0), 'kappa'),
    (dict(forward_fraction=0.04, key=jax.random.key(0)), 'only in branch'),
    (dict(forward_fraction=1.5), r'\[0, 1\]'),
])
def test_invalid_arguments_raise(kwargs, match):
  args = {**dict(eta_n=1.0, eta_c=1.0), **kwargs}
  with pytest.raises(ValueError, match=match):
    inversion.ovg_invert(EDM, ORACLE['edm'], source(), 4, **args)


def test_forward_fraction_needs_a_key():
  with pytest.raises(ValueError, match='key'):
    inversion.ovg_invert(DDIM, ORACLE['ddim'], source(), 4, eta_n=1.0, eta_c=1.0, branch='ddim',
                         forward_fraction=0.5)
  with pytest.raises(ValueError, match='EDM process'):
    guidance.ovg_step(DDIM, ORACLE['ddim'], source(), eta_n=1.0, eta_c=1.0)
