"""The denoising objective, with any noise function (phi-PD paper Eqs. 13-14 and 19)."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from phipd_jax.diffusion.processes import Process

Array = jax.Array
ApplyFn = Callable[[Array, Array, Optional[Array]], Array]


def diffusion_loss(process: Process, apply_fn: ApplyFn, x0: Array, key: Array,
                   noise_fn: Callable[[Array, Array], Array], prediction: str,
                   y: Optional[Array] = None) -> Array:
  """Mean squared error between the network output and the target of ``prediction``.

  ``t ~ process.sample_time``, ``eps = noise_fn(key, x0)`` (Gaussian or structured: built from
  ``x0`` itself in phi-PD, paper Sec. 5), ``x_t = process.noisy(x0, eps, t)``, loss
  ``mean((apply_fn(x_t, model_time(t), y) - target)^2)`` over all elements. With FSS noise and
  ``prediction='v'`` this is paper Eq. 14; with DDPM and ``'eps'``, Eq. 19.

  Args:
    process: :class:`FlowMatching` or :class:`DDPM`.
    apply_fn: ``(x_t [B, H, W, C], t [B] float32 in [0, 1], y [B] int32 or None) -> [B, H, W, C]``.
    x0: clean batch ``[B, H, W, C]`` (or video), float in ``[-1, 1]``.
    key: PRNG key; split into the time key and the noise key.
    noise_fn: ``noise_fn(key, x0) -> eps`` (see :mod:`phipd_jax.noise`).
    prediction: ``'v'``, ``'x'`` or ``'eps'``.
    y: optional class labels ``[B]``.

  Returns:
    float32 scalar loss.
  """
  time_key, noise_key = jax.random.split(key)
  t = process.sample_time(time_key, x0.shape[0])
  eps = noise_fn(noise_key, x0)
  x_t = process.noisy(x0, eps, t)
  output = apply_fn(x_t, process.model_time(t), y)
  target = process.target(x0, eps, t, prediction)
  return jnp.mean(jnp.square(output.astype(jnp.float32) - target.astype(jnp.float32)))
