"""Integrators over an explicit time grid: one ``lax.scan`` that samples or inverts.

A *denoiser* is ``denoise(x_t, t) -> (x0_hat, eps_hat)`` (:func:`make_denoiser` builds one from a
network and a process; :mod:`phipd_jax.diffusion.guidance` wraps it). A *step* is
``step(x, t, t_next) -> x_next``. The first-order step is ``process.noisy(x0_hat, eps_hat,
t_next)`` for consistent estimates; with the process's ``alpha``/``sigma`` it *is* DDIM (Song et
al. 2021, Eq. 12 with eta = 0), the flow-matching Euler step ``x + (t_next - t) (eps_hat -
x0_hat)``, and the EDM Euler step ``x + (sigma' - sigma)(x - D)/sigma`` (Karras et al. 2022,
Alg. 1 without the correction); ``process.step`` writes the continuous ones in drift form, which
also keeps JiT's clamped velocity below ``t_clamp``.
On a decreasing grid it samples; on an increasing grid it inverts (deterministic DDIM / Euler /
EDM inversion). Heun (Karras et al. 2022, Alg. 1) averages the ODE drift at both ends.

Every loop is a ``lax.scan`` whose length is static and whose grid values are traced, so a
sampler compiles once per (input shape, number of steps): strength, radius and guidance scale do
not recompile.

Structured noise enters only at initialisation (phi-PD paper Sec. 4): the start is
``x_start = noisy(x_input, eps, t_start)`` and every later step is the unchanged deterministic
sampler. The samplers never choose the noise: the caller passes ``eps`` to :func:`sample_from`
(:class:`phipd_jax.sampling.Sampler`, from :func:`phipd_jax.noise.noise_fn`). Generation:
``x_input = 0``, Gaussian ``eps``, strength 1. SDEdit (Meng et al. 2022): Gaussian ``eps`` at
``strength < 1``. phi-PD from noise: FSS ``eps`` of the input at strength 1; structured SDEdit:
the same below 1.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from phipd_jax.diffusion import guidance as guidance_lib
from phipd_jax.diffusion.processes import Process, expand

Array = jax.Array
Denoiser = Callable[[Array, Array], tuple[Array, Array]]
ConditionalDenoiser = Callable[[Array, Array, Optional[Array]], tuple[Array, Array]]
Step = Callable[[Array, Array, Array], Array]

METHODS = ('euler', 'heun', 'ddim')  # 'ddim' is the first-order step of a DDPM process.


def make_denoiser(process: Process, apply_fn: Callable, prediction: str) -> ConditionalDenoiser:
  """``denoise(x_t, t, y) -> (x0_hat, eps_hat)`` from a network.

  Args:
    process: the forward process (preconditions the input, converts the output).
    apply_fn: ``(x_in [B, ...], t_in [B] float32, y [B] int32 or None) -> [B, ...]``, called on
      ``process.model_input(x_t, t)``; channels past ``x_t``'s (DiT's learned-variance ``v``)
      are dropped.
    prediction: the network's prediction type (``process.predictions``).

  Raises:
    ValueError: a prediction type the process does not have.
  """
  process.check_prediction(prediction)

  def denoise(x_t: Array, t: Array, y: Optional[Array] = None) -> tuple[Array, Array]:
    x_t = x_t.astype(jnp.float32)
    x_in, t_in = process.model_input(x_t, t)
    t_in = jnp.broadcast_to(jnp.asarray(t_in, jnp.float32), (x_t.shape[0],))
    output = apply_fn(x_in, t_in, y)[..., :x_t.shape[-1]]  # Without a variance head's v.
    return process.to_x0_eps(output.astype(jnp.float32), x_t, t, prediction)

  return denoise


def denoiser(process: Process, apply_fn: Callable, prediction: str, y: Optional[Array] = None,
             guidance_scale: float | Array = 1.0, null_label: Optional[int] = None,
             guidance_interval: Optional[tuple[float, float]] = None,
             guidance_channels: int = 0) -> Denoiser:
  """A network as ``denoise(x_t, t) -> (x0_hat, eps_hat)`` with labels ``y`` bound, and
  classifier-free guidance when ``guidance_scale`` is not the literal 1.

  See :func:`make_denoiser` and :func:`phipd_jax.diffusion.guidance.classifier_free_guidance`.
  ``guidance_interval`` is in ``process.normalized_time`` (0 = data end); ``guidance_channels``
  guides only the first channels (0 = all; DiT: 3).

  Raises:
    ValueError: guidance requested without labels or a null label.
  """
  conditional = make_denoiser(process, apply_fn, prediction)
  guided = y is not None and not (isinstance(guidance_scale, (int, float)) and guidance_scale == 1)
  if guided:
    return guidance_lib.classifier_free_guidance(
        conditional, y, guidance_scale, null_label,
        interval=guidance_interval, normalized_time=process.normalized_time,
        channels=guidance_channels)
  return lambda x_t, t: conditional(x_t, t, y)


def euler_step(process: Process, denoise: Denoiser) -> Step:
  """The first-order step (``process.step``: DDIM, flow Euler, EDM Euler, all equal to
  ``noisy(x0_hat, eps_hat, t_next)`` for consistent estimates; forward on a decreasing grid,
  inversion on an increasing one)."""

  def step(x: Array, t: Array, t_next: Array) -> Array:
    x0_hat, eps_hat = denoise(x, t)
    return process.step(x, x0_hat, eps_hat, t, t_next).astype(jnp.float32)

  return step


def heun_step(process: Process, denoise: Denoiser) -> Step:
  """Heun's second-order step (Karras et al. 2022, Alg. 1, lines 5-8) on the ODE
  ``dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat``: two evaluations per step."""

  def step(x: Array, t: Array, t_next: Array) -> Array:
    x0_hat, eps_hat = denoise(x, t)
    drift = process.derivative(x0_hat, eps_hat, t)
    x_euler = x + (t_next - t) * drift
    x0_next, eps_next = denoise(x_euler, t_next)
    drift_next = process.derivative(x0_next, eps_next, t_next)
    return (x + (t_next - t) * 0.5 * (drift + drift_next)).astype(jnp.float32)

  return step


def integrate(step: Step, x: Array, grid: Array, record: bool = False):
  """Applies ``step`` along ``grid`` (``[N + 1]``): ``N`` steps in one ``lax.scan``.

  Args:
    step: ``(x, t, t_next) -> x_next``.
    x: the state at ``grid[0]``, float32 ``[B, ...]``.
    grid: times; decreasing to sample, increasing to invert. Its values are traced.
    record: also return the trajectory.

  Returns:
    ``x`` at ``grid[-1]``, or ``(x, trajectory)`` with ``trajectory [N + 1, B, ...]`` (the states
    at every grid point, ``grid[0]`` first) when ``record``.
  """

  def body(x, interval):
    t, t_next = interval
    x_next = step(x, t, t_next)
    return x_next, (x_next if record else None)

  x_end, states = jax.lax.scan(body, x.astype(jnp.float32), (grid[:-1], grid[1:]))
  if record:
    return x_end, jnp.concatenate([x[None].astype(jnp.float32), states])
  return x_end


def network_evaluations(process: Process, method: str, num_steps: int) -> int:
  """Network calls of one run of ``num_steps`` intervals (without guidance's doubling)."""
  if method == 'heun':
    return 2 * num_steps - 1 if process.heun_final_euler else 2 * num_steps
  return num_steps


def solve(process: Process, denoise: Denoiser, x: Array, grid: Array, method: str = 'euler',
          record: bool = False):
  """Integrates the probability-flow ODE along ``grid`` with ``method``.

  ``'euler'`` / ``'ddim'``: :func:`euler_step`. ``'heun'``: :func:`heun_step`, with the last
  interval Euler when ``process.heun_final_euler`` (flow matching: ``t = 0`` is never
  evaluated, ``2N - 1`` evaluations).

  Raises:
    ValueError: a method the process does not have.
  """
  if method not in METHODS:
    raise ValueError(f'sampler: method={method!r} must be one of {METHODS}')
  process.check_sampler(method)
  if method != 'heun':
    return integrate(euler_step(process, denoise), x, grid, record)
  heun = heun_step(process, denoise)
  if not process.heun_final_euler:
    return integrate(heun, x, grid, record)
  euler = euler_step(process, denoise)
  if grid.shape[0] == 2:  # One interval: Euler only.
    return integrate(euler, x, grid, record)
  result = integrate(heun, x, grid[:-1], record)
  x_last = result[0] if record else result
  x_end = euler(x_last, grid[-2], grid[-1])
  if record:
    return x_end, jnp.concatenate([result[1], x_end[None]])
  return x_end


def sample_from(process: Process, denoise: Denoiser, x_input: Array, eps: Array,
                strength: float | Array, num_steps: int, method: str,
                record: bool = False) -> Array:
  """Noises ``x_input`` to ``strength`` with the given ``eps`` and solves to the data end.

  Args:
    process: the forward process.
    denoise: see :func:`denoiser`.
    x_input: ``[B, H, W, C]`` (zeros for generation), float.
    eps: the start noise, same shape (Gaussian or structured), already scaled.
    strength: in ``(0, 1]`` (traced); 1 starts at pure noise. Mapped to a time by
      ``process.time_from_strength``.
    num_steps: grid intervals (static).
    method: ``'euler'``/``'heun'`` (flow, EDM) or ``'ddim'`` (DDPM).
    record: return ``(x, trajectory)`` (see :func:`integrate`).

  Returns:
    float32 samples, same shape, unclipped.
  """
  t_start = process.time_from_strength(strength)
  x_start = process.noisy(x_input.astype(jnp.float32), eps.astype(jnp.float32), t_start)
  grid = process.time_grid(num_steps, t_start)
  return solve(process, denoise, x_start, grid, method, record)


# ---------------------------------------------------------------------------------------------
# Ancestral DDPM sampling, with DiT's learned variance.

VarianceDenoiser = Callable[[Array, Array], tuple[Array, Array, Optional[Array]]]


def variance_denoiser(process: Process, apply_fn: Callable, prediction: str,
                      y: Optional[Array] = None, guidance_scale: float | Array = 1.0,
                      null_label: Optional[int] = None, guidance_channels: int = 0,
                      clip_x0: float = 0.0) -> VarianceDenoiser:
  """``denoise(x_t, k) -> (x0_hat, eps_hat, v)``: :func:`denoiser` that also returns a
  learned-variance head's ``v`` (the network's channels past ``x_t``'s, in ``[-1, 1]``), or None
  for a network without one.

  Guidance is DiT's ``forward_with_cfg``: the doubled batch ``[y; null]``, the first
  ``guidance_channels`` channels (0 = all) guided, the other channels and ``v`` taken from the
  conditional pass. ``clip_x0 > 0`` clips ``x0_hat`` and recomputes ``eps_hat``.
  """
  process.check_prediction(prediction)
  guided = y is not None and not (isinstance(guidance_scale, (int, float)) and guidance_scale == 1)
  if guided and null_label is None:
    raise ValueError('classifier-free guidance needs null_label (the model\'s num_classes)')

  def denoise(x_t: Array, k: Array) -> tuple[Array, Array, Optional[Array]]:
    x_t = x_t.astype(jnp.float32)
    channels, batch = x_t.shape[-1], x_t.shape[0]
    x_in, t_in = process.model_input(x_t, k)
    t_in = jnp.broadcast_to(jnp.asarray(t_in, jnp.float32), (batch,))
    if guided:
      labels = jnp.concatenate([y, jnp.full_like(y, null_label)])
      output = apply_fn(jnp.concatenate([x_in, x_in]), jnp.concatenate([t_in, t_in]),
                        labels).astype(jnp.float32)
      prediction_out = guidance_lib.guide(
          output[:batch, ..., :channels], output[batch:, ..., :channels],
          jnp.asarray(guidance_scale, jnp.float32), guidance_channels)
      extra = output[:batch, ..., channels:]
    else:
      output = apply_fn(x_in, t_in, y).astype(jnp.float32)
      prediction_out, extra = output[..., :channels], output[..., channels:]
    x0_hat, eps_hat = process.to_x0_eps(prediction_out, x_t, k, prediction)
    if clip_x0 > 0:
      x0_hat, eps_hat = process.to_x0_eps(jnp.clip(x0_hat, -clip_x0, clip_x0), x_t, k, 'x')
    return x0_hat, eps_hat, (extra if extra.shape[-1] == channels else None)

  return denoise


def ddpm_posterior(process: Process, x: Array, x0_hat: Array, v: Optional[Array], k: Array,
                   k_next: Array) -> tuple[Array, Array]:
  """Mean and log-variance of ``p(x_{k_next} | x_k)`` on a (respaced) DDPM grid.

  The chain between grid steps has ``beta = 1 - alpha_bar[k] / alpha_bar[k_next]`` (DDPM
  respacing, Nichol & Dhariwal 2021, Sec. 4; ``alpha_bar[-1] = 1``). The mean is the posterior
  ``q(x_{k_next} | x_k, x0_hat)`` mean (Ho et al. 2020, Eq. 7): ``sqrt(alpha_bar') beta / (1 -
  alpha_bar) x0_hat + sqrt(1 - beta) (1 - alpha_bar') / (1 - alpha_bar) x``. The log-variance
  is the posterior's ``log(beta~)``, ``beta~ = beta (1 - alpha_bar') / (1 - alpha_bar)``, or
  with a learned head ``v`` in ``[-1, 1]`` the interpolation ``f log(beta) + (1 - f) log(beta~)``,
  ``f = (v + 1) / 2`` (Nichol & Dhariwal 2021, Eq. 15; DiT ``learn_sigma``).

  Args:
    process: a DDPM process (``alpha_bar_at``).
    x: ``x_k`` ``[B, ...]``; ``x0_hat``: the denoised estimate, same shape.
    v: the variance head's output, same shape, or None.
    k, k_next: int32 steps, ``k_next < k`` (``-1`` the data end).

  Returns:
    ``(mean, log_variance)``, float32, shapes of ``x`` (the log-variance broadcastable).
  """
  ab = expand(process.alpha_bar_at(k), x)
  ab_next = expand(process.alpha_bar_at(k_next), x)
  beta = 1.0 - ab / ab_next
  mean = (jnp.sqrt(ab_next) * beta * x0_hat + jnp.sqrt(1.0 - beta) * (1.0 - ab_next) * x) / (
      1.0 - ab)
  min_log = jnp.log(jnp.maximum(beta * (1.0 - ab_next) / (1.0 - ab), 1e-20))
  if v is None:
    return mean, min_log
  fraction = (v.astype(jnp.float32) + 1.0) / 2.0
  return mean, fraction * jnp.log(beta) + (1.0 - fraction) * min_log


def ddpm_ancestral(process: Process, denoise: VarianceDenoiser, x: Array, grid: Array,
                   key: Array, record: bool = False):
  """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) along an integer ``grid`` (``[N + 1]``,
  decreasing to ``-1``; a respaced grid such as DiT's 250 of 1000 steps is
  ``process.time_grid(250)``): at each step ``x' = mean + exp(log_variance / 2) z``
  (:func:`ddpm_posterior`), with no noise on the step into the data end.

  Args:
    process: a DDPM process.
    denoise: :func:`variance_denoiser`.
    x: the state at ``grid[0]``, float32 ``[B, ...]``.
    grid: int32 steps; its values are traced (one compile per length).
    key: PRNG key of the per-step noise ``z``.
    record: also return the trajectory ``[N + 1, B, ...]``.

  Returns:
    float32 ``x`` at ``grid[-1]`` (unclipped), or ``(x, trajectory)``.
  """
  keys = jax.random.split(key, grid.shape[0] - 1)

  def body(x, inputs):
    k, k_next, step_key = inputs
    x0_hat, _, v = denoise(x, k)
    mean, log_variance = ddpm_posterior(process, x, x0_hat, v, k, k_next)
    z = jax.random.normal(step_key, x.shape, jnp.float32)
    x_next = jnp.where(k_next >= 0, mean + jnp.exp(0.5 * log_variance) * z, mean)
    return x_next.astype(jnp.float32), (x_next if record else None)

  x_end, states = jax.lax.scan(body, x.astype(jnp.float32), (grid[:-1], grid[1:], keys))
  if record:
    return x_end, jnp.concatenate([x[None].astype(jnp.float32), states])
  return x_end


def ancestral_sample_from(process: Process, denoise: VarianceDenoiser, x_input: Array,
                          eps: Array, strength: float | Array, num_steps: int, key: Array,
                          record: bool = False):
  """:func:`sample_from` with :func:`ddpm_ancestral` in place of the ODE solver: ``x_input``
  noised to ``strength`` with ``eps`` (phi-PD's structured noise enters here, as in every
  sampler), then ``num_steps`` ancestral steps with per-step Gaussian noise from ``key``."""
  k_start = process.time_from_strength(strength)
  x_start = process.noisy(x_input.astype(jnp.float32), eps.astype(jnp.float32), k_start)
  grid = process.time_grid(num_steps, k_start)
  return ddpm_ancestral(process, denoise, x_start, grid, key, record)
