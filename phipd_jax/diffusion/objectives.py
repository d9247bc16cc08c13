"""The denoising objective, with any noise function (phi-PD paper Eqs. 13-14 and 19; JiT Alg. 1)."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from phipd_jax.diffusion.processes import FlowMatching, Process

Array = jax.Array
ApplyFn = Callable[[Array, Array, Optional[Array]], Array]

LOSS_SPACES = ('prediction', 'v')


def diffusion_loss(process: Process, apply_fn: ApplyFn, x0: Array, key: Array,
                   noise_fn: Callable[[Array, Array], Array], prediction: str,
                   y: Optional[Array] = None, loss_space: str = 'prediction') -> Array:
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
    loss_space: ``'prediction'`` (regress the output on its own target) or ``'v'`` (flow only):
      convert the output and the true target to velocities with ``process.to_x0_eps`` and
      regress those. With ``prediction='x'`` and ``t_clamp=0.05`` this is JiT's x-prediction
      with the v-loss (spec Sec. 2): ``v_hat - v = (x0 - x_hat) / max(t, 0.05)`` in the
      library's time (``1 - t_data`` in JiT's), an x-loss weighted by ``1 / max(t, 0.05)^2``.

  Returns:
    float32 scalar loss.

  Raises:
    ValueError: unknown ``loss_space``, or ``'v'`` with a process other than flow matching.
  """
  if loss_space not in LOSS_SPACES:
    raise ValueError(f'diffusion: loss_space={loss_space!r} must be one of {LOSS_SPACES}')
  if loss_space == 'v' and not isinstance(process, FlowMatching):
    raise ValueError("diffusion: loss_space='v' needs the flow-matching process")
  time_key, noise_key = jax.random.split(key)
  t = process.sample_time(time_key, x0.shape[0])
  eps = noise_fn(noise_key, x0)
  x_t = process.noisy(x0, eps, t)
  output = apply_fn(x_t, process.model_time(t), y)
  target = process.target(x0, eps, t, prediction)
  if loss_space == 'v':

    def velocity(value):  # eps_hat - x0_hat of a prediction, with the process's clamp.
      x0_hat, eps_hat = process.to_x0_eps(value.astype(jnp.float32), x_t.astype(jnp.float32), t,
                                          prediction)
      return eps_hat - x0_hat

    output, target = velocity(output), velocity(target)
  return jnp.mean(jnp.square(output.astype(jnp.float32) - target.astype(jnp.float32)))
