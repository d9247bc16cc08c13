"""Structured noise for Phase-Preserving Diffusion (phi-PD).

Source: Zeng et al., *NeuralRemaster: Phase-Preserving Diffusion for Structure-Aligned
Generation*, arXiv:2512.05106 (v3), Eqs. 4-11 and 20; the released implementation
`zengxianyu/structured-noise` (`generate_structured_noise_batch_vectorized`); where the two
differ, ``mode='paper'`` follows the equations and ``mode='reference'`` the released code.

Every constructor comes in two forms:

* a deterministic core, ``*_from_noise(x0, noise, ...)``, that takes the base Gaussian sample
  explicitly (tests compare it with an independent NumPy replica, and a user can reuse one draw
  across radii); and
* a keyed wrapper, ``fn(key, x0, ...)``, with the library's noise-function signature
  ``noise_fn(key, x0) -> eps``, ``eps.shape == x0.shape``, that draws the sample from ``key``.

Conventions:

* Images are ``[B, H, W, C]`` and video ``[B, T, H, W, C]``. The FFT runs over ``axes``, by
  default the two spatial axes ``(-3, -2)`` (per frame for video, as in the paper, Sec. 3.4);
  ``axes=(-4, -3, -2)`` adds time. Each (sample, channel) is transformed separately.
* FFTs run in float32/complex64 whatever the input dtype; the output has the input dtype.
* **Radius units.** ``radius`` and ``edge_width`` are distances from DC in frequency-index units
  of the *unpadded* grid (``fftfreq(n) * n``, i.e. cycles across the image;
  :func:`phipd_jax.spectral.frequency_distance`), the paper's Eq. 9 unit. The released code
  measures them on a grid mirror-padded by ``pad_factor``; :func:`to_padded_units` is the one
  place that converts.
* ``radius=None`` or ``+inf`` keeps the input phase everywhere (mask ``M == 1``), ``-inf`` keeps
  it nowhere (``M == 0``: exactly the Gaussian sample in ``'paper'`` mode). ``radius=0`` is *not*
  Gaussian noise: the DC bin keeps the input phase and the Gaussian edge keeps some around it.
* The fast CPU forms of ``jnp.angle``, ``sin``/``cos``, ``jax.random.normal`` and
  ``jnp.quantile`` that the draws use live in :mod:`phipd_jax.noise_kernels`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import spectral
from phipd_jax.noise_kernels import (_angle, _computed_once, _linear_quantile_position,
                                     _polynomial_angle, _quantile, _sincos, standard_normal)

Array = jax.Array
Radius = Union[None, float, Array]

MAGNITUDES = ('gaussian', 'rayleigh')
MODES = ('paper', 'reference')
SPATIAL_AXES = (-3, -2)

# Constants of the released implementation (structured_noise_pytorch.py).
REFERENCE_PAD_FACTOR = 1.5
REFERENCE_QUANTILE = 0.95
REFERENCE_OUTLIER_THRESHOLD = 5.0


# ---------------------------------------------------------------------------------------------
# The FSS mask (its distance grid: spectral.frequency_distance).


def _normalise_axes(ndim: int, axes: Optional[Sequence[int]]) -> tuple[int, ...]:
  axes = SPATIAL_AXES if axes is None else tuple(axes)
  if ndim < 3:
    raise ValueError(f'noise: x0 must have at least 3 dims ([B, ..., C]), got ndim={ndim}')
  normalised = tuple(sorted(a % ndim for a in axes))
  if len(set(normalised)) != len(normalised) or 0 in normalised or (ndim - 1) in normalised:
    raise ValueError(
        f'noise: axes={axes} must be distinct and exclude the batch (0) and channel (-1) axes')
  return normalised


def _per_sample(value: Array, ndim: int, batch: Optional[int] = None) -> Array:
  """Scalar or ``[B]`` value -> broadcastable ``[B or 1, 1, ..., 1]``."""
  value = jnp.asarray(value, jnp.float32)
  if value.ndim > 1 or (batch is not None and value.ndim == 1 and value.shape[0] not in (1, batch)):
    raise ValueError(f'noise: radius must be a scalar or a [B] vector with B={batch}, got shape '
                     f'{value.shape}')
  return jnp.reshape(value, (-1,) + (1,) * (ndim - 1))


def check_radius(radius: Radius, batch: Optional[int] = None):
  """Raises ``ValueError`` for a concrete radius below 0 (``-inf`` allowed: no phase kept) or a
  radius vector whose length is not the batch size. Traced radii pass unchecked."""
  if radius is None or isinstance(radius, jax.core.Tracer):
    return
  value = np.asarray(radius, np.float32)
  if value.ndim > 1 or (batch is not None and value.ndim == 1 and value.shape[0] not in (1, batch)):
    raise ValueError(f'noise: radius must be a scalar or a [B] vector with B={batch}, got shape '
                     f'{value.shape}')
  if np.any(np.isnan(value)) or np.any(value[np.isfinite(value)] < 0):
    raise ValueError(f'noise: radius={radius} must be >= 0 (frequency-index units; inf keeps the '
                     'whole phase)')


def fss_mask(distance: Array, radius: Radius, edge_width: float) -> Array:
  """Gaussian-edged low-pass mask of FSS noise (paper Eq. 9).

  ``M = 1`` for ``d <= r`` and ``exp(-(d - r)^2 / (2 w^2))`` beyond, so ``M(r + w) = e^{-1/2}``.

  Args:
    distance: distance from DC of each bin (frequency-index units), any shape.
    radius: cutoff ``r`` broadcastable against ``distance``; ``None``/``+inf`` -> ``M == 1``,
      ``-inf`` -> ``M == 0``.
    edge_width: transition width ``w`` (> 0), same units as ``distance``.

  Returns:
    float32 mask in ``[0, 1]`` of the broadcast shape.
  """
  if radius is None:
    return jnp.ones_like(distance)
  radius = jnp.asarray(radius, jnp.float32)
  # With radius = -inf, (d - r) = +inf and exp(-inf) = 0; with +inf the first branch wins.
  outside = jnp.exp(-jnp.square(distance - radius) / (2.0 * edge_width**2))
  return jnp.where(distance <= radius, 1.0, outside)


def to_padded_units(value: Union[float, Array], size: int, padded_size: int):
  """Converts a radius or width from unpadded to padded-grid frequency-index units.

  The released code measures ``r`` on a grid mirror-padded from ``size`` to ``padded_size``
  samples, where an index ``k`` means ``k / padded_size`` cycles per pixel; the same number of
  cycles per pixel is ``k * size / padded_size`` on the unpadded grid. So
  ``r_padded = r_library * padded_size / size`` (x1.5 for ``pad_factor = 1.5``; equivalently,
  Sec. 4, quotes the inverse, ``r_library ~= 2/3 r_reference``). This is the only place the
  conversion lives.
  """
  return value * (padded_size / size)


def reference_padding(size: int, pad_factor: float = REFERENCE_PAD_FACTOR) -> int:
  """Total mirror padding of one axis in the released code: ``int(size * (f - 1))`` made even."""
  total = int(size * (pad_factor - 1.0))
  return total - total % 2


# ---------------------------------------------------------------------------------------------
# Magnitudes.


def _negate_frequency(x: Array, axes: Sequence[int]) -> Array:
  """``y[k] = x[-k mod n]`` on every axis in ``axes`` (the bin of the conjugate frequency)."""
  for axis in axes:
    x = jnp.roll(jnp.flip(x, axis), 1, axis)
  return x


def _self_conjugate(shape: Sequence[int], axes: Sequence[int], half: bool = False) -> Array:
  """True at the bins with ``k == -k mod n`` on every FFT axis (DC and Nyquist corners).

  ``shape`` is the signal's shape; ``half`` gives the mask in the ``rfftn`` layout.
  """
  mask = jnp.ones([1] * len(shape), bool)
  for axis in axes:
    n = shape[axis]
    k = jnp.arange(n // 2 + 1 if half and axis == axes[-1] else n)
    grid_shape = [1] * len(shape)
    grid_shape[axis] = k.shape[0]
    mask = mask & jnp.reshape((k == 0) | (2 * k == n), grid_shape)
  return mask


def rayleigh_magnitude(magnitude_noise: Array, axes: Sequence[int]) -> Array:
  """Hermitian-symmetric Rayleigh magnitudes ``A = sqrt(-N ln U)`` (paper Eq. 8), ``N = prod n_a``.

  Deterministic in a standard-normal sample ``g`` (shape of the spectrum): ``g`` is first made
  symmetric under ``k -> -k`` as ``(g[k] + g[-k]) / sqrt(2)`` (still standard normal; self-conjugate
  bins keep ``g[k]``), then mapped to ``U = Phi(g)`` by the normal CDF (the probability-integral
  transform), so ``-ln U = -log_ndtr(g)`` is exact and never overflows. Symmetric magnitudes keep
  the output real, which the released code's independent draws do not.
  ``E[A^2] = N``, the second moment of ``|F{eps}|`` for unit white noise.

  Args:
    magnitude_noise: float32 standard-normal sample, shape of the array being transformed.
    axes: FFT axes.

  Returns:
    float32 magnitudes, same shape.
  """
  g = magnitude_noise.astype(jnp.float32)
  symmetric = jnp.where(
      _self_conjugate(g.shape, axes), g, (g + _negate_frequency(g, axes)) / math.sqrt(2.0))
  n = math.prod(g.shape[a] for a in axes)
  return jnp.sqrt(-n * jax.scipy.special.log_ndtr(symmetric))


def spectral_phase(spectrum: Array, axes: Sequence[int],
                   signal_shape: Optional[Sequence[int]] = None,
                   angle: Callable[[Array], Array] = _angle) -> Array:
  """Principal angle of an FFT of real data, with the self-conjugate bins made canonical.

  The DC and Nyquist bins of a real signal are exactly real, so their angle is 0 or pi, but the
  sign of their (zero) imaginary part, and so +pi or -pi, depends on the FFT backend. The
  released code's one-sided phase clip and linear angle blend are not invariant to that sign;
  this sets those bins to exactly 0 (real part >= 0) or +pi, so results do not depend on the
  backend. Elsewhere it is ``jnp.angle`` (computed by ``angle``). ``signal_shape`` (the real
  signal's shape) marks an ``rfftn`` half spectrum.
  """
  half = signal_shape is not None
  canonical = jnp.where(spectrum.real >= 0, 0.0, jnp.pi).astype(jnp.float32)
  self_conjugate = _self_conjugate(signal_shape if half else spectrum.shape, axes, half)
  return jnp.where(self_conjugate, canonical, angle(spectrum))


# ---------------------------------------------------------------------------------------------
# Deterministic cores.


def gaussian(key: Array, x0: Array) -> Array:
  """Standard Gaussian noise ``eps ~ N(0, I)`` of the shape and dtype of ``x0`` (any shape):
  ``jax.random.normal(key, x0.shape)`` (drawn by
  :func:`phipd_jax.noise_kernels.standard_normal`)."""
  return standard_normal(key, x0.shape).astype(x0.dtype)


def _check_inputs(x0: Array, noise: Array, magnitude: str, magnitude_noise, edge_width, mode):
  if x0.shape != noise.shape:
    raise ValueError(f'noise: noise.shape {noise.shape} must equal x0.shape {x0.shape}')
  if magnitude not in MAGNITUDES:
    raise ValueError(f'noise: magnitude={magnitude!r} must be one of {MAGNITUDES}')
  if magnitude == 'rayleigh':
    if magnitude_noise is None:
      raise ValueError("noise: magnitude='rayleigh' needs magnitude_noise (a second N(0, I) draw)")
    if magnitude_noise.shape != x0.shape:
      raise ValueError(
          f'noise: magnitude_noise.shape {magnitude_noise.shape} must equal x0.shape {x0.shape}')
  if mode not in MODES:
    raise ValueError(f'noise: mode={mode!r} must be one of {MODES}')
  if not edge_width > 0:
    raise ValueError(f'noise: edge_width={edge_width} must be > 0 (frequency-index units)')


def fss_from_noise(
    x0: Array,
    noise: Array,
    radius: Radius,
    *,
    edge_width: float = 2.0,
    mode: str = 'paper',
    magnitude: str = 'gaussian',
    magnitude_noise: Optional[Array] = None,
    axes: Optional[Sequence[int]] = None,
    radius_units: str = 'library',
    clip: bool = True,
    per_sample_quantiles: bool = False,
    pad_factor: Optional[float] = None,
) -> Array:
  """Frequency-Selective Structured noise from an explicit Gaussian sample (paper Eqs. 9-11).

  ``F{eps_hat} = A * exp(j [phase(F{x0}) * M + phase(F{noise}) * (1 - M)])`` with
  ``A = |F{noise}|`` (``'gaussian'``) or Rayleigh (``'rayleigh'``), ``M`` the Gaussian-edged
  low-pass mask of cutoff ``radius``; ``eps_hat = Re F^-1{...}``. Inside the cutoff the phase of
  ``eps_hat`` equals the phase of ``x0``; outside it is the phase of ``noise``.

  Args:
    x0: clean images ``[B, H, W, C]`` or video ``[B, T, H, W, C]``, any float dtype (typically
      in ``[-1, 1]``; only its phase is used).
    noise: base sample ``N(0, I)``, same shape.
    radius: cutoff ``r``: scalar or per-sample ``[B]``, in unpadded frequency-index units
      (distance from DC). ``None``/``inf``: phase kept everywhere; ``-inf``: nowhere.
    edge_width: Gaussian edge width ``w`` of the mask (paper sigma = 2), same units.
    mode: ``'paper'``: the clean equations (no padding, no clips). ``'reference'``: the released
      implementation step by step (``structured_noise_pytorch.py``): reflect padding by ``pad_factor``, centred
      spectrum, whole-tensor 95% quantile clips of the input phase and of the noise magnitude,
      linear angle blend, real part, ``|y| > 5`` replaced by the padded noise, crop. Spatial 2-D
      FFT only, Gaussian magnitude only (the released ``'cdf'`` path is never used with an
      explicit noise).
    magnitude: ``'gaussian'`` (``|F{noise}|``) or ``'rayleigh'`` (see :func:`rayleigh_magnitude`).
    magnitude_noise: second ``N(0, I)`` sample, needed for ``'rayleigh'``.
    axes: FFT axes, default the spatial ``(-3, -2)``.
    radius_units: ``'library'`` (unpadded units, converted in reference mode by
      :func:`to_padded_units`) or ``'padded'`` (reference mode only: upstream numbers as-is).
    clip: reference mode: apply the two quantile clips (``False`` for tests).
    per_sample_quantiles: reference mode: quantiles per sample instead of over the whole batch, a
      documented deviation that makes each sample independent of the rest of the batch.
    pad_factor: mirror padding before the FFT, as a size factor. Reference mode: default 1.5
      (upstream). Paper mode: default 1 (none, the equations as written); 1.5 is an option:
      without padding the FFT wraps around the image, and on 32-px photos the corner pixels get
      1.6-2.6x the mean noise variance, while mirror padding brings them to 1.07-1.35x (measured
      on real photos). The radius stays in unpadded units either way.

  Returns:
    ``eps_hat`` with the shape and dtype of ``x0``.

  Raises:
    ValueError: mismatched shapes, unknown mode/magnitude, ``edge_width <= 0``, axes that include
      batch or channel, or a reference-mode request it cannot honour.
  """
  _check_inputs(x0, noise, magnitude, magnitude_noise, edge_width, mode)
  check_radius(radius, x0.shape[0])
  axes = _normalise_axes(x0.ndim, axes)
  if radius_units not in ('library', 'padded'):
    raise ValueError(f"noise: radius_units={radius_units!r} must be 'library' or 'padded'")
  if mode == 'reference':
    return _fss_reference(x0, noise, radius, edge_width, axes, radius_units, clip,
                          per_sample_quantiles,
                          REFERENCE_PAD_FACTOR if pad_factor is None else pad_factor, magnitude)
  if radius_units != 'library':
    raise ValueError("noise: radius_units='padded' only applies to mode='reference'")
  if pad_factor is not None and pad_factor != 1.0:
    return _fss_paper_padded(x0, noise, radius, edge_width, axes, magnitude, magnitude_noise,
                             pad_factor)

  # Real input: the spectrum is Hermitian, so the half spectrum of rfftn holds everything, and
  # the blended spectrum stays Hermitian (symmetric magnitude, antisymmetric phase), so irfftn
  # returns exactly Re F^-1 of the full-spectrum equations at half the cost.
  x = x0.astype(jnp.float32)
  sizes = [x.shape[a] for a in axes]
  # spectral.rfftn / irfftn: jnp.fft's transforms, kept on each device's shard under a mesh.
  spectrum_x = spectral.rfftn(x, axes)
  spectrum_noise = spectral.rfftn(noise.astype(jnp.float32), axes)
  if magnitude == 'gaussian':
    amplitude = jnp.abs(spectrum_noise)
  else:
    amplitude = jax.lax.slice_in_dim(rayleigh_magnitude(magnitude_noise, axes), 0,
                                     sizes[-1] // 2 + 1, axis=axes[-1])
  phase = spectral_phase(spectrum_x, axes, x.shape)
  if radius is not None:
    distance = spectral.frequency_distance(x.shape, axes, half=True)
    mask = fss_mask(distance, _per_sample(radius, x.ndim), edge_width)
    phase = mask * phase + (1.0 - mask) * spectral_phase(spectrum_noise, axes, x.shape)
  spectrum = jax.lax.complex(amplitude * jnp.cos(phase), amplitude * jnp.sin(phase))
  eps = spectral.irfftn(spectrum, sizes, axes)
  return eps.astype(x0.dtype)


def _fss_paper_padded(x0, noise, radius, edge_width, axes, magnitude, magnitude_noise,
                      pad_factor):
  """Paper-mode FSS on a mirror-padded grid, cropped back (radius converted to padded units)."""
  if not pad_factor >= 1.0:
    raise ValueError(f'noise: pad_factor={pad_factor} must be >= 1')
  pad = [(0, 0)] * x0.ndim
  for axis in axes:
    total = reference_padding(x0.shape[axis], pad_factor)
    pad[axis] = (total // 2, total // 2)
  padded = lambda a: jnp.pad(a.astype(jnp.float32), pad, mode='reflect')
  height, padded_height = x0.shape[axes[0]], x0.shape[axes[0]] + 2 * pad[axes[0]][0]
  if radius is not None:
    radius = to_padded_units(jnp.asarray(radius, jnp.float32), height, padded_height)
    edge_width = to_padded_units(edge_width, height, padded_height)
  eps = fss_from_noise(padded(x0), padded(noise), radius, edge_width=edge_width,
                       magnitude=magnitude, axes=axes,
                       magnitude_noise=None if magnitude_noise is None else padded(magnitude_noise))
  for axis in axes:
    eps = jax.lax.slice_in_dim(eps, pad[axis][0], pad[axis][0] + x0.shape[axis], axis=axis)
  return eps.astype(x0.dtype)


def phase_preserving_from_noise(
    x0: Array,
    noise: Array,
    magnitude: str = 'gaussian',
    *,
    magnitude_noise: Optional[Array] = None,
    axes: Optional[Sequence[int]] = None,
) -> Array:
  """Phase-preserving noise (paper Eqs. 5-8): the phase of ``x0`` with a random magnitude.

  ``eps_hat = Re F^-1{A * exp(j phase(F{x0}))}``, ``A = |F{noise}|`` or Rayleigh. Equals
  :func:`fss_from_noise` with ``radius=None`` in paper mode. Shapes and arguments as there.
  """
  return fss_from_noise(x0, noise, None, magnitude=magnitude, magnitude_noise=magnitude_noise,
                        axes=axes)


def _reflect_indices(size: int, pad: int) -> np.ndarray:
  """Source index of each sample of an axis of ``size`` mirror-padded by ``pad`` on both sides
  (``jnp.pad(mode='reflect')``, edge sample not repeated). Indexing with them is cheaper than
  ``jnp.pad`` on XLA:CPU: 6.3 ms against 23 ms at 16x256x256x3, transpose to channels first
  included."""
  index = np.arange(-pad, size + pad)
  if size == 1:
    return np.zeros_like(index)
  index = np.mod(index, 2 * (size - 1))
  return np.where(index >= size, 2 * (size - 1) - index, index)


def _full_spectrum_quantile(half: Array, width: int, per_sample: bool, odd: bool) -> Array:
  """The 95 % quantile of a real signal's full ``fft2`` spectrum quantity, from its half.

  The full spectrum holds each bin of the ``rfft2`` half plus the mirror ``-k`` of each bin in the
  middle columns ``0 < j < width / 2``, whose value is the same (a magnitude) or, with ``odd``,
  negated (a phase; the self-conjugate bins lie in the edge columns). Magnitudes: the middle
  columns count twice. Phases: a pair ``(t, -t)`` is ``|t|`` plus ``-|t| <= 0``; when the rank
  lies past every negative value of the edge columns (always, but for padded widths of 1-2 or a
  handful of elements, where the mirror values are built explicitly), the 95 % quantile is
  ``>= 0`` and the ``-|t|`` only shift the rank. Either way the result is ``jnp.quantile`` of the
  full spectrum (whose mirror bins agree with the half's up to float rounding), from half the
  data.

  Args:
    half: float32 ``[B, ..., width // 2 + 1]``, the ``rfft2`` layout.
    width: the signal length along the last axis.
    per_sample: one quantile per batch entry (else one for the whole tensor).
    odd: the quantity is antisymmetric under ``k -> -k`` (phase) rather than symmetric.

  Returns:
    float32 ``[B or 1, 1, ..., 1]``.
  """
  rows = half.shape[0] if per_sample else 1
  columns = np.arange(half.shape[-1])
  middle = (columns > 0) & (2 * columns != width)
  per_row = half.size // rows
  n_middle = per_row // half.shape[-1] * int(middle.sum())
  n_edge = per_row - n_middle
  count, values = per_row + n_middle, half.reshape((rows, -1) + half.shape[-1:])
  low, _, _, _ = _linear_quantile_position(count, REFERENCE_QUANTILE)
  if not odd:  # The middle columns twice: all of the half twice, less the edge columns once.
    edge = values[..., np.flatnonzero(~middle)]
    q = _quantile([(values, 2), (edge, -1)], REFERENCE_QUANTILE)
  elif low - n_middle >= n_edge:  # Past every negative value of the edge columns.
    q = _quantile(jnp.where(middle, jnp.abs(values), values), REFERENCE_QUANTILE, offset=n_middle)
  else:  # Tiny widths: the mirror values explicitly.
    full = jnp.concatenate([values.reshape(rows, -1), -values[..., middle].reshape(rows, -1)], 1)
    q = _quantile(full, REFERENCE_QUANTILE)
  return jnp.reshape(q, (rows,) + (1,) * (half.ndim - 1))


def _fss_reference(x0, noise, radius, edge_width, axes, radius_units, clip, per_sample_quantiles,
                   pad_factor, magnitude):
  """The released implementation (``structured_noise_pytorch.py``), step by step.

  Computed on ``rfft2`` half spectra, channels first, with the same result:

  * The released code fftshifts, builds the mask around ``(H_p // 2, W_p // 2)`` and unshifts
    before the inverse FFT. A shift is a permutation: the mask values per bin, the quantiles and
    the result are identical in the unshifted layout.
  * Its quantiles are over the full spectrum: :func:`_full_spectrum_quantile` gets them from the
    half exactly.
  * It keeps ``Re ifft2(S)``, which is ``ifft2`` of the Hermitian part
    ``H(k) = (S(k) + conj(S(-k))) / 2``, so ``irfft2`` of the half of ``H`` gives it. With
    ``S = A exp(j phi)``, ``A(-k) = A(k)``, ``theta(-k) = -theta(k)`` for the image and noise
    phases and the clip ``min(theta_x, q)`` (``q >= 0``):
    ``H = A cos(m (theta_x - c) / 2) exp(j [m (theta_x + c) / 2 + (1 - m) theta_n])`` with
    ``c = clip(theta_x, -q, q)``; at the self-conjugate bins ``H = A cos(phi)``, real.
  * The outlier replacement ``|y| > 5 -> noise`` is elementwise, so it runs after the crop, where
    the padded noise is the noise itself.
  """
  if axes != (x0.ndim - 3, x0.ndim - 2):
    raise ValueError("noise: mode='reference' is a per-frame 2-D FFT; axes must be (-3, -2)")
  if magnitude != 'gaussian':
    raise ValueError("noise: mode='reference' has only the Gaussian-derived magnitude")
  ndim = x0.ndim
  height, width = x0.shape[axes[0]], x0.shape[axes[1]]
  pad_h, pad_w = reference_padding(height, pad_factor), reference_padding(width, pad_factor)
  padded_h, padded_w = height + pad_h, width + pad_w
  # Channels first ([B, (T,) C, H, W]): the FFT axes are the minor ones, no transposes around them.
  channels_first = tuple(range(ndim - 3)) + (ndim - 1, ndim - 3, ndim - 2)
  rows, columns = _reflect_indices(height, pad_h // 2), _reflect_indices(width, pad_w // 2)
  padded = lambda a: jnp.transpose(a.astype(jnp.float32), channels_first)[..., rows, :][
      ..., columns]
  shape = (x0.shape[0],) + tuple(x0.shape[a] for a in channels_first[1:-2]) + (padded_h, padded_w)
  fft_axes = (ndim - 2, ndim - 1)

  if radius is None:
    mask = jnp.ones((), jnp.float32)
  else:
    radius = _per_sample(radius, ndim)
    if radius_units == 'library':
      radius = to_padded_units(radius, height, padded_h)
      edge_width = to_padded_units(edge_width, height, padded_h)
    radius = jnp.minimum(radius, min(padded_h / 2, padded_w / 2))
    mask = fss_mask(spectral.frequency_distance(shape, fft_axes, half=True), radius, edge_width)

  noise = noise.astype(jnp.float32)
  spectrum_x = spectral.rfftn(padded(x0), fft_axes)
  spectrum_noise = spectral.rfftn(padded(noise), fft_axes)
  phase_x = spectral_phase(spectrum_x, fft_axes, shape, _polynomial_angle)
  phase_noise = spectral_phase(spectrum_noise, fft_axes, shape, _polynomial_angle)
  amplitude = jnp.abs(spectrum_noise)
  # Computed once each: fused, XLA:CPU recomputed the angles in every quantile pass and in the
  # formula below (1.05-1.08x for the whole draw at 64 and 256 px).
  phase_x, amplitude, phase_noise = _computed_once(lambda a: a, (phase_x, amplitude, phase_noise))
  clipped = phase_x
  if clip:  # One-sided clip of the *image* phase, then of the noise magnitude (steps 4 and 6).
    q = _full_spectrum_quantile(phase_x, padded_w, per_sample_quantiles, odd=True)
    clipped = jnp.clip(phase_x, -q, q)
    amplitude = jnp.minimum(
        amplitude, _full_spectrum_quantile(amplitude, padded_w, per_sample_quantiles, odd=False))
  # Self-conjugate bins: phase_x is 0 or pi, clip(phase_x) = min(phase_x, q), and the formula
  # below gives A cos(phi) once phase_x is replaced by its clip there (imaginary part zeroed).
  self_conjugate = _self_conjugate(shape, fft_axes, half=True)
  phase_x = jnp.where(self_conjugate, clipped, phase_x)
  gain = amplitude * _sincos(mask * (phase_x - clipped) / 2)[1]
  sin, cos = _sincos(mask * (phase_x + clipped) / 2 + (1.0 - mask) * phase_noise)
  hermitian = jax.lax.complex(gain * cos, jnp.where(self_conjugate, 0.0, gain * sin))
  y = spectral.irfftn(hermitian, (padded_h, padded_w), fft_axes)
  y = jax.lax.slice_in_dim(y, pad_h // 2, pad_h // 2 + height, axis=ndim - 2)
  y = jax.lax.slice_in_dim(y, pad_w // 2, pad_w // 2 + width, axis=ndim - 1)
  y = jnp.transpose(y, np.argsort(channels_first))
  y = jnp.where(jnp.abs(y) > REFERENCE_OUTLIER_THRESHOLD, noise, y)
  return y.astype(x0.dtype)


# ---------------------------------------------------------------------------------------------
# Keyed wrappers: noise_fn(key, x0, ...) -> eps.


def _draw(key: Array, x0: Array, magnitude: str) -> tuple[Array, Optional[Array]]:
  """The Gaussian sample (exactly :func:`gaussian` of the same key, so SDEdit and phi-PD share
  their base draw), and for Rayleigh a second sample from ``fold_in(key, 1)``."""
  noise = standard_normal(key, x0.shape)
  if magnitude != 'rayleigh':
    return noise, None
  return noise, standard_normal(jax.random.fold_in(key, 1), x0.shape)


def phase_preserving(key: Array, x0: Array, magnitude: str = 'gaussian', *,
                     axes: Optional[Sequence[int]] = None) -> Array:
  """Phase-preserving noise drawn from ``key``; see :func:`phase_preserving_from_noise`.

  ``key`` draws the Gaussian sample (the same draw as :func:`gaussian` with that key);
  ``fold_in(key, 1)`` draws, for Rayleigh only, the standard-normal sample that
  :func:`rayleigh_magnitude` maps to Rayleigh magnitudes.
  """
  noise, magnitude_noise = _draw(key, x0, magnitude)
  return phase_preserving_from_noise(x0, noise, magnitude, magnitude_noise=magnitude_noise,
                                     axes=axes)


def fss(key: Array, x0: Array, radius: Radius, **kwargs: Any) -> Array:
  """FSS noise drawn from ``key``; see :func:`fss_from_noise` for the arguments.

  ``key`` is split as in :func:`phase_preserving`.
  """
  noise, magnitude_noise = _draw(key, x0, kwargs.get('magnitude', 'gaussian'))
  return fss_from_noise(x0, noise, radius, magnitude_noise=magnitude_noise, **kwargs)


def sample_radius(key: Array, shape: Sequence[int], r0: float, rate: float) -> Array:
  """Training cutoff radius ``r = r0 + Exp(rate)`` (paper Eq. 20; paper rate 0.1, mean 10).

  Args:
    key: PRNG key.
    shape: output shape, e.g. ``(B,)`` for one radius per sample.
    r0: minimum cutoff (>= 0), unpadded frequency-index units.
    rate: rate ``lambda`` of the exponential (> 0); the mean of ``r - r0`` is ``1 / rate``.

  Returns:
    float32 radii of ``shape``, all ``>= r0``.

  Raises:
    ValueError: ``r0 < 0`` or ``rate <= 0``.
  """
  if not r0 >= 0:
    raise ValueError(f'noise: r0={r0} must be >= 0 (frequency-index units)')
  if not rate > 0:
    raise ValueError(f'noise: rate={rate} must be > 0')
  return r0 + jax.random.exponential(key, tuple(shape), jnp.float32) / rate


NOISE_KINDS = ('gaussian', 'phase_preserving', 'fss')


def noise_fn(kind: str, *, r0: float = 0.0, rate: float = 0.1, edge_width: float = 2.0,
             mode: str = 'paper', magnitude: str = 'gaussian',
             axes: Optional[Sequence[int]] = None, scale: float = 1.0,
             pad_factor: Optional[float] = None) -> Callable[..., Array]:
  """The one noise factory, used by training and by sampling: ``fn(key, x0, radius=None) -> eps``.

  * ``'gaussian'``: ``eps = scale * N(0, I)`` drawn from ``key`` (``radius`` ignored).
  * ``'phase_preserving'``: the phase of ``x0`` everywhere (paper Eqs. 5-8).
  * ``'fss'``: FSS noise (paper Eqs. 9-11) at ``radius``; with ``radius=None`` (training) one
    radius per sample ``r = r0 + Exp(rate)`` (paper Eq. 20) from ``fold_in(key, 2)``.

  For every kind the base Gaussian sample is ``jax.random.normal(key, x0.shape)``, so with one
  key SDEdit (Gaussian) and phi-PD (FSS) start from the same draw. ``scale`` multiplies the
  noise (JiT's noise scale ``s``; 1 = standard). ``mode``, ``magnitude``, ``edge_width``,
  ``pad_factor`` and ``axes`` are those of :func:`fss_from_noise`, so every noise setting of a
  run reaches both training and sampling.

  Raises:
    ValueError: unknown ``kind`` or out-of-range parameters (checked here, not at trace time).
  """
  if kind not in NOISE_KINDS:
    raise ValueError(f'noise: kind={kind!r} must be one of {NOISE_KINDS}')
  if not scale > 0:
    raise ValueError(f'noise: scale={scale} must be > 0')
  if magnitude not in MAGNITUDES:
    raise ValueError(f'noise: magnitude={magnitude!r} must be one of {MAGNITUDES}')
  if mode not in MODES:
    raise ValueError(f'noise: mode={mode!r} must be one of {MODES}')
  if not edge_width > 0:
    raise ValueError(f'noise: edge_width={edge_width} must be > 0 (frequency-index units)')
  if pad_factor is not None and not pad_factor >= 1:
    raise ValueError(f'noise: pad_factor={pad_factor} must be >= 1')
  sample_radius(jax.random.key(0), (1,), r0, rate)  # Validates r0 and rate now.
  settings = dict(edge_width=edge_width, mode=mode, magnitude=magnitude, axes=axes,
                  pad_factor=pad_factor)

  def draw(key: Array, x0: Array, radius: Radius = None) -> Array:
    if kind == 'gaussian':
      eps = gaussian(key, x0.astype(jnp.float32))
    elif kind == 'phase_preserving':
      eps = fss(key, x0, None, **settings)
    else:
      if radius is None:
        radius = sample_radius(jax.random.fold_in(key, 2), (x0.shape[0],), r0, rate)
      eps = fss(key, x0, radius, **settings)
    return (scale * eps.astype(jnp.float32)).astype(x0.dtype) if scale != 1.0 else eps

  return draw
