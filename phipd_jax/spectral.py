"""Orthonormal 2-D DCT and Spectral Forcing (a time-conditional DCT low-pass of the network input).

Source: Fan, Diao, Wu, Liu, *Show the Signal, Hide the Noise: Spectral Forcing for Pixel-Space
Diffusion*, arXiv:2606.15236, and its released code (``WeichenFan/Spectral_Forcing``,
``model_jit.py``).

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
  ``sigmoid(0) = 0.5`` and ~5% of coefficients by less than 0.99 (measured on a 256x256 grid); at
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
from typing import Optional, Sequence

import jax
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
import numpy as np

Array = jax.Array

SCHEDULES = ('linear', 'power_law')


# --------------------------------------------------------------------------------------------
# Real FFTs that keep a batch sharding.
#
# XLA's SPMD partitioner does not partition an ``fft`` op: under ``jax.jit`` over a mesh it
# all-gathers the operand and every device transforms the whole global batch (measured on an
# 8-device CPU mesh: the train step's FSS noise ran three all-gathers and FFTs of the global
# ``[16, ...]`` batch on each device, whose shard was ``[2, ...]``). Every axis but the transformed
# ones is independent, so :func:`rfftn` / :func:`irfftn` partition the op along those axes with
# ``jax.experimental.custom_partitioning`` (JAX's documented remedy for exactly this): each
# device transforms its own shard, and only a sharding on a transformed axis is gathered. On one
# device the op lowers to the plain ``jnp.fft`` call, bit for bit.


# Inverse transforms on CPU run in up to this many slices of the leading axis (see below).
_CPU_INVERSE_SLICES = 16


def _fft_trailing(kind: str, lengths: tuple[int, ...], x: Array) -> Array:
  axes = tuple(range(x.ndim - len(lengths), x.ndim))
  if kind == 'rfft':
    return jnp.fft.rfftn(x, axes=axes)
  inverse = lambda z: jnp.fft.irfftn(z, s=lengths, axes=axes)
  if x.ndim == len(lengths):  # No leading axis to slice.
    return inverse(x)
  slices = max(d for d in range(1, _CPU_INVERSE_SLICES + 1) if x.shape[0] % d == 0)
  if slices == 1:
    return inverse(x)
  # XLA:CPU runs each FFT on one thread, and runs independent ops on a second thread only when
  # more than 8 are ready at once. The inverse transform ends the noise draw with nothing to run
  # beside it, so in slices both cores share it. Reference-mode draws on 2 cores, medians of 100
  # alternating calls: 64x3x64x64 31.7 -> 29.9 ms (same bits), 16x3x256x256 118 -> 115 ms
  # (within 7e-7: DUCC vectorises across fewer rows), 16x4x32x32 2.1 -> 2.2 ms.
  sliced = lambda z: jnp.concatenate([inverse(part) for part in jnp.split(z, slices)], axis=0)
  return jax.lax.platform_dependent(x, cpu=sliced, default=inverse)


def _batch_sharding(sharding, ndim: int, num_axes: int):
  """``sharding`` with its transformed (trailing ``num_axes``) axes replicated."""
  spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
  return jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(*spec[:ndim - num_axes], *(None,) * num_axes))


def _fft_partition(kind, lengths, mesh, arg_shapes, result_shape):
  del result_shape
  sharding = _batch_sharding(arg_shapes[0].sharding, len(arg_shapes[0].shape), len(lengths))
  return mesh, functools.partial(_fft_trailing, kind, lengths), sharding, (sharding,)


def _fft_infer_sharding(kind, lengths, mesh, arg_shapes, result_shape):
  del kind, mesh, result_shape
  return _batch_sharding(arg_shapes[0].sharding, len(arg_shapes[0].shape), len(lengths))


def _fft_sharding_rule(kind, lengths, mesh, operand_types, result_types):
  """Shardy: the leading axes pass through; the transformed ones are never sharded."""
  del kind, mesh, result_types
  leading = [f'b{i}' for i in range(len(operand_types[0].shape) - len(lengths))]
  inputs, outputs = [f'i{i}' for i in range(len(lengths))], [f'o{i}' for i in range(len(lengths))]
  rule = ' '.join(leading + inputs) + ' -> ' + ' '.join(leading + outputs)
  return rule, {'need_replication_factors': tuple(inputs + outputs)}


@functools.partial(custom_partitioning, static_argnums=(0, 1))
def _fft_partitioned(kind, lengths, x):
  return _fft_trailing(kind, lengths, x)


_fft_partitioned.def_partition(partition=_fft_partition,
                               infer_sharding_from_operands=_fft_infer_sharding,
                               sharding_rule=_fft_sharding_rule)


@functools.lru_cache(maxsize=None)
def _fft_op(kind: str, lengths: tuple[int, ...]):
  """The partitioned transform as a function of ``x`` alone that also vmaps and differentiates
  (``custom_partitioning`` has neither rule): a vmapped axis is one more leading axis, and the
  tangent, a linear map of the input's tangent, goes through the plain ``jnp.fft`` call."""

  @jax.custom_batching.custom_vmap
  def batched(x):
    return _fft_partitioned(kind, lengths, x)

  @batched.def_vmap
  def _vmap_rule(axis_size, in_batched, x):  # The vmapped axis is axis 0: a leading axis.
    del axis_size, in_batched
    return batched(x), True

  @jax.custom_jvp
  def op(x):
    return batched(x)

  @op.defjvp
  def _jvp(primals, tangents):
    return op(primals[0]), _fft_trailing(kind, lengths, tangents[0])

  return op


def _fft_along(kind: str, x: Array, axes: tuple[int, ...], lengths: tuple[int, ...]) -> Array:
  moved = tuple(range(x.ndim - len(axes), x.ndim))
  y = _fft_op(kind, lengths)(jnp.moveaxis(x, axes, moved))
  return jnp.moveaxis(y, moved, axes)


def _check_axes(name: str, ndim: int, axes) -> tuple[int, ...]:
  axes = tuple(int(a) % ndim if -ndim <= int(a) < ndim else ndim for a in axes)
  if not axes or len(set(axes)) != len(axes) or max(axes) >= ndim:
    raise ValueError(f'{name}: axes must be distinct axes of a rank-{ndim} array, got {axes}')
  return axes


def rfftn(x: Array, axes) -> Array:
  """``jnp.fft.rfftn(x, axes=axes)``, partitioned along the other axes under a mesh.

  Args:
    x: real array of any shape (float32 in this library; the spectrum is complex64).
    axes: the transformed axes (e.g. ``(1, 2)`` for ``H, W`` of NHWC); the last one gets
      ``n // 2 + 1`` non-negative frequency bins.

  Returns:
    The half spectrum: ``x.shape`` with ``axes[-1]`` of length ``x.shape[axes[-1]] // 2 + 1``.
    Under a mesh it stays sharded like ``x`` on the other axes: each device transforms its
    own shard (XLA's ``fft`` op alone all-gathers the operand and transforms all of it on
    every device).

  Raises:
    ValueError: ``axes`` empty, repeated or out of range.
  """
  axes = _check_axes('rfftn', x.ndim, axes)
  return _fft_along('rfft', x, axes, tuple(x.shape[a] for a in axes))


def irfftn(spectrum: Array, lengths, axes) -> Array:
  """``jnp.fft.irfftn(spectrum, s=lengths, axes=axes)``, partitioned along the other axes.

  Args:
    spectrum: complex half spectrum (the layout of :func:`rfftn`).
    lengths: output length per transformed axis (the real signal's sizes).
    axes: the transformed axes.

  Returns:
    The real signal, ``spectrum.shape`` with ``axes`` of sizes ``lengths``.

  Raises:
    ValueError: ``axes`` empty, repeated or out of range, or ``lengths`` of another count.
  """
  axes = _check_axes('irfftn', spectrum.ndim, axes)
  lengths = tuple(int(n) for n in lengths)
  if len(lengths) != len(axes):
    raise ValueError(f'irfftn: {len(lengths)} lengths for {len(axes)} axes')
  return _fft_along('irfft', spectrum, axes, lengths)


# --------------------------------------------------------------------------------------------
# Radial frequency grids of the FFT: the one place they are computed.
#
# Unit: the frequency index, i.e. cycles across the (unpadded) axis, ``fftfreq(n) * n``; the
# noise radii of :mod:`phipd_jax.noise` (paper Eq. 9) and the spectra of
# :mod:`phipd_jax.evaluation` are distances from DC in it. (The DCT-index grid of Spectral
# Forcing is :func:`normalized_radius`, below.)


def frequency_indices(n: int) -> np.ndarray:
  """Signed frequency of each bin of a length-``n`` FFT, unshifted layout, int64 ``[n]``.

  ``fftfreq(n) * n`` as exact integers: ``0, 1, ..., ceil(n / 2) - 1, -(n // 2), ..., -1``
  (cycles across the axis). ``np.fft.fftshift`` of it is ``arange(n) - n // 2``.
  """
  return (np.arange(n) + n // 2) % n - n // 2


def frequency_distance(shape: Sequence[int], axes: Sequence[int], half: bool = False) -> Array:
  """Distance from DC of every FFT bin, in frequency-index units (unshifted FFT layout).

  The radius grid of the FSS mask (phi-PD paper Eq. 9). Per axis the index is
  ``jnp.fft.fftfreq(n, float32) * n``, which in float32 is one ulp off the integer for many
  ``n`` (see :func:`frequency_indices` for the exact integers); kept so that every noise draw
  stays bit for bit what it was.

  Args:
    shape: full array shape, e.g. ``[B, H, W, C]``.
    axes: the FFT axes (non-negative).
    half: the ``rfftn`` layout: the last FFT axis holds ``n // 2 + 1`` non-negative frequencies.

  Returns:
    float32 array with the (half-)spectrum length on each axis in ``axes`` and 1 elsewhere, so it
    broadcasts against the spectrum; entry = ``sqrt(sum_a (fftfreq(n_a) * n_a)^2)``.
  """
  squared = jnp.zeros([1] * len(shape), jnp.float32)
  for axis in axes:
    n = shape[axis]
    if half and axis == axes[-1]:
      index = jnp.arange(n // 2 + 1, dtype=jnp.float32)
    else:
      index = jnp.fft.fftfreq(n, dtype=jnp.float32) * n
    grid_shape = [1] * len(shape)
    grid_shape[axis] = index.shape[0]
    squared = squared + jnp.reshape(index, grid_shape) ** 2
  return jnp.sqrt(squared)


def radius_bins(height: int, width: int) -> np.ndarray:
  """Integer radius ``round(sqrt(u^2 + v^2))`` of each unshifted ``fft2`` bin, int32 ``[H, W]``.

  ``u``, ``v``: :func:`frequency_indices` of ``H`` and ``W`` (cycles per image). The bins of
  :func:`phipd_jax.evaluation.spectra.radial_power_spectrum`.
  """
  u, v = frequency_indices(height), frequency_indices(width)
  return np.rint(np.sqrt(u[:, None] ** 2 + v[None, :] ** 2)).astype(np.int32)


def released_ovg_radius_bins(height: int, width: int) -> np.ndarray:
  """The released OVG code's radial bins (``nicoboou/ovg``; kept for parity), int64 ``[H, W]``.

  On the ``fftshift``-ed grid, ``r = floor(sqrt((i - H // 2)^2 + (j - W // 2)^2))`` for row ``i``
  and column ``j``: the floor, not the rounding of :func:`radius_bins`, of the same distance
  (``i - H // 2`` is ``fftshift(frequency_indices(H))[i]``). The bins of
  :func:`phipd_jax.evaluation.collapse.radial_log_amplitude`.
  """
  u = np.fft.fftshift(frequency_indices(height))
  v = np.fft.fftshift(frequency_indices(width))
  return np.sqrt(u[:, None] ** 2 + v[None, :] ** 2).astype(np.int64)


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
  """Spectral Forcing ``SF_t(z) = D^T (M_t * (D z D^T)) D`` of a noisy input (the released ``model_jit.py``).

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


# --------------------------------------------------------------------------------------------
# Haar wavelets (Latent Wavelet Diffusion)
# --------------------------------------------------------------------------------------------
# Source: Sigillo, He, Comminiello, *Latent Wavelet Diffusion for Ultra-High-Resolution Image
# Synthesis*, arXiv:2506.00433 (ICLR 2026), Sec. 3.2, Eqs. 2-3 and App. A.1, and its released
# ``compute_wavelet_attention`` (``LuigiSigillo/LatentWaveletDiffusion``). The mask and the
# masked loss built on this map live in :mod:`phipd_jax.diffusion.lwd`.

LWD_MINMAX_EPS = 1e-8  # The released min-max normalisation's epsilon.


def haar_dwt2(z: Array) -> tuple[Array, Array, Array, Array]:
  """Single-level orthonormal 2-D Haar DWT per channel, ``[B, H, W, C]`` -> ``(LL, LH, HL, HH)``.

  Each non-overlapping 2x2 block ``[[a, b], [c, d]]`` (``a`` top-left, ``b`` top-right, ``c``
  bottom-left, ``d`` bottom-right; rows index ``H``, columns ``W``) gives one coefficient per band:

  * ``LL = (a + b + c + d) / 2``: approximation (low-pass along both axes).
  * ``LH = (a + b - c - d) / 2``: **horizontal** detail (top row minus bottom row: low-pass along
    ``W``, high-pass along ``H``; responds to horizontal edges).
  * ``HL = (a - b + c - d) / 2``: **vertical** detail (left column minus right column).
  * ``HH = (a - b - c + d) / 2``: diagonal detail.

  Band names and order follow ``pytorch_wavelets.DWTForward(J=1, wave='haar')`` (``yh[0]``
  stacks LH (horizontal), HL (vertical), HH (diagonal)), which the LWD paper uses. Relative to
  PyWavelets, ``pywt.dwt2(x, 'haar', mode='zero')`` returns ``(cA, (cH, cV, cD))`` =
  ``(LL, LH, HL, HH)`` with **identical signs** (its Haar high-pass gives ``(x0 - x1) / sqrt 2``
  on a pair). The taps are orthonormal, so ``sum LL^2 + LH^2 + HL^2 + HH^2 = sum z^2`` for
  even sizes, and ``LL`` of a constant image is twice its value.

  Odd sizes: one zero row (column) is appended at the bottom (right), as in the ``'zero'``
  padding mode of pytorch_wavelets and PyWavelets, so each band is ``ceil(H/2) x ceil(W/2)``.
  The padded border therefore has detail energy even for a constant input.

  Args:
    z: ``[B, H, W, C]``, any float dtype.

  Returns:
    Four arrays ``[B, ceil(H/2), ceil(W/2), C]`` in float32 (``z`` is cast first).

  Raises:
    ValueError: ``z`` is not 4-D.
  """
  if z.ndim != 4:
    raise ValueError(f'haar_dwt2: z must be [B, H, W, C], got shape {z.shape}')
  batch, height, width, channels = z.shape
  z = jnp.pad(z.astype(jnp.float32), ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
  blocks = z.reshape(batch, (height + 1) // 2, 2, (width + 1) // 2, 2, channels)
  a, b = blocks[:, :, 0, :, 0], blocks[:, :, 0, :, 1]
  c, d = blocks[:, :, 1, :, 0], blocks[:, :, 1, :, 1]
  top, bottom = a + b, c + d  # Low-pass along W of each row.
  top_diff, bottom_diff = a - b, c - d  # High-pass along W of each row.
  return (0.5 * (top + bottom), 0.5 * (top - bottom), 0.5 * (top_diff + bottom_diff),
          0.5 * (top_diff - bottom_diff))


def _half_pixel_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch ``align_corners=False`` source indices ``(i0, i1)`` and weight of ``i1``."""
  scale = in_size / out_size
  src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  return i0, i1, (src - i0).astype(np.float32)


def upsample_bilinear_half_pixel(e: Array, height: int, width: int) -> Array:
  """Bilinear resize of ``e`` ``[B, h, w]`` to ``[B, height, width]`` with half-pixel centres.

  PyTorch ``F.interpolate(..., size=(height, width), mode='bilinear', align_corners=False)``
  semantics, separable along each axis: output pixel ``o`` samples the source coordinate
  ``s = (o + 1/2) (in / out) - 1/2``, clamped below at 0; it blends ``floor(s)`` and
  ``floor(s) + 1`` linearly, and an index past the end is clamped to the last pixel (edge
  replication). For 2x upsampling the interior weights are 1/4 and 3/4. Computed as two
  gathers and a lerp in float32 (no matmul, so no reduced-precision matmul on accelerators).

  Args:
    e: ``[B, h, w]``, any float dtype.
    height, width: output size (any positive integers; typically ``2h`` / ``2h - 1``).

  Returns:
    float32 ``[B, height, width]``.

  Raises:
    ValueError: ``e`` not 3-D or a non-positive output size.
  """
  if e.ndim != 3:
    raise ValueError(f'upsample_bilinear_half_pixel: e must be [B, h, w], got shape {e.shape}')
  if height < 1 or width < 1:
    raise ValueError(f'upsample_bilinear_half_pixel: size ({height}, {width}) must be positive')
  e = e.astype(jnp.float32)
  i0, i1, lam = _half_pixel_taps(e.shape[1], int(height))
  lam = jnp.asarray(lam)[None, :, None]
  e = (1.0 - lam) * jnp.take(e, i0, axis=1) + lam * jnp.take(e, i1, axis=1)
  i0, i1, lam = _half_pixel_taps(e.shape[2], int(width))
  lam = jnp.asarray(lam)[None, None, :]
  return (1.0 - lam) * jnp.take(e, i0, axis=2) + lam * jnp.take(e, i1, axis=2)


RELEASED_LWD_CHANNELS = 3  # The released compute_wavelet_attention reads latent channels 0-2.


def wavelet_energy_map(z_noisy: Array, channels: str = 'all') -> Array:
  """LWD wavelet saliency map ``A`` in ``[0, 1]`` of a **noisy** latent, float32 ``[B, H, W]``.

  LWD paper Eqs. 2-3 (App. A.1): a single-level Haar DWT per channel (:func:`haar_dwt2`), the
  channel-mean detail energy ``E = mean_c (LH^2 + HL^2 + HH^2)`` at ``ceil(H/2) x ceil(W/2)``,
  bilinear upsampling to ``(H, W)`` with half-pixel centres
  (:func:`upsample_bilinear_half_pixel`), then per-sample min-max over space:
  ``A = (E - min E) / (max E - min E + 1e-8)``.

  **Pass the noisy latent** ``z_t`` that the network sees (the released trainer passes
  ``noisy_model_input``), not the clean ``z_0``: computing it from ``z_0`` is a known pitfall.
  The map carries **no gradient** (``jax.lax.stop_gradient``; it only selects which positions are
  supervised). Because of the min-max step, the Haar normalisation and any global positive
  scale of ``z`` cancel (up to the 1e-8 epsilon). A constant latent of even ``H`` and ``W``
  gives ``A = 0``; with odd sizes the zero-padded border carries energy (as in the reference).

  ``channels='released'`` reproduces the released ``compute_wavelet_attention``: it indexes
  pytorch_wavelets' ``[B, C, 3, h, w]`` detail tensor on the channel axis as if it were the band
  axis, so its three "bands" are latent channels 0, 1 and 2 (all three bands each), and the
  energy is that of channels 0-2 only (the band mean and channel sum are constant factors that
  the min-max step cancels). An independent audit measured masks that differ on 13-16 % of
  positions with 4 latent channels and on 18-31 % with 16. ``'all'`` (default) is the paper's
  Eq. 2 over every channel.

  Args:
    z_noisy: noisy latent ``[B, H, W, C]``, any float dtype (computed in float32).
    channels: ``'all'`` (paper Eq. 2) or ``'released'`` (channels 0-2, the released code).

  Returns:
    float32 ``[B, H, W]``, min 0 and (for non-constant energy) max 1 per sample.

  Raises:
    ValueError: ``z_noisy`` is not 4-D, or an unknown ``channels``.
  """
  if z_noisy.ndim != 4:
    raise ValueError(f'wavelet_energy_map: z_noisy must be [B, H, W, C], got {z_noisy.shape}')
  if channels not in ('all', 'released'):
    raise ValueError(f"wavelet_energy_map: channels={channels!r} must be 'all' or 'released'")
  if channels == 'released':
    z_noisy = z_noisy[..., :RELEASED_LWD_CHANNELS]
  z = jax.lax.stop_gradient(z_noisy.astype(jnp.float32))
  _, lh, hl, hh = haar_dwt2(z)
  energy = jnp.mean(jnp.square(lh) + jnp.square(hl) + jnp.square(hh), axis=-1)
  energy = upsample_bilinear_half_pixel(energy, z.shape[1], z.shape[2])
  low = jnp.min(energy, axis=(1, 2), keepdims=True)
  high = jnp.max(energy, axis=(1, 2), keepdims=True)
  return jax.lax.stop_gradient((energy - low) / (high - low + LWD_MINMAX_EPS))
