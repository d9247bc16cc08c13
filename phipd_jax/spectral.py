"""Orthonormal 2-D DCT and Spectral Forcing (a time-conditional DCT low-pass of the network input).

Source: Fan, Diao, Wu, Liu, *Show the Signal, Hide the Noise: Spectral Forcing for Pixel-Space
Diffusion*, arXiv:2606.15236, and its released code (``WeichenFan/Spectral_Forcing``,
``model_jit.py``); spec ``shared/papers/spectral_forcing_and_jit.md`` Sec. 6-7 and 9.

**Time convention.** Every function here takes ``t_data`` in the JiT / Spectral Forcing
convention, **t_data = 1 data, 0 noise**. The library's diffusion time is ``t = 1 - t_data``
(t = 0 data); callers convert at the call (the JiT model does it once, in its ``__call__``).

**Frequency units.** Coefficients are indexed by DCT indices ``u in [0, H)``, ``v in [0, W)``;
the normalised radius is ``rho(u, v) = sqrt((u / (H - 1))^2 + (v / (W - 1))^2) / sqrt(2)``,
dimensionless: 0 at DC, ``1/sqrt(2)`` at the end of an axis, 1 at the far corner. For square
inputs this is the released code's ``sqrt(u^2 + v^2) / (sqrt(2) (N - 1))``.

**Schedules** (cutoff ``c`` in ``rho`` units; mask ``M = sigmoid(kappa (c - rho))``):

* ``'linear'`` (the released code, "Linear Spectral Forcing"):
  ``c = c_min + (c_max - c_min) clip(t_data, 0, 1)``; with the defaults ``c = 0.05 + 0.95 t_data``.
  Not the identity at the data end: at ``t_data = 1`` the far corner is scaled by
  ``sigmoid(0) = 0.5`` and ~5% of coefficients by less than 0.99 (spec Sec. 7 table); at
  ``t_data = 0`` even DC is scaled by ``sigmoid(30 * 0.05) = 0.818``. Kept for faithfulness.
* ``'power_law'`` (the paper's data-to-noise contour ``k*(t) = (1 - t_data)^(-2 / alpha)``, Sec. 6):
  ``c = c_min (1 - t_data)^(-2 / alpha)``. The contour's ``k`` is measured in units of the
  noise-end cutoff ``c_min`` (the paper drops the constant ``t^2 A``; this is the library's
  reading, a deviation to name when comparing). ``c = c_min`` at pure noise like the linear
  schedule, and ``c = inf`` at ``t_data = 1``: **exactly the identity** at the data end.
  ``alpha`` is the spectral slope of natural images (``P(k) ~ k^-alpha``; 2 is a textbook value).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

SCHEDULES = ('linear', 'power_law')


@functools.lru_cache(maxsize=32)
def _dct_matrix_np(size: int) -> np.ndarray:
  k = np.arange(size, dtype=np.float64)[:, None]
  i = np.arange(size, dtype=np.float64)[None, :]
  scale = np.where(k == 0, math.sqrt(1.0 / size), math.sqrt(2.0 / size))
  return (scale * np.cos(math.pi * (i + 0.5) * k / size)).astype(np.float32)


def dct_matrix(size: int) -> Array:
  """Orthonormal DCT-II matrix ``D[k, i] = s_k cos(pi (i + 1/2) k / N)``, float32 ``[N, N]``.

  ``s_0 = sqrt(1 / N)``, ``s_k = sqrt(2 / N)``; ``D @ x`` equals
  ``scipy.fft.dct(x, type=2, norm='ortho')`` and ``D.T`` is the inverse (DCT-III).

  Raises:
    ValueError: ``size < 1``.
  """
  if size < 1:
    raise ValueError(f'dct_matrix: size={size} must be >= 1')
  return jnp.asarray(_dct_matrix_np(int(size)))


def dct2(x: Array) -> Array:
  """Orthonormal 2-D DCT-II over ``H`` and ``W`` of ``x`` ``[B, H, W, C]`` (per channel)."""
  d_h, d_w = dct_matrix(x.shape[1]), dct_matrix(x.shape[2])
  return jnp.einsum('uh,bhwc,vw->buvc', d_h, x.astype(jnp.float32), d_w)


def idct2(coefficients: Array) -> Array:
  """Inverse of :func:`dct2` (orthonormal DCT-III), ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
  d_h, d_w = dct_matrix(coefficients.shape[1]), dct_matrix(coefficients.shape[2])
  return jnp.einsum('uh,buvc,vw->bhwc', d_h, coefficients.astype(jnp.float32), d_w)


def normalized_radius(height: int, width: int) -> Array:
  """``rho(u, v)`` on DCT indices, float32 ``[H, W]`` in ``[0, 1]`` (see module docstring)."""
  u = np.arange(height, dtype=np.float64) / max(height - 1, 1)
  v = np.arange(width, dtype=np.float64) / max(width - 1, 1)
  return jnp.asarray(np.sqrt(u[:, None] ** 2 + v[None, :] ** 2) / math.sqrt(2.0), jnp.float32)


def cutoff(t_data: Array, *, schedule: str = 'linear', c_min: float = 0.05, c_max: float = 1.0,
           alpha: float = 2.0) -> Array:
  """Spectral Forcing cutoff ``c`` in ``rho`` units for ``t_data`` (1 = data end), ``[B]``.

  Raises:
    ValueError: unknown schedule, ``c_min`` not in ``(0, c_max]`` or ``alpha <= 0``.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'spectral_forcing: schedule={schedule!r} must be one of {SCHEDULES}')
  if not 0 < c_min <= c_max:
    raise ValueError(f'spectral_forcing: need 0 < c_min={c_min} <= c_max={c_max}')
  if alpha <= 0:
    raise ValueError(f'spectral_forcing: alpha={alpha} must be > 0')
  t_data = jnp.clip(jnp.asarray(t_data, jnp.float32), 0.0, 1.0)
  if schedule == 'linear':
    return c_min + (c_max - c_min) * t_data
  # (1 - t)^(-2/alpha); 0^(negative) = inf gives the exact identity at the data end.
  return c_min * jnp.power(1.0 - t_data, -2.0 / alpha)


def forcing_mask(t_data: Array, height: int, width: int, *, kappa: float = 30.0,
                 schedule: str = 'linear', c_min: float = 0.05, c_max: float = 1.0,
                 alpha: float = 2.0) -> Array:
  """``M_t(u, v) = sigmoid(kappa (c(t_data) - rho(u, v)))``, float32 ``[B, H, W]`` in (0, 1].

  Args:
    t_data: ``[B]`` (or scalar) in ``[0, 1]``, 1 = data end (JiT convention).
    height, width: DCT block size (the image, or the window).
    kappa: mask slope (released ``mask_sharpness`` 30).
    schedule, c_min, c_max, alpha: see :func:`cutoff`.
  """
  c = cutoff(jnp.atleast_1d(t_data), schedule=schedule, c_min=c_min, c_max=c_max, alpha=alpha)
  rho = normalized_radius(height, width)
  return jax.nn.sigmoid(kappa * (c[:, None, None] - rho[None]))


def spectral_forcing(z: Array, t_data: Array, *, kappa: float = 30.0, c_min: float = 0.05,
                     c_max: float = 1.0, window: Optional[int] = None, schedule: str = 'linear',
                     alpha: float = 2.0) -> Array:
  """Spectral Forcing ``SF_t(z) = D^T (M_t * (D z D^T)) D`` of a noisy input (spec Sec. 7 step 5).

  A parameter-free low-pass: per image and per channel, an orthonormal 2-D DCT, a soft radial
  mask whose cutoff grows with ``t_data``, and the inverse DCT. Linear in ``z``, never increases
  energy (``0 < M <= 1``). Apply it to the **network input only**; the loss target and the x->v
  conversion use the unfiltered ``z``.

  Args:
    z: noisy input ``[B, H, W, C]`` (any float dtype; computed in float32, returned in ``z.dtype``).
    t_data: ``[B]`` or scalar, **1 = data end** (library callers pass ``1 - t``).
    kappa: mask slope.
    c_min, c_max: cutoff at ``t_data = 0`` and (linear schedule) at ``t_data = 1``, ``rho`` units.
    window: ``None`` for one DCT over the whole image (the released default); an integer ``w``
      for one DCT per non-overlapping ``w x w`` tile (``--window_size``), one mask shared by tiles.
    schedule: ``'linear'`` (released code) or ``'power_law'`` (paper contour; see module doc).
    alpha: spectral slope of the power-law schedule.

  Returns:
    ``[B, H, W, C]``, dtype of ``z``.

  Raises:
    ValueError: ``z`` not 4-D, or ``H``/``W`` not divisible by ``window``; bad schedule values.
  """
  if z.ndim != 4:
    raise ValueError(f'spectral_forcing: z must be [B, H, W, C], got shape {z.shape}')
  batch, height, width, channels = z.shape
  block_h, block_w = (height, width) if window is None else (window, window)
  if window is not None and (window < 2 or height % window or width % window):
    raise ValueError(f'spectral_forcing: window={window} must be >= 2 and divide H={height}, '
                     f'W={width}')
  mask = forcing_mask(jnp.broadcast_to(jnp.asarray(t_data, jnp.float32), (batch,)), block_h,
                      block_w, kappa=kappa, schedule=schedule, c_min=c_min, c_max=c_max,
                      alpha=alpha)
  d_h, d_w = dct_matrix(block_h), dct_matrix(block_w)
  # [B, H, W, C] -> [B, nH, h, nW, w, C]: the whole image is the case nH = nW = 1.
  tiles = z.astype(jnp.float32).reshape(batch, height // block_h, block_h, width // block_w,
                                        block_w, channels)
  coefficients = jnp.einsum('uh,bmhnwc,vw->bmunvc', d_h, tiles, d_w)
  coefficients = coefficients * mask[:, None, :, None, :, None]
  filtered = jnp.einsum('uh,bmunvc,vw->bmhnwc', d_h, coefficients, d_w)
  return filtered.reshape(z.shape).astype(z.dtype)
