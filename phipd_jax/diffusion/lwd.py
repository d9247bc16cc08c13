"""Latent Wavelet Diffusion: the time-dependent wavelet mask and the masked flow-matching loss.

Source: Sigillo, He, Comminiello, *Latent Wavelet Diffusion for Ultra-High-Resolution Image
Synthesis*, arXiv:2506.00433 (ICLR 2026), Sec. 3.2-3.3, Eqs. 6-7, and its released code
(``LuigiSigillo/LatentWaveletDiffusion``: ``get_mask_batch``, ``train_2k.py``). The saliency map
``A`` is :func:`phipd_jax.spectral.wavelet_energy_map`.

**Time units (read this).** ``sigma`` here is the library's flow-matching time ``t`` in
``[0, 1]`` with **t = 0 data, t = 1 noise**, ``x_t = (1 - t) x0 + t eps``: exactly LWD's noise
level ``sigma`` (paper Eq. 4; diffusers ``sigma = timestep / 1000``). It is **not** the integer
timestep in ``[0, 1000]`` (a known practitioner bug: comparing ``timestep`` against ``A + ell``
masks almost everything out), **not** the JiT / Spectral Forcing ``t_data`` (1 = data; pass
``1 - t_data``), **not** a DDPM step ``k`` (whose noise level is not ``k / K``) and **not** an
EDM sigma (unbounded, ``x = x0 + sigma n``). Concrete values outside ``[0, 1]`` and
integer-dtype arrays (DDPM steps, diffusers timesteps) raise ``ValueError`` even under ``jit``
for the dtype; traced float values cannot be range-checked, so only use the mask with the
flow-matching process.

The rule (paper Eq. 6, continuous form): position ``(i, j)`` is supervised iff
``sigma <= A(i, j) + ell``. Hence every position is supervised for ``sigma <= ell``, the argmax of
``A`` (``A = 1``) at every ``sigma <= 1``, and the supervised fraction never increases with
``sigma``. ``ell = 0.3`` in every paper experiment and both released scripts (the released
trainer's command-line default is 0.1: pass 0.3 explicitly when reproducing).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax.spectral import wavelet_energy_map

Array = jax.Array

DEFAULT_ELL = 0.3
NORMALIZATIONS = ('all', 'mask')
CHANNELS = ('all', 'released')  # wavelet_energy_map's channel rule: paper Eq. 2 / released.


def _check_ell(ell: float) -> None:
  if not (np.isfinite(ell) and ell >= 0):
    raise ValueError(f'lwd: ell={ell} must be a finite number >= 0 (the paper uses 0.3)')


def _check_sigma(sigma) -> None:
  """Rejects integer timesteps and concrete values outside ``[0, 1]`` (see module docstring)."""
  dtype = getattr(sigma, 'dtype', None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f'lwd: sigma has integer dtype {dtype}; it must be the float noise level '
                     'sigma = t in [0, 1] (t = 0 data, t = 1 noise), not an integer timestep '
                     '(divide diffusers timesteps by 1000)')
  try:
    values = np.asarray(sigma, np.float64)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return  # Traced under jit/grad: the range cannot be checked here.
  if values.size and not (np.all(values >= 0.0) and np.all(values <= 1.0)):
    raise ValueError(f'lwd: sigma must lie in [0, 1] (the library time t: 0 data, 1 noise), got '
                     f'values in [{values.min()}, {values.max()}]; integer timesteps in '
                     '[0, 1000] must be divided by 1000')


def lwd_mask(A: Array, sigma, ell: float = DEFAULT_ELL) -> Array:  # pylint: disable=invalid-name
  """Binary LWD mask ``M = 1[sigma <= A + ell]``, float32 ``[B, H, W, 1]`` (paper Eq. 6).

  Continuous form of the released ``get_mask_batch`` rule ``T (A + ell) >= timestep`` with
  ``T = 1000`` and ``timestep = 1000 sigma``. A hard ``<=`` (binary, not a soft weight),
  recomputed per sample at its own ``sigma``; the trailing axis broadcasts over channels.

  Args:
    A: saliency map ``[B, H, W]`` in ``[0, 1]`` (:func:`phipd_jax.spectral.wavelet_energy_map`
      of the noisy latent).
    sigma: ``[B]`` or scalar float noise level in **[0, 1], the library's flow time t (0 data,
      1 noise)**; NOT an integer timestep in [0, 1000] and NOT JiT's ``t_data``.
    ell: offset ``ell >= 0`` (paper 0.3).

  Returns:
    float32 ``[B, H, W, 1]`` with values in ``{0, 1}``.

  Raises:
    ValueError: ``A`` not 3-D; ``sigma`` of integer dtype, not scalar/``[B]``, or (when concrete)
      outside ``[0, 1]``; ``ell`` negative or not finite.
  """
  if A.ndim != 3:
    raise ValueError(f'lwd_mask: A must be [B, H, W], got shape {A.shape}')
  _check_ell(ell)
  _check_sigma(sigma)
  sigma = jnp.asarray(sigma, jnp.float32)
  if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, A.shape[0])):
    raise ValueError(f'lwd_mask: sigma must be a scalar or [B={A.shape[0]}], got {sigma.shape}')
  sigma = jnp.broadcast_to(sigma.reshape(-1), (A.shape[0],))
  mask = sigma[:, None, None] <= A.astype(jnp.float32) + ell
  return mask.astype(jnp.float32)[..., None]


def mask_fraction_by_sigma(A: Array, sigmas,  # pylint: disable=invalid-name
                           ell: float = DEFAULT_ELL) -> Array:
  """Supervised fraction of ``A``'s positions at each noise level of a grid, float32 ``[S]``.

  ``f(sigma_s) = mean_{b, i, j} 1[sigma_s <= A(b, i, j) + ell]``, all ``B H W`` positions of the
  **fixed** map ``A`` judged at every ``sigma_s``; non-increasing in ``sigma``, 1 for
  ``sigma <= ell``. Use it to log or plot how much of the latent the loss sees per sigma bin (e.g.
  bin centres ``(k + 1/2) / S``); a flat 1 at ``sigma = 0.9`` on textured latents means the rule
  is not acting (wrong time units or ``ell``). For the fraction each training sample actually
  got at its own ``sigma``, use ``lwd_mask(A, sigma, ell).mean(axis=(1, 2, 3))`` and bin that.

  Args:
    A: saliency map ``[B, H, W]``.
    sigmas: ``[S]`` (or scalar) noise levels in ``[0, 1]``, same units as :func:`lwd_mask`.
    ell: offset (paper 0.3).
    channels: the energy map's channel rule (:func:`lwd_weight_fn`).

  Returns:
    float32 ``[S]`` in ``[0, 1]``.

  Raises:
    ValueError: as :func:`lwd_mask`.
  """
  if A.ndim != 3:
    raise ValueError(f'mask_fraction_by_sigma: A must be [B, H, W], got shape {A.shape}')
  _check_ell(ell)
  _check_sigma(sigmas)
  sigmas = jnp.atleast_1d(jnp.asarray(sigmas, jnp.float32))
  if sigmas.ndim != 1:
    raise ValueError(f'mask_fraction_by_sigma: sigmas must be [S], got shape {sigmas.shape}')
  supervised = sigmas[:, None] <= A.astype(jnp.float32).reshape(1, -1) + ell
  return jnp.mean(supervised.astype(jnp.float32), axis=1)


def _check_normalize(normalize: str) -> None:
  if normalize not in NORMALIZATIONS:
    raise ValueError(f'lwd: normalize={normalize!r} must be one of {NORMALIZATIONS} (\'all\' is '
                     'the released code; \'mask\' is a deviation)')


def _check_channels(channels: str) -> None:
  if channels not in CHANNELS:
    raise ValueError(f'lwd: channels={channels!r} must be one of {CHANNELS} (\'all\' is the '
                     'paper\'s Eq. 2; \'released\' the released code\'s channels 0-2)')


def lwd_weight_fn(ell: float = DEFAULT_ELL, normalize: str = 'all',
                  channels: str = 'all') -> Callable[[Array, Array], Array]:
  """Loss-weight hook ``weight_fn(x_t, t) = lwd_mask(wavelet_energy_map(x_t), t, ell)``.

  For a flow-matching diffusion loss that multiplies ``weight_fn(x_t, t)`` into the squared
  error and averages over all elements, this is the LWD objective (paper Eq. 7 with the released
  mean over all ``B H W C`` elements). ``x_t`` is the **noisy** network input and ``t`` the
  process time in ``[0, 1]`` (t = 0 data, 1 noise) of :class:`phipd_jax.diffusion.FlowMatching`,
  not a model-time embedding, a DDPM step, an EDM sigma or an integer timestep. Prefer
  :func:`process_weight_fn`, which refuses a process whose time is in other units.

  With ``normalize='mask'`` (a **deviation** from the released code) the mask is divided by its
  batch mean, ``M / mean_{b,i,j}(M)``: the all-element mean of the weighted error then equals
  :func:`masked_flow_matching_loss` with ``normalize='mask'`` (the mean over supervised elements
  of the batch). The mean is never 0 for a non-constant map: the argmax of ``A`` is always
  supervised.

  Args:
    ell: offset (paper 0.3).
    normalize: ``'all'`` (reference) or ``'mask'`` (deviation).
    channels: the energy map's channels: ``'all'`` (paper Eq. 2) or ``'released'`` (0-2, the
      released code; see :func:`phipd_jax.spectral.wavelet_energy_map`).

  Returns:
    ``weight_fn(x_t [B, H, W, C], t [B] or scalar) -> float32 [B, H, W, 1]``, in ``{0, 1}`` for
    ``'all'``; gradient-free.

  Raises:
    ValueError: ``ell`` negative or not finite, unknown ``normalize`` (at construction); the
      returned function raises as :func:`lwd_mask`.
  """
  _check_ell(ell)
  _check_normalize(normalize)
  _check_channels(channels)

  def weight_fn(x_t: Array, t: Array) -> Array:
    mask = lwd_mask(wavelet_energy_map(x_t, channels), t, ell)
    if normalize == 'mask':
      mask = mask / jnp.maximum(jnp.mean(mask), 1e-12)
    return jax.lax.stop_gradient(mask)

  return weight_fn


def process_weight_fn(process, ell: float = DEFAULT_ELL, normalize: str = 'all',
                      channels: str = 'all') -> Callable[[Array, Array], Array]:
  """:func:`lwd_weight_fn` for a forward process whose time is the mask's noise level.

  The mask compares the flow-matching noise level ``sigma = t in [0, 1]`` (t = 0 data) against
  ``A + ell``. ``diffusion_loss`` passes the process's own time to its ``weight_fn``; only a
  process that declares ``flow_noise_level_time`` (the flow-matching process) has that time, so
  any other (a DDPM step ``k``, an EDM sigma in ``[0.002, 80]``) is refused here rather than
  masked in the wrong units.

  Args:
    process: a :class:`~phipd_jax.diffusion.processes.Process`.
    ell: offset (paper 0.3).
    normalize: ``'all'`` (reference) or ``'mask'`` (deviation).
    channels: ``'all'`` (paper) or ``'released'`` (see :func:`lwd_weight_fn`).

  Raises:
    ValueError: the process's time is not the flow noise level, or as :func:`lwd_weight_fn`.
  """
  if not getattr(process, 'flow_noise_level_time', False):
    raise ValueError(f'lwd: the mask needs the flow-matching process (time t = noise level in '
                     f'[0, 1]); got {type(process).__name__}, whose time is in other units')
  return lwd_weight_fn(ell, normalize, channels)


def mask_fraction_at_sigmas(x0: Array, eps: Array, sigmas,
                            ell: float = DEFAULT_ELL, channels: str = 'all') -> Array:
  """Supervised fraction of the LWD mask if the batch were noised to each ``sigma_s``, ``[S]``.

  ``f(sigma_s) = mean_{b, i, j} lwd_mask(A(x_s), sigma_s, ell)`` with
  ``x_s = (1 - sigma_s) x0 + sigma_s eps`` (flow matching, paper Eq. 4) and ``A`` the wavelet
  energy map of that noisy batch: the share of positions the loss supervises at noise level
  ``sigma_s`` on this batch (a per-sigma-bin training diagnostic; 1 for ``sigma_s <= ell``, and
  a flat 1 at high sigma means the rule is not acting). Gradient-free.

  Args:
    x0: clean batch ``[B, H, W, C]``.
    eps: noise, same shape.
    sigmas: ``[S]`` noise levels in ``[0, 1]`` (concrete), same units as :func:`lwd_mask`.
    ell: offset (paper 0.3).
    channels: the energy map's channel rule (:func:`lwd_weight_fn`).

  Returns:
    float32 ``[S]`` in ``[0, 1]``.

  Raises:
    ValueError: shapes differ or are not 4-D, or as :func:`lwd_mask`.
  """
  if x0.shape != eps.shape or x0.ndim != 4:
    raise ValueError(f'mask_fraction_at_sigmas: x0 {x0.shape} and eps {eps.shape} must both be '
                     '[B, H, W, C]')
  _check_ell(ell)
  _check_channels(channels)
  _check_sigma(sigmas)
  sigmas = jnp.atleast_1d(jnp.asarray(sigmas, jnp.float32))
  x0, eps = (jax.lax.stop_gradient(v.astype(jnp.float32)) for v in (x0, eps))

  def fraction(sigma):
    x_s = (1.0 - sigma) * x0 + sigma * eps
    return jnp.mean(lwd_mask(wavelet_energy_map(x_s, channels), sigma, ell))

  return jnp.stack([fraction(sigma) for sigma in sigmas])


def masked_flow_matching_loss(v_pred: Array, v_target: Array, mask: Array,
                              weight: Optional[Array] = None, normalize: str = 'all') -> Array:
  """Masked flow-matching loss of LWD (paper Eq. 7), float32 scalar.

  ``normalize='all'`` (**reference**, released ``train_2k.py``):
  ``mean over all B H W C elements of w (M (v_hat - v))^2``. Masked-out elements contribute zero
  but stay in the denominator, so the effective loss weight shrinks with the mask fraction at
  high ``sigma``. ``normalize='mask'`` is a **deviation from the released code**: the same sum
  divided by ``sum(M) C`` (broadcast mask count times channels), i.e. the mean over supervised
  elements (0 when nothing is supervised).

  Args:
    v_pred: predicted velocity ``[B, H, W, C]``.
    v_target: target velocity ``eps - x0``, same shape.
    mask: ``[B, H, W, 1]`` (or ``[B, H, W, C]``) mask from :func:`lwd_mask`; binary in LWD,
      any non-negative values are accepted (squared, as in ``(M (v_hat - v))^2``).
    weight: optional per-sample ``[B]`` or broadcastable time weight ``w(sigma)`` (1 in the
      released FLUX recipe).
    normalize: ``'all'`` (reference) or ``'mask'`` (deviation).

  Returns:
    float32 scalar.

  Raises:
    ValueError: unknown ``normalize``; ``v_pred`` and ``v_target`` shapes differ or are not 4-D.
  """
  _check_normalize(normalize)
  if v_pred.shape != v_target.shape or v_pred.ndim != 4:
    raise ValueError(f'masked_flow_matching_loss: v_pred {v_pred.shape} and v_target '
                     f'{v_target.shape} must both be [B, H, W, C]')
  mask = mask.astype(jnp.float32)
  error = jnp.square(mask * (v_pred.astype(jnp.float32) - v_target.astype(jnp.float32)))
  if weight is not None:
    weight = jnp.asarray(weight, jnp.float32)
    if weight.ndim == 1:
      weight = weight[:, None, None, None]
    error = error * weight
  error = jnp.broadcast_to(error, v_pred.shape)
  if normalize == 'all':
    return jnp.mean(error)
  count = jnp.sum(jnp.broadcast_to(mask, v_pred.shape))
  return jnp.where(count > 0, jnp.sum(error) / jnp.where(count > 0, count, 1.0), 0.0)
