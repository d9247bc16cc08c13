"""Deterministic samplers, classifier-free guidance, SDEdit and phi-PD translation.

Every loop is a ``lax.scan`` over a step grid whose length is static and whose values are
traced, so a sampler compiles once per (input shape, number of steps): changing the strength,
the radius or the guidance scale does not recompile.

Structured noise enters only at initialisation (phi-PD paper Sec. 4 and spec Sec. 6): the
start is ``x_start = noisy(x_input, eps_hat, t_start)`` and every later step is the unchanged
deterministic sampler.

* Generation: ``x_input`` ignored, Gaussian ``eps``, ``t_start = 1`` (DDPM: ``k = K - 1``).
* SDEdit (Meng et al. 2022): Gaussian ``eps`` of the input, ``t_start = strength``.
* phi-PD from noise: FSS ``eps_hat`` of the input at radius ``r``, ``t_start = 1`` (all structure
  comes through the phase); structured SDEdit: the same at ``t_start = strength < 1``.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from phipd_jax import noise as noise_lib
from phipd_jax.diffusion.processes import DDPM, FlowMatching, Process

Array = jax.Array
Denoiser = Callable[[Array, Array], tuple[Array, Array]]

FLOW_SAMPLERS = ('euler', 'heun')
DDPM_SAMPLERS = ('ddim',)


def denoiser(process: Process, apply_fn: Callable, prediction: str, y: Optional[Array] = None,
             guidance_scale: float | Array = 1.0, null_label: Optional[int] = None,
             guidance_interval: Optional[tuple[float, float]] = None) -> Denoiser:
  """Wraps a network into ``denoise(x_t, t) -> (x0_hat, eps_hat)`` for the samplers.

  With ``guidance_scale != 1`` and labels, classifier-free guidance (Ho & Salimans 2022):
  ``out = out(null) + w * (out(y) - out(null))``, one network call on the doubled batch. The
  combination is linear in the prediction, so it is valid for every prediction type.

  Args:
    process: the forward process (converts the output and the time).
    apply_fn: ``(x_t [B, ...], t [B] float32 in [0, 1], y [B] or None) -> [B, ...]``.
    prediction: ``'v'``, ``'x'`` or ``'eps'``.
    y: int32 labels ``[B]`` or None (unconditional).
    guidance_scale: ``w``; 1 disables guidance (traced: changing it does not recompile).
    null_label: the label index meaning "no label" (the model's ``num_classes``).
    guidance_interval: ``(low, high)`` in the network's time ``model_time(t)`` (0 = data end):
      guidance only where ``low < t < high``, scale 1 elsewhere (Kynkaanniemi et al. 2024).
      JiT's interval ``t_data in (0.1, 1)`` is ``(0.0, 0.9)`` here. None = everywhere.

  Raises:
    ValueError: guidance requested without labels or a null label.
  """
  guided = y is not None and not (isinstance(guidance_scale, (int, float)) and guidance_scale == 1)
  if guided and null_label is None:
    raise ValueError('denoiser: classifier-free guidance needs null_label')

  def denoise(x_t: Array, t: Array) -> tuple[Array, Array]:
    batch = x_t.shape[0]
    t_batch = jnp.broadcast_to(process.model_time(t), (batch,))
    if guided:
      labels = jnp.concatenate([y, jnp.full_like(y, null_label)])
      both = apply_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t_batch, t_batch]), labels)
      conditional, unconditional = both[:batch], both[batch:]
      scale = jnp.asarray(guidance_scale, jnp.float32)
      if guidance_interval is not None:
        low, high = guidance_interval
        inside = (t_batch > low) & (t_batch < high)
        scale = jnp.where(inside, scale, 1.0).reshape((batch,) + (1,) * (x_t.ndim - 1))
      output = unconditional + scale * (conditional - unconditional)
    else:
      output = apply_fn(x_t, t_batch, y)
    return process.to_x0_eps(output.astype(jnp.float32), x_t, t, prediction)

  return denoise


def _velocity(denoise: Denoiser, x: Array, t: Array) -> Array:
  x0, eps = denoise(x, t)
  return eps - x0


def flow_sample(denoise: Denoiser, x_start: Array, t_start: float | Array, num_steps: int,
                method: str = 'euler') -> Array:
  """Integrates ``dx/dt = v`` from ``t_start`` down to ``t = 0`` (data) on a uniform grid.

  ``'euler'``: ``num_steps`` network evaluations. ``'heun'``: second-order (Karras et al. 2022,
  Alg. 1) on every interval but the last, which is Euler so ``t = 0`` is never evaluated
  (``2 * num_steps - 1`` evaluations).

  Args:
    denoise: see :func:`denoiser`.
    x_start: ``x_{t_start}``, ``[B, ...]`` float32.
    t_start: start time in ``(0, 1]`` (1 = noise; a translation strength), traced.
    num_steps: number of intervals (static).
    method: ``'euler'`` or ``'heun'``.

  Returns:
    ``x_0``, same shape as ``x_start``.
  """
  if method not in FLOW_SAMPLERS:
    raise ValueError(f'flow_sample: method={method!r} must be one of {FLOW_SAMPLERS}')
  if num_steps < 1:
    raise ValueError(f'flow_sample: num_steps={num_steps} must be >= 1')
  times = jnp.linspace(jnp.asarray(t_start, jnp.float32), 0.0, num_steps + 1)

  def euler(x, interval):
    t, t_next = interval
    return x + (t_next - t) * _velocity(denoise, x, t), None

  def heun(x, interval):
    t, t_next = interval
    v = _velocity(denoise, x, t)
    x_euler = x + (t_next - t) * v
    return x + (t_next - t) * 0.5 * (v + _velocity(denoise, x_euler, t_next)), None

  intervals = (times[:-1], times[1:])
  if method == 'euler':
    return jax.lax.scan(euler, x_start, intervals)[0]
  x = jax.lax.scan(heun, x_start, (times[:-2], times[1:-1]))[0]
  return euler(x, (times[-2], times[-1]))[0]


def ddim_sample(process: DDPM, denoise: Denoiser, x_start: Array, k_start: int | Array,
                num_steps: int) -> Array:
  """Deterministic DDIM (eta = 0; Song et al. 2021, Eq. 12) from step ``k_start`` to data.

  Evaluates at ``num_steps`` integer steps ``round(linspace(k_start, 0, num_steps))``; each
  update is ``x <- sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps_hat`` with ``ab_next = 1``
  after the last step.

  Args:
    process: the :class:`DDPM`.
    denoise: see :func:`denoiser` (its time argument is the integer step).
    x_start: ``x_{k_start}``, ``[B, ...]``.
    k_start: start step in ``[0, K)``, traced.
    num_steps: number of network evaluations (static, >= 1).

  Returns:
    ``x_0``.
  """
  if num_steps < 1:
    raise ValueError(f'ddim_sample: num_steps={num_steps} must be >= 1')
  steps = jnp.round(jnp.linspace(jnp.asarray(k_start, jnp.float32), 0.0, num_steps))
  steps = steps.astype(jnp.int32)
  alpha_bar_next = jnp.concatenate([process.alpha_bar[steps[1:]], jnp.ones((1,))])

  def step(x, inputs):
    k, alpha_bar = inputs
    x0, eps = denoise(x, k)
    return jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * eps, None

  return jax.lax.scan(step, x_start, (steps, alpha_bar_next))[0]


def sample_from(process: Process, denoise: Denoiser, x_input: Array, eps: Array,
                strength: float | Array, num_steps: int, method: str) -> Array:
  """Noises ``x_input`` to ``strength`` with the given ``eps`` and runs the sampler to data.

  Args:
    process: the forward process.
    denoise: see :func:`denoiser`.
    x_input: ``[B, H, W, C]`` in ``[-1, 1]`` (zeros for generation).
    eps: the start noise, same shape (Gaussian or structured).
    strength: in ``(0, 1]``; 1 starts at pure noise (flow ``x_1 = eps``).
    num_steps: sampler steps (static).
    method: ``'euler'``/``'heun'`` (flow) or ``'ddim'`` (DDPM).

  Returns:
    float32 samples, same shape, unclipped.
  """
  if isinstance(process, FlowMatching):
    x_start = process.noisy(x_input.astype(jnp.float32), eps.astype(jnp.float32), strength)
    return flow_sample(denoise, x_start, strength, num_steps, method)
  if method not in DDPM_SAMPLERS:
    raise ValueError(f'sample: method={method!r} must be one of {DDPM_SAMPLERS} for DDPM')
  k_start = process.step_from_strength(strength)
  x_start = process.noisy(x_input.astype(jnp.float32), eps.astype(jnp.float32), k_start)
  return ddim_sample(process, denoise, x_start, k_start, num_steps)


def generate(process: Process, denoise: Denoiser, key: Array, shape, num_steps: int,
             method: str, noise_scale: float = 1.0) -> Array:
  """Unconditional (or label-conditional through ``denoise``) samples of ``shape`` from noise.

  ``noise_scale`` is the std of the start noise (JiT's ``s``; 1 for standard diffusion).
  """
  eps = noise_scale * jax.random.normal(key, tuple(shape), jnp.float32)
  return sample_from(process, denoise, jnp.zeros(shape, jnp.float32), eps, 1.0, num_steps, method)


def sdedit(process: Process, denoise: Denoiser, key: Array, x_input: Array,
           strength: float | Array, num_steps: int, method: str,
           noise_scale: float = 1.0) -> Array:
  """SDEdit: Gaussian noise of the input at ``strength``, then denoise (Meng et al. 2022)."""
  eps = noise_scale * noise_lib.gaussian(key, x_input.astype(jnp.float32))
  return sample_from(process, denoise, x_input, eps, strength, num_steps, method)


def phipd_translate(process: Process, denoise: Denoiser, key: Array, x_input: Array,
                    radius: float | Array, num_steps: int, method: str,
                    strength: float | Array = 1.0, noise_scale: float = 1.0,
                    **noise_kwargs) -> Array:
  """phi-PD structure-aligned translation (paper Sec. 4).

  Builds FSS noise from ``x_input`` at cutoff ``radius`` (unpadded frequency-index units; see
  :func:`phipd_jax.noise.fss_from_noise`, whose keyword arguments ``noise_kwargs`` are passed on)
  and starts the sampler from it: at ``strength = 1`` from noise (the released scripts' mode),
  below 1 as structured SDEdit. ``noise_scale`` multiplies the noise (JiT's ``s``).
  """
  eps = noise_scale * noise_lib.fss(key, x_input.astype(jnp.float32), radius, **noise_kwargs)
  return sample_from(process, denoise, x_input, eps, strength, num_steps, method)
