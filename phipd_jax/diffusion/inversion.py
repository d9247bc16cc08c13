"""Deterministic inversion: the sampler's step on the reversed grid (DDIM, flow Euler, EDM).

DDIM inversion (Song et al. 2021; Mokady et al. 2023) evaluates ``eps_hat`` at the current, less
noisy state and moves to the next, noisier time with the same update as sampling,
``x_{t'} = alpha(t') x0_hat + sigma(t') eps_hat``; for EDM it is the Euler step
``x' = x + (sigma' - sigma)(x - D(x; sigma))/sigma`` on the flipped Karras grid (Bourriez et al.,
"Spectral Collapse in Diffusion Inversion", arXiv:2602.13303, Sec. 2: sigma_min -> sigma_max,
start ``x_src + sigma_min n``). Sampling from the inverted noise on the forward grid returns the
input up to a first-order error in the step size (see the tests for the observed rate).

The source condition (class label) is bound into the denoiser by the caller: invert with the
source label, sample with the target label.

:func:`ovg_invert` adds Orthogonal Variance Guidance (OVG) to every inversion step
(:func:`phipd_jax.diffusion.guidance.ovg_step`; Bourriez et al., arXiv:2602.13303, as released in
``nicoboou/ovg``): the inverted noise is pushed to the Gaussian norm while the source stays
reconstructable. Sampling afterwards is plain: :func:`phipd_jax.diffusion.samplers.solve` from
the inverted noise on the forward grid, with the target condition.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from phipd_jax.diffusion import guidance as guidance_lib
from phipd_jax.diffusion import samplers
from phipd_jax.diffusion.processes import Process

Array = jax.Array


def inversion_grid(process: Process, num_steps: int, t_end=None) -> Array:
  """The sampling grid reversed: ``num_steps + 1`` increasing times from the data end to
  ``t_end`` (default: the process's noise end)."""
  return process.time_grid(num_steps, t_end)[::-1]


def invert(process: Process, denoise: samplers.Denoiser, x_src: Array, num_steps: int, *,
           method: str = 'euler', t_end=None, start_noise: Optional[Array] = None,
           record: bool = False):
  """Deterministic inversion of ``x_src`` to the noise end.

  Args:
    process: the forward process.
    denoise: ``(x_t, t) -> (x0_hat, eps_hat)`` conditioned on the *source* (labels bound).
    x_src: clean inputs ``[B, H, W, C]`` in model space (float).
    num_steps: grid intervals (static).
    method: ``'euler'`` (flow, EDM) or ``'ddim'`` (DDPM); ``'heun'`` also runs.
    t_end: where to stop (a time; default the noise end, e.g. ``time_from_strength(s)`` for a
      partial inversion).
    start_noise: optional ``n`` with the shape of ``x_src``: the start is
      ``process.noisy(x_src, n, grid[0])`` (EDM: ``x_src + sigma_min n``, as the OVG code);
      default the start is ``x_src`` itself.
    record: also return the trajectory ``[N + 1, B, ...]``.

  Returns:
    The inverted state ``x_T`` (float32, shape of ``x_src``), or ``(x_T, trajectory)``.
  """
  grid = inversion_grid(process, num_steps, t_end)
  x = x_src.astype(jnp.float32)
  if start_noise is not None:
    x = process.noisy(x, start_noise.astype(jnp.float32), grid[0])
  return samplers.solve(process, denoise, x, grid, method, record)


def ovg_invert(process: Process, denoise: samplers.Denoiser, x_src: Array, num_steps: int, *,
               eta_n: float | Array, eta_c: float | Array, kappa: float | Array = 1.0,
               branch: str = 'edm', forward_fraction: float = 0.0,
               start_noise: Optional[Array] = None, key: Optional[Array] = None,
               record: bool = False):
  """Inversion with Orthogonal Variance Guidance (OVG) at every step.

  Bourriez, Verine, Genovesio, "Spectral Collapse in Diffusion Inversion", arXiv:2602.13303, as
  released in ``nicoboou/ovg`` (``ControlledGaussianizationInversion.invert``): the first-order
  inversion step plus two gradient corrections that push the implied noise to the Gaussian norm
  while keeping the source reconstructable (:func:`phipd_jax.diffusion.guidance.ovg_step`), in one
  ``lax.scan`` (:func:`phipd_jax.diffusion.samplers.integrate`) over :func:`inversion_grid`,
  gradients stopped between steps. With ``eta_n = eta_c = 0`` it is :func:`invert` (Euler/DDIM).

  DDIM branch only: for the first ``round(num_steps * forward_fraction)`` steps the state is
  *replaced* by a fresh forward noising ``process.noisy(x_src, n_i, grid[i + 1])`` with
  ``n_i = jax.random.normal(jax.random.split(key, m)[i], x_src.shape)`` (float32, ``m`` the
  number of forward steps; Python's ``round``, as released); OVG steps continue from the last
  one. The released configs use 0.02 / 0.04 of 50 steps (1 / 2 steps; see
  :data:`~phipd_jax.diffusion.guidance.OVG_PRESETS`).

  Args:
    process: :class:`~phipd_jax.diffusion.processes.EDM` (branch ``'edm'``) or
      :class:`~phipd_jax.diffusion.processes.DDPM` (branch ``'ddim'``).
    denoise: ``(x_t, t) -> (x0_hat, eps_hat)`` conditioned on the *source*, differentiable in
      ``x_t`` and per sample (no batch statistics).
    x_src: clean sources ``[B, H, W, C]`` in model space (float).
    num_steps: grid intervals ``N`` (static; 50 in the released configs).
    eta_n: variance step size ``>= 0`` (``cgd_eta``; traced values do not recompile).
    eta_c: structure step size ``>= 0`` (``scp_eta``; traced).
    kappa: clip fraction ``> 0`` of the drift norm (traced; 1.0 as released).
    branch: ``'edm'`` or ``'ddim'``.
    forward_fraction: in ``[0, 1]``, DDIM branch only (static).
    start_noise: optional ``n`` of ``x_src``'s shape: the start is
      ``process.noisy(x_src, n, grid[0])`` (EDM: ``x_src + sigma_min n``, which the released code
      always does); default ``x_src``. For DDPM ``grid[0]`` is the data end, so it has no effect.
    key: PRNG key of the forward-noising steps; required when ``forward_fraction > 0``.
    record: also return the trajectory ``[N + 1, B, ...]`` (forward-noised states included).

  Returns:
    The inverted ``x_T`` (float32, shape of ``x_src``), or ``(x_T, trajectory)``.

  Raises:
    ValueError: a bad branch or branch/process pair, ``eta_n < 0``, ``eta_c < 0``,
      ``kappa <= 0`` (concrete values), ``forward_fraction`` outside ``[0, 1]``, > 0 with branch
      ``'edm'``, or > 0 without ``key``.
  """
  guidance_lib.check_ovg_args(process, branch, eta_n, eta_c, kappa)
  if not 0.0 <= forward_fraction <= 1.0:
    raise ValueError(f'ovg_invert: forward_fraction={forward_fraction} must be in [0, 1]')
  if forward_fraction > 0 and branch != 'ddim':
    raise ValueError("ovg_invert: forward_fraction exists only in branch='ddim' "
                     f'(got branch={branch!r})')
  if forward_fraction > 0 and key is None:
    raise ValueError('ovg_invert: forward_fraction > 0 needs a PRNG key')
  grid = inversion_grid(process, num_steps)
  x_src = x_src.astype(jnp.float32)
  x_start = x_src
  if start_noise is not None:
    x_start = process.noisy(x_src, start_noise.astype(jnp.float32), grid[0])
  forward_steps = int(round(num_steps * forward_fraction))
  x = x_start
  if forward_steps:  # A few steps (1 or 2 in the released configs): a Python loop, no vmap.
    keys = jax.random.split(key, forward_steps)
    forward_states = jnp.stack([
        process.noisy(x_src, jax.random.normal(keys[i], x_src.shape, jnp.float32), grid[i + 1])
        for i in range(forward_steps)])
    x = forward_states[-1]
  step = guidance_lib.ovg_step(process, denoise, x_src, eta_n=eta_n, eta_c=eta_c, kappa=kappa,
                               branch=branch)
  result = samplers.integrate(step, x, grid[forward_steps:], record)
  if not record or not forward_steps:
    return result
  x_end, states = result  # states[0] is the last forward state.
  return x_end, jnp.concatenate([x_start[None], forward_states, states[1:]])
