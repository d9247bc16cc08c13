"""The denoising objective with any noise function (phi-PD paper Eqs. 13-14 and 19; JiT Alg. 1;
EDM, Karras et al. 2022 Eq. 2), with an optional spatial loss-weight hook (Latent Wavelet
Diffusion's mask)."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from phipd_jax.diffusion.processes import Process, expand

Array = jax.Array
ApplyFn = Callable[[Array, Array, Optional[Array]], Array]
WeightFn = Callable[[Array, Array], Array]

LOSS_SPACES = ('prediction', 'v')


def diffusion_loss(process: Process, apply_fn: ApplyFn, x0: Array, key: Array,
                   noise_fn: Callable[[Array, Array], Array], prediction: str,
                   y: Optional[Array] = None, loss_space: str = 'prediction',
                   weight_fn: Optional[WeightFn] = None) -> Array:
  """Weighted mean squared error between the network output and the target of ``prediction``.

  ``t ~ process.sample_time``, ``eps = noise_fn(key, x0)`` (Gaussian or structured: built from
  ``x0`` itself in phi-PD, paper Sec. 5), ``x_t = process.noisy(x0, eps, t)``, the network sees
  ``process.model_input(x_t, t)``, and the loss is the mean over **all** elements of
  ``w(t) * m(x_t, t) * (output - target)^2`` with ``w = process.loss_weight`` (1 for flow and
  DDPM; EDM's ``lambda(sigma) c_out^2 = 1`` for its preconditioned output) and ``m`` the
  optional ``weight_fn``. With FSS noise and ``prediction='v'`` this is phi-PD Eq. 14; with DDPM
  and ``'eps'``, Eq. 19; with EDM and ``'edm'``, ``E[lambda(sigma) |D(x; sigma) - x0|^2]``.

  Args:
    process: a :class:`~phipd_jax.diffusion.processes.Process`.
    apply_fn: ``(x_in [B, H, W, C], t_in [B] float32, y [B] int32 or None) -> [B, H, W, C]``.
    x0: clean batch ``[B, H, W, C]`` (or video), float (pixels in ``[-1, 1]`` or latents).
    key: PRNG key; split into the time key and the noise key.
    noise_fn: ``noise_fn(key, x0) -> eps`` (see :func:`phipd_jax.noise.noise_fn`).
    prediction: one of ``process.predictions``.
    y: optional class labels ``[B]``.
    loss_space: ``'prediction'`` (regress the output on its own target) or ``'v'`` (flow only):
      convert the output and the true target to velocities with ``process.to_x0_eps`` and
      regress those. With ``prediction='x'`` and ``t_clamp=0.05`` this is JiT's x-prediction
      with the v-loss: ``v_hat - v = (x0 - x_hat) / max(t, 0.05)``.
    weight_fn: optional ``(x_t, t) -> weight`` broadcastable to ``x0`` (e.g. the Latent Wavelet
      Diffusion mask ``[B, H, W, 1]``, computed from the *noisy* input); masked-out elements stay
      in the denominator (the released LWD code's normalisation).

  Returns:
    float32 scalar loss.

  Raises:
    ValueError: unknown ``loss_space``, ``'v'`` with a process other than flow matching, or a
      prediction the process does not have.
  """
  if loss_space not in LOSS_SPACES:
    raise ValueError(f'diffusion: loss_space={loss_space!r} must be one of {LOSS_SPACES}')
  if loss_space == 'v' and not process.velocity_loss:
    raise ValueError("diffusion: loss_space='v' needs the flow-matching process")
  process.check_prediction(prediction)
  time_key, noise_key = jax.random.split(key)
  t = process.sample_time(time_key, x0.shape[0])
  eps = noise_fn(noise_key, x0)
  x_t = process.noisy(x0, eps, t)
  x_in, t_in = process.model_input(x_t, t)
  output = apply_fn(x_in, jnp.asarray(t_in, jnp.float32), y)
  target = process.target(x0, eps, t, prediction)
  if loss_space == 'v':

    def velocity(value):  # eps_hat - x0_hat of a prediction, with the process's clamp.
      x0_hat, eps_hat = process.to_x0_eps(value.astype(jnp.float32), x_t.astype(jnp.float32), t,
                                          prediction)
      return eps_hat - x0_hat

    output, target = velocity(output), velocity(target)
    weight = 1.0
  else:
    weight = expand(process.loss_weight(t, prediction), x0)
  error = jnp.square(output.astype(jnp.float32) - target.astype(jnp.float32)) * weight
  if weight_fn is not None:
    error = error * weight_fn(x_t, t).astype(jnp.float32)
  return jnp.mean(error)
