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
  of the *unpadded* grid (``fftfreq(n) * n``, i.e. cycles across the image), the paper's Eq. 9
  unit. The released code measures them on a grid mirror-padded by ``pad_factor``;
  :func:`to_padded_units` is the one place that converts.
* ``radius=None`` or ``+inf`` keeps the input phase everywhere (mask ``M == 1``), ``-inf`` keeps
  it nowhere (``M == 0``: exactly the Gaussian sample in ``'paper'`` mode). ``radius=0`` is *not*
  Gaussian noise: the DC bin keeps the input phase and the Gaussian edge keeps some around it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import spectral

Array = jax.Array
Radius = Union[None, float, Array]

NoiseFn = Callable[[Array, Array], Array]

MAGNITUDES = ('gaussian', 'rayleigh')
MODES = ('paper', 'reference')
SPATIAL_AXES = (-3, -2)

# Constants of the released implementation (structured_noise_pytorch.py).
REFERENCE_PAD_FACTOR = 1.5
REFERENCE_QUANTILE = 0.95
REFERENCE_OUTLIER_THRESHOLD = 5.0


# ---------------------------------------------------------------------------------------------
# Frequency grids and the FSS mask.


def _normalise_axes(ndim: int, axes: Optional[Sequence[int]]) -> tuple[int, ...]:
  axes = SPATIAL_AXES if axes is None else tuple(axes)
  if ndim < 3:
    raise ValueError(f'noise: x0 must have at least 3 dims ([B, ..., C]), got ndim={ndim}')
  normalised = tuple(sorted(a % ndim for a in axes))
  if len(set(normalised)) != len(normalised) or 0 in normalised or (ndim - 1) in normalised:
    raise ValueError(
        f'noise: axes={axes} must be distinct and exclude the batch (0) and channel (-1) axes')
  return normalised


def frequency_distance(shape: Sequence[int], axes: Sequence[int], half: bool = False) -> Array:
  """Distance from DC of every FFT bin, in frequency-index units (unshifted FFT layout).

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


def _angle(z: Array) -> Array:
  """``jnp.angle(z)`` (principal value in ``[-pi, pi]``, sign of a zero imaginary part kept).

  Computed as ``arctan(y / x)`` with the quadrant restored from the signs: XLA:CPU evaluates
  ``atan2`` element by element but vectorises ``arctan``, so this is ~2x faster there (see
  docs/benchmarks.md) and agrees with ``jnp.angle`` to float32 rounding.
  """
  x, y = z.real, z.imag
  negative_y = jnp.signbit(y)
  quotient = jnp.arctan(y / jnp.where(x == 0, 1.0, x))
  half_turn = jnp.where(negative_y, -jnp.pi, jnp.pi).astype(quotient.dtype)
  angle = jnp.where(x < 0, quotient + half_turn, quotient)
  on_axis = jnp.where(y == 0, jnp.where(negative_y, -0.0, 0.0),
                      jnp.where(negative_y, -jnp.pi / 2, jnp.pi / 2)).astype(quotient.dtype)
  return jnp.where(x == 0, on_axis, angle)


# Minimax-style fit of atan(a) / a in a^2 on [0, 1] (float64 error 6e-9; float32 coefficients).
_ATAN_COEFFICIENTS = (0.9999998807907104, -0.3333256244659424, 0.1998540312051773,
                      -0.1415804773569107, 0.10488294064998627, -0.0721464455127716,
                      0.039562907069921494, -0.014276289381086826, 0.0024272322189062834)
# pi / 2 in three parts (Cody-Waite): the first two have short mantissas, so k * part is exact.
_HALF_PI_PARTS = (1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8)


def _polynomial_angle(z: Array) -> Array:
  """:func:`_angle` from multiplies and selects only (reference mode's hot loop).

  ``atan(a)``, ``a = min(|x|, |y|) / max(|x|, |y|)``, by a degree-17 odd polynomial, then the
  octant and quadrant. XLA:CPU calls libm per element for ``arctan``/``cos``/``sin`` but
  vectorises this: 9.7 ms against 79 ms for :func:`_angle` on 3.5M complex64 (2-core machine).
  Same conventions as :func:`_angle` (a zero ``x`` gives ``+-0`` or ``+-pi/2``); within 3.2e-7
  (4.6 float32 ulps) of float64 ``atan2`` on 4M random points, :func:`_angle` within 3.1e-7.
  """
  x, y = z.real, z.imag
  abs_x, abs_y = jnp.abs(x), jnp.abs(y)
  larger = jnp.maximum(abs_x, abs_y)
  ratio = jnp.minimum(abs_x, abs_y) / jnp.where(larger == 0, 1.0, larger)
  square = ratio * ratio
  poly = jnp.asarray(_ATAN_COEFFICIENTS[-1], jnp.float32)
  for coefficient in _ATAN_COEFFICIENTS[-2::-1]:
    poly = poly * square + coefficient
  angle = ratio * poly
  angle = jnp.where(abs_y > abs_x, np.float32(np.pi / 2) - angle, angle)
  angle = jnp.where(x < 0, np.float32(np.pi) - angle, angle)
  return jnp.where(jnp.signbit(y), -angle, angle)


def _sincos(t: Array) -> tuple[Array, Array]:
  """``(sin t, cos t)`` for float32 ``|t| <~ 1e3`` from multiplies and selects only.

  Reduction by ``k = round(2 t / pi)`` (pi/2 in three parts), the Cephes ``sinf``/``cosf``
  polynomials on ``[-pi/4, pi/4]``, and the quadrant ``k mod 4``. Within 9.2e-8 of float64 on
  4M points in ``[-4, 4]`` (``jnp.sin``/``jnp.cos``: 3.3e-8); 6 ms against 103 ms for
  ``jnp.sin`` and ``jnp.cos`` on 3.5M float32 on XLA:CPU (see :func:`_polynomial_angle`).
  """
  turns = jnp.round(t * np.float32(2 / np.pi))
  r = ((t - turns * _HALF_PI_PARTS[0]) - turns * _HALF_PI_PARTS[1]) - turns * _HALF_PI_PARTS[2]
  r2 = r * r
  sin = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4))
  cos = 1.0 - 0.5 * r2 + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3
                                                                  + r2 * 2.443315711809948e-5))
  quadrant = turns.astype(jnp.int32) & 3
  return (jnp.where(quadrant == 0, sin, jnp.where(quadrant == 1, cos,
                                                  jnp.where(quadrant == 2, -sin, -cos))),
          jnp.where(quadrant == 0, cos, jnp.where(quadrant == 1, -sin,
                                                  jnp.where(quadrant == 2, -cos, sin))))


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
# The base Gaussian draw.

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
  """The Threefry-2x32 block cipher, 20 rounds (Salmon et al., *Parallel random numbers: as easy
  as 1, 2, 3*, SC 2011), written out as plain uint32 arithmetic: the hash of
  ``jax.random.bits``, unrolled so XLA fuses it into one vectorised loop."""
  keys = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
  x1, x2 = x1 + keys[0], x2 + keys[1]
  for group in range(5):
    for rotation in _THREEFRY_ROTATIONS[group % 2]:
      x1 = x1 + x2
      x2 = x1 ^ ((x2 << np.uint32(rotation)) | (x2 >> np.uint32(32 - rotation)))
    x1 = x1 + keys[(group + 1) % 3]
    x2 = x2 + keys[(group + 2) % 3] + np.uint32(group + 1)
  return x1, x2


def _computed_once(fn: Callable[[Any], Any], operand: Any) -> Any:
  """``fn(operand)`` as its own XLA computation: a conditional whose two branches are both ``fn``.

  XLA:CPU neither fuses ``fn``'s result into its consumers (which recompute a fused producer per
  use) nor fuses ``fn``'s producers into it, at the cost of writing its result to memory once
  (``jax.lax.optimization_barrier`` did not stop the fusion there).
  """
  first = jnp.ravel(jax.tree_util.tree_leaves(operand)[0])[0]
  return jax.lax.cond(first == 0, fn, fn, operand)


def _normal_from_key_data(data: Array, shape: tuple[int, ...]) -> Array:
  """``jax.random.normal`` of a threefry key's data ``uint32[2]``, bit for bit (partitionable
  counters: element ``i`` of the row-major flattening hashes the counter pair ``(0, i)``; the
  two output words are xor-ed; 23 mantissa bits make ``u`` in ``[nextafter(-1, 0), 1)``;
  ``eps = sqrt(2) erfinv(u)``)."""

  def bits(data):
    flat = jnp.zeros(shape, jnp.uint32)
    for axis, stride in enumerate(np.cumprod((1,) + shape[:0:-1])[::-1]):
      flat = flat + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
    high, low = _threefry2x32(data[0], data[1], jnp.zeros(shape, jnp.uint32), flat)
    return high ^ low

  def normal(bits):
    floats = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000),
                                          jnp.float32) - np.float32(1)
    low = np.nextafter(np.float32(-1), np.float32(0))
    u = jax.lax.max(low, floats * (np.float32(1) - low) + low)
    return np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)

  # Apart, not fused: fused into the erfinv, the hash lost vectorisation (89 ms against 12 ms for
  # 16x256x256x3); fused into a padding gather, the erfinv ran per padded sample.
  return _computed_once(normal, _computed_once(bits, data))


def standard_normal(key: Array, shape: Sequence[int]) -> Array:
  """``jax.random.normal(key, shape, jnp.float32)``, bit for bit, faster on XLA:CPU.

  On CPU, JAX lowers the threefry hash as a rolled 5-step loop that materialises its state per
  step: 80 ms for the 3.1M draws of a 16x256x256x3 batch, against 12 ms here, where the
  hash is plain fused arithmetic (:func:`_threefry2x32`). Other backends, ``rbg`` keys,
  ``jax_threefry_partitionable=False`` and arrays of 2**32 elements or more call
  ``jax.random.normal`` itself. The test suite checks the equality.

  Args:
    key: a threefry (or any) PRNG key, typed or raw ``uint32[2]``.
    shape: output shape.

  Returns:
    float32 ``shape``.

  Raises:
    whatever ``jax.random.normal`` raises for the key and shape (nothing of its own).
  """
  shape = tuple(int(d) for d in shape)
  reference = lambda *_: jax.random.normal(key, shape, jnp.float32)
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  impl = str(jax.random.key_impl(key)) if typed else str(jax.config.jax_default_prng_impl)
  if ('threefry2x32' not in impl or not jax.config.jax_threefry_partitionable or not shape
      or math.prod(shape) >= 2**32 or key.shape != (() if typed else (2,))):
    return reference()
  data = jax.random.key_data(key) if typed else key
  return jax.lax.platform_dependent(
      data, cpu=lambda d: _normal_from_key_data(d, shape), default=reference)


# ---------------------------------------------------------------------------------------------
# Deterministic cores.


def gaussian(key: Array, x0: Array) -> Array:
  """Standard Gaussian noise ``eps ~ N(0, I)`` of the shape and dtype of ``x0`` (any shape):
  ``jax.random.normal(key, x0.shape)`` (drawn by :func:`standard_normal`)."""
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
      1.6-2.6x the mean noise variance, while mirror padding keeps them near 1 (tested on real
      photos). The radius stays in unpadded units either way.

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
    mask = fss_mask(frequency_distance(x.shape, axes, half=True), _per_sample(radius, x.ndim),
                    edge_width)
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
    mask = fss_mask(frequency_distance(shape, fft_axes, half=True), radius, edge_width)

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
# Exact order statistics without a sort (the reference mode's 95 % quantiles).


def _sortable_key(x: Array) -> Array:
  """float32 -> uint32 with the same order, ``-0.0`` just below ``+0.0`` (``jnp.sort`` keeps the
  two equal, so a quantile can differ from ``jnp.quantile`` in the sign of a zero).

  Non-negative floats set the top bit; negative ones flip every bit. The input has no NaN.
  """
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))


def _key_to_float(key: Array) -> Array:
  """Inverse of :func:`_sortable_key`."""
  bits = jnp.where(key >> 31 == 1, key & np.uint32(0x7FFFFFFF), ~key)
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


def _pick_bin(counts: Array, rank: Array) -> tuple[Array, Array, Array]:
  """First bin of each row of ``counts`` (``[R, bins]``) whose cumulative count exceeds ``rank``.

  Two levels (blocks of ``sqrt(bins)``), so no long cumulative sum (XLA:CPU's ``cumsum`` of
  65536 bins took 1.5 ms).

  Returns:
    ``(bin, count below it, count in it)``, each int32 ``[R]``.
  """
  rows, bins = counts.shape
  block = 2**((bins.bit_length() - 1) // 2)
  blocks = counts.reshape(rows, bins // block, block)
  cumulative = jnp.cumsum(jnp.sum(blocks, axis=2), axis=1)
  chosen = jnp.sum(cumulative <= rank[:, None], axis=1, dtype=jnp.int32)
  rank = rank - jnp.where(chosen > 0, _take(cumulative, chosen - 1), 0)
  within = jnp.cumsum(jnp.take_along_axis(blocks, chosen[:, None, None], axis=1)[:, 0], axis=1)
  offset = jnp.sum(within <= rank[:, None], axis=1, dtype=jnp.int32)
  below = jnp.where(offset > 0, _take(within, offset - 1), 0)
  index = chosen * block + offset
  return index, rank - below, _take(counts, index)


def _take(x: Array, index: Array) -> Array:
  """``x[r, index[r]]`` for each row ``r`` (index clamped to the row)."""
  return jnp.take_along_axis(x, jnp.clip(index, 0, x.shape[1] - 1)[:, None], axis=1)[:, 0]


# Below this many keys in all, the radix selection uses 2048-bin digits (see below).
_SMALL_SELECTION = 1 << 18


def _order_statistics(parts: Sequence[tuple[Array, int]], rank: int) -> tuple[Array, Array]:
  """The ``rank``-th and ``(rank + 1)``-th smallest value of each row, exactly, without a sort.

  The multiset of row ``r`` holds each element of ``x[r]`` ``weight`` times, over the
  ``(x, weight)`` in ``parts``; a negative weight removes elements (a part that is a subset of
  another, e.g. to count most of an array twice with unit increments only).

  Radix selection on the order-preserving integer key of each float (:func:`_sortable_key`):
  each pass histograms the next digit of the keys that share the digits chosen so far (one
  scatter-add per part) and picks the digit whose cumulative count passes the rank. Digits of
  16 + 16 bits for one row (whole tensor) of at least ``_SMALL_SELECTION`` keys, else
  11 + 11 + 10 (small histograms). The key of rank ``rank + 1`` is the next non-empty bin of the
  last histogram; only when some row has none there does a min-reduction over all keys run
  (under ``lax.cond``). Page faults on XLA:CPU's fresh temporary buffers are a large share of
  these passes (a 44 ms selection at 3.5M elements took 15 ms with glibc malloc kept from
  returning memory to the system).

  Why not ``jnp.quantile``: its full sort is slow on XLA:CPU, 3.0 s over the 7.1M-element padded
  spectrum of a 16x256x256x3 batch (2 cores shared with another job). Here a pass over the
  3.5M-element half spectrum costs ~6 ms of scatter-add plus ~2.5 ms to compute the digits (the
  min-reduction, when it runs, ~5 ms): ~25-30 ms per quantile (``lax.top_k`` with k = 5 % of n:
  330 ms; a 16-way count pass: 510 ms).

  Args:
    parts: ``(x, weight)`` pairs; ``x`` float32 ``[R, ...]`` (same ``R``), no NaN; ``weight`` a
      static int. The multiplicities of a row must be >= 0 and sum to more than ``rank + 1``.
    rank: static 0-based rank.

  Returns:
    Two float32 ``[R]`` arrays: the values of rank ``rank`` and ``rank + 1``.
  """
  rows = parts[0][0].shape[0]
  # Keys keep each part's own shape: flattened to [R, n] first, every elementwise pass indexed a
  # broadcast operand (e.g. a per-column mask) through a division of the flat index, 4-6x slower.
  keys = [(_sortable_key(x), weight) for x, weight in parts]
  by_row = lambda v, key: jnp.reshape(v, (rows,) + (1,) * (key.ndim - 1))
  prefix = jnp.zeros((rows,), jnp.uint32)
  remaining = jnp.full((rows,), rank, jnp.int32)
  shift = 32
  # One row of many keys: two 16-bit passes. Several rows, or few keys (where zeroing and
  # scanning 65536 bins outweighs a third pass over the keys; 16x4x32x32 draws: 5.1-6.7 ->
  # 4.7-5.1 ms): 11 + 11 + 10 bits.
  many_keys = sum(key.size for key, _ in keys) >= _SMALL_SELECTION
  for width in (16, 16) if rows == 1 and many_keys else (11, 11, 10):
    shift -= width
    bins = 2**width
    counts = 0
    for key, weight in keys:
      index = ((key >> shift) & np.uint32(bins - 1)).astype(jnp.int32)
      index = index + by_row(jnp.arange(rows, dtype=jnp.int32) * bins, key)
      if shift + width < 32:  # Only the keys that share the digits chosen so far; others dropped.
        index = jnp.where(key >> (shift + width) == by_row(prefix, key), index, rows * bins)
      # Unit increments, weighted afterwards: XLA:CPU materialises the increments (a scalar
      # increment was 3x slower); XLA's CSE makes one array of ones for every part of a shape.
      counts = counts + weight * jnp.zeros(rows * bins, jnp.int32).at[index].add(
          jnp.ones(key.shape, jnp.int32), mode='drop')
    counts = counts.reshape(rows, bins)
    digit, remaining, copies = _pick_bin(counts, remaining)
    prefix = (prefix << width) | digit.astype(jnp.uint32)
  # The next larger key: the next non-empty bin of the last histogram, which shares every digit
  # but the last; a pass over all keys only when some row has none there (rare).
  later = (counts > 0) & (jnp.arange(bins, dtype=jnp.int32) > digit[:, None])
  found = jnp.any(later, axis=1)
  next_digit = jnp.argmax(later, axis=1).astype(jnp.uint32)
  in_bin = (prefix & ~np.uint32(bins - 1)) | next_digit

  def scan_all(prefix):
    return functools.reduce(jnp.minimum, [
        jnp.min(jnp.where(key > by_row(prefix, key), key, np.uint32(0xFFFFFFFF)),
                axis=tuple(range(1, key.ndim)))
        for key, weight in keys if weight > 0])

  larger = jnp.where(found, in_bin, jax.lax.cond(jnp.all(found), lambda p: p, scan_all, prefix))
  value = _key_to_float(prefix)
  return value, jnp.where(remaining + 1 < copies, value, _key_to_float(larger))


def _linear_quantile_position(count: int, q: float) -> tuple[int, int, np.float32, np.float32]:
  """Ranks and weights of ``jnp.quantile(..., method='linear')`` over ``count`` elements, in the
  float32 arithmetic it uses: ``(low, high, low_weight, high_weight)``."""
  n = np.float32(count)
  position = np.float32(q) * (n - np.float32(1))
  high_weight = position - np.floor(position)
  low_weight = np.float32(1) - high_weight
  low = int(np.clip(np.floor(position), 0, n - 1))
  high = int(np.clip(np.ceil(position), 0, n - 1))
  return low, high, low_weight, high_weight


def _quantile(parts: Union[Array, Sequence[tuple[Array, int]]], q: float,
              count: Optional[int] = None, offset: int = 0) -> Array:
  """``jnp.quantile(full, q)`` of each row without sorting.

  ``full`` is the multiset of :func:`_order_statistics` (``parts``, or one array ``[R, ...]``
  counted once) plus ``offset`` elements known to lie below the result: ``count`` elements in all
  (default: the parts' total). Same ranks, weights and interpolation as ``jnp.quantile`` (float32
  position ``q * (n - 1)``, ``low * (1 - f) + high * f``), so it agrees with it to float rounding
  (bit for bit in the tests).

  Returns:
    float32 ``[R]``.
  """
  parts = list(parts) if isinstance(parts, (list, tuple)) else [(jnp.asarray(parts), 1)]
  if count is None:
    count = offset + sum(weight * math.prod(x.shape[1:]) for x, weight in parts)
  low, high, low_weight, high_weight = _linear_quantile_position(count, q)
  value_low, value_next = _order_statistics(parts, low - offset)
  value_high = value_low if high == low else value_next
  return value_low * low_weight + value_high * high_weight


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


def training_noise_fn(kind: str, **kwargs) -> NoiseFn:
  """``noise_fn(kind, **kwargs)`` as ``(key, x0) -> eps`` (radius drawn per sample)."""
  draw = noise_fn(kind, **kwargs)
  return lambda key, x0: draw(key, x0)
