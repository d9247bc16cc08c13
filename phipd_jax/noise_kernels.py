"""Fast CPU forms of a few ``jnp`` / ``jax.random`` operations, equal to them bit for bit or
to float rounding.

The structured-noise draw (:mod:`phipd_jax.noise`) spends most of its XLA:CPU time in a few
operations that XLA:CPU runs element by element, in a rolled loop, or through a full sort. Each
function here computes the same values from plain arithmetic that XLA:CPU vectorises and fuses;
timings and the measurements behind them are in docs/benchmarks.md. None of them is paper math.

* :func:`_angle` and :func:`_polynomial_angle` replace ``jnp.angle`` (``atan2``), and
  :func:`_sincos` replaces ``jnp.sin`` / ``jnp.cos``: equal to float32 rounding (tested against
  float64 ``atan2`` / ``sin`` / ``cos``, same signs of zero as ``jnp.angle``).
* :func:`standard_normal` (with :func:`_threefry2x32` and :func:`_normal_from_key_data`)
  replaces ``jax.random.normal(key, shape, jnp.float32)``: bit for bit (tested with typed and raw
  keys, under ``jit`` and ``vmap``); other backends and key kinds call ``jax.random.normal``.
* :func:`_order_statistics` (radix selection on :func:`_sortable_key`) and :func:`_quantile`
  replace ``jnp.sort`` / ``jnp.quantile(..., method='linear')``: the order statistics are exact
  and the quantile is ``jnp.quantile``'s formula on them (tested to ~1 ulp: FMA).
* :func:`_computed_once` makes a value its own XLA computation (no fusion into its consumers).

Tests: tests/test_noise.py checks the first three against ``jnp`` / ``jax.random`` and
float64 NumPy; every noise test runs through them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# ---------------------------------------------------------------------------------------------
# Angles, sines and cosines (reference mode's hot loop).


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
