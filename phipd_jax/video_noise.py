"""Structured noise for video clips ``[B, T, H, W, C]``: four ways to give phi-PD noise to a clip.

The phi-PD paper (Zeng et al., *NeuralRemaster: Phase-Preserving Diffusion for Structure-Aligned
Generation*, arXiv:2512.05106, Sec. 3.4) makes the noise of a video frame by frame, and notes
that the FFT can run over time as well. A clip's frames are not independent images, though:
noise that is independent per frame flickers, and noise that is the same in every frame sticks
to the screen while the content moves. :data:`VIDEO_OPTIONS`:

* ``'per_frame'``: FSS noise of each frame from an independent Gaussian sample (the paper).
* ``'shared_magnitude'``: per-frame FSS whose Fourier magnitude is one Rayleigh draw shared by
  every frame (:func:`phipd_jax.noise.rayleigh_magnitude`); the phases outside the cutoff stay
  independent per frame.
* ``'spatiotemporal'``: FSS over ``(T, H, W)`` with a 3-D Gaussian sample: the input's phase kept
  inside a 3-D cutoff, where the temporal frequency index counts cycles across the clip.
* ``'flow_warped'``: the Gaussian sample is transported from frame to frame along the clip's
  optical flow (:func:`flow_warped_from_noise`), then made structured per frame.

**Flow warping, and why it stays Gaussian.** A discrete form of the particle noise transport of
Chang et al., *How I Warped Your Noise: a Temporally-Correlated Noise Prior for Diffusion Models*
(ICLR 2024) and Burgert et al., *Go-with-the-Flow: Motion-Controllable Video Diffusion Models
Using Real-Time Warped Noise* (CVPR 2025): every pixel of frame ``t`` carries its noise value to
the nearest pixel of its destination in frame ``t + 1``; a pixel that receives ``n >= 1``
values takes their sum divided by ``sqrt(n)``, a pixel that receives none takes a fresh draw,
values leaving the frame are dropped. Given the flow, each pixel of frame ``t + 1`` is then a
normalised sum of a set of independent N(0, 1) values disjoint from every other pixel's set (or
a fresh draw), so **every frame is exactly i.i.d. N(0, I)**, while a pixel that moves alone
keeps its value exactly. (Chang et al.'s integral warping splits values over sub-pixel areas;
this nearest-pixel form trades that sub-pixel accuracy for exactness and a single
``segment_sum``.)

Units: ``radius`` and ``edge_width`` in frequency-index units as in :mod:`phipd_jax.noise`;
``flow`` in pixels, ``[B, T - 1, H, W, 2]`` with ``flow[:, t, y, x] = (dx, dy)``: the pixel
``(y, x)`` of frame ``t`` is at ``(y + dy, x + dx)`` in frame ``t + 1`` (forward flow, OpenCV's
``(dx, dy)`` channel order). Every function is pure, jit- and vmap-able.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp

from phipd_jax import noise as noise_lib
from phipd_jax.noise_kernels import standard_normal

Array = jax.Array

VIDEO_OPTIONS = ('per_frame', 'shared_magnitude', 'spatiotemporal', 'flow_warped')
SPATIOTEMPORAL_AXES = (-4, -3, -2)


def _check_flow(shape, flow: Array):
  if len(shape) != 5:
    raise ValueError(f'video noise: clips must be [B, T, H, W, C], got shape {tuple(shape)}')
  batch, frames, height, width, _ = shape
  expected = (batch, frames - 1, height, width, 2)
  if tuple(flow.shape) != expected:
    raise ValueError(f'video noise: flow.shape {tuple(flow.shape)} must be [B, T - 1, H, W, 2] '
                     f'= {expected} for clips of shape {tuple(shape)}')


def warp_frame(noise: Array, fresh: Array, flow: Array) -> Array:
  """One frame of N(0, 1) noise carried along ``flow`` to the next frame (module docstring).

  Args:
    noise: the frame's noise ``[B, H, W, C]``, i.i.d. N(0, 1).
    fresh: an independent N(0, 1) draw ``[B, H, W, C]`` for the pixels nothing lands on.
    flow: ``[B, H, W, 2]`` forward flow in pixels, ``(dx, dy)`` per pixel.

  Returns:
    float32 ``[B, H, W, C]``: ``sum / sqrt(n)`` of the ``n`` values landing on each pixel, or
    ``fresh`` where ``n = 0``.
  """
  batch, height, width, channels = noise.shape
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  flow = flow.astype(jnp.float32)
  dest_x = jnp.round(cols[None] + flow[..., 0]).astype(jnp.int32)
  dest_y = jnp.round(rows[None] + flow[..., 1]).astype(jnp.int32)
  inside = (dest_x >= 0) & (dest_x < width) & (dest_y >= 0) & (dest_y < height)
  pixels = height * width
  # One segment per destination pixel of each sample, plus one per sample for values that leave.
  segment = jnp.where(inside, dest_y * width + dest_x, pixels)
  segment = segment + (pixels + 1) * jnp.arange(batch)[:, None, None]
  segment = segment.reshape(-1)
  count_segments = batch * (pixels + 1)
  sums = jax.ops.segment_sum(noise.astype(jnp.float32).reshape(-1, channels), segment,
                             count_segments)
  counts = jax.ops.segment_sum(jnp.ones(segment.shape, jnp.float32), segment, count_segments)
  sums = sums.reshape(batch, pixels + 1, channels)[:, :pixels].reshape(noise.shape)
  counts = counts.reshape(batch, pixels + 1)[:, :pixels].reshape(batch, height, width, 1)
  return jnp.where(counts > 0, sums / jnp.sqrt(jnp.maximum(counts, 1.0)),
                   fresh.astype(jnp.float32))


def flow_warped_from_noise(fresh: Array, flow: Array) -> Array:
  """Gaussian noise of a clip transported along its flow, from independent draws.

  Frame 0 is ``fresh[:, 0]``; frame ``t + 1`` is :func:`warp_frame` of frame ``t`` along
  ``flow[:, t]``, holes filled from ``fresh[:, t + 1]``. Every frame is i.i.d. N(0, I).

  Args:
    fresh: ``[B, T, H, W, C]`` i.i.d. N(0, 1).
    flow: ``[B, T - 1, H, W, 2]`` forward flow in pixels, ``(dx, dy)``.

  Returns:
    float32 ``[B, T, H, W, C]``.

  Raises:
    ValueError: shapes that do not match.
  """
  _check_flow(fresh.shape, flow)
  fresh = fresh.astype(jnp.float32)

  def step(previous, inputs):
    frame_fresh, frame_flow = inputs
    current = warp_frame(previous, frame_fresh, frame_flow)
    return current, current

  time_major = lambda x: jnp.moveaxis(x, 1, 0)
  _, rest = jax.lax.scan(step, fresh[:, 0], (time_major(fresh[:, 1:]), time_major(flow)))
  return jnp.concatenate([fresh[:, :1], jnp.moveaxis(rest, 0, 1)], axis=1)


def video_fss(key: Array, x0: Array, radius: noise_lib.Radius, option: str = 'per_frame', *,
              flow: Optional[Array] = None, edge_width: float = 2.0,
              magnitude: str = 'gaussian') -> Array:
  """FSS noise for a clip, one of :data:`VIDEO_OPTIONS` (module docstring).

  ``key`` draws the base Gaussian sample ``[B, T, H, W, C]`` (the same draw for every option, so
  the options differ only in what they do with it); ``fold_in(key, 1)`` draws the magnitude
  sample of ``'shared_magnitude'`` (one frame, broadcast over time) and of ``magnitude =
  'rayleigh'``. ``radius=-inf`` gives the base noise itself (Gaussian per frame; warped for
  ``'flow_warped'``): the SDEdit / inversion counterpart of each option.

  Args:
    key: PRNG key.
    x0: clips ``[B, T, H, W, C]``, any float dtype; only their phase is used.
    radius: cutoff, scalar or ``[B]``, frequency-index units of the unpadded frame (for
      ``'spatiotemporal'`` the distance is over ``(T, H, W)``, time in cycles across the clip).
    option: one of :data:`VIDEO_OPTIONS`.
    flow: ``[B, T - 1, H, W, 2]`` forward flow in pixels, ``(dx, dy)``; ``'flow_warped'`` only.
    edge_width: the mask's Gaussian edge, same units as ``radius``.
    magnitude: ``'gaussian'`` or ``'rayleigh'`` (:func:`phipd_jax.noise.fss_from_noise`);
      ``'shared_magnitude'`` is always Rayleigh.

  Returns:
    ``eps`` with the shape and dtype of ``x0``.

  Raises:
    ValueError: an unknown option, a clip that is not 5-D, a flow given to another option or
      missing for ``'flow_warped'``, a flow of the wrong shape.
  """
  if option not in VIDEO_OPTIONS:
    raise ValueError(f'video noise: option={option!r} must be one of {VIDEO_OPTIONS}')
  if x0.ndim != 5:
    raise ValueError(f'video noise: clips must be [B, T, H, W, C], got shape {x0.shape}')
  if (flow is not None) != (option == 'flow_warped'):
    raise ValueError("video noise: flow is needed by option='flow_warped' and only by it, got "
                     f'option={option!r} with flow {"given" if flow is not None else "None"}')
  noise = standard_normal(key, x0.shape)
  magnitude_noise = None
  if option == 'shared_magnitude':
    magnitude = 'rayleigh'
    one_frame = standard_normal(jax.random.fold_in(key, 1), (x0.shape[0], 1) + x0.shape[2:])
    magnitude_noise = jnp.broadcast_to(one_frame, x0.shape)
  elif magnitude == 'rayleigh':
    magnitude_noise = standard_normal(jax.random.fold_in(key, 1), x0.shape)
  axes = SPATIOTEMPORAL_AXES if option == 'spatiotemporal' else noise_lib.SPATIAL_AXES
  if option == 'flow_warped':
    noise = flow_warped_from_noise(noise, flow)
  if radius is not None and not isinstance(radius, jax.Array) and math.isinf(radius) and (
      radius < 0) and magnitude == 'gaussian':
    return noise.astype(x0.dtype)
  return noise_lib.fss_from_noise(x0, noise, radius, edge_width=edge_width, magnitude=magnitude,
                                  magnitude_noise=magnitude_noise, axes=axes)


def video_noise_fn(kind: str, option: str = 'per_frame', *, r0: float = 0.0, rate: float = 0.1,
                   edge_width: float = 2.0, mode: str = 'paper', magnitude: str = 'gaussian',
                   scale: float = 1.0, pad_factor: Optional[float] = None):
  """The clip counterpart of :func:`phipd_jax.noise.noise_fn`: ``fn(key, x0, radius=None,
  flow=None) -> eps`` for clips ``x0`` ``[B, T, H, W, C]``, used by training and sampling.

  * ``'gaussian'``: ``scale * N(0, I)`` (for ``'flow_warped'`` given a flow, the flow-warped
    Gaussian: the SDEdit counterpart of flow-warped phi-PD; without one, i.i.d., as generation
    from noise, which has no input clip, draws it; the other options' base noise is i.i.d.).
  * ``'phase_preserving'``: the input's phase kept everywhere (``radius`` ignored).
  * ``'fss'``: FSS at ``radius``; ``radius=None`` (training) draws ``r = r0 + Exp(rate)`` per
    clip from ``fold_in(key, 2)`` (paper Eq. 20).

  ``option`` is one of :data:`VIDEO_OPTIONS` (:func:`video_fss`); ``'per_frame'`` is exactly the
  image noise applied to every frame (the image factory over the spatial axes of a 5-D array,
  every setting of it included). The other options implement the paper mode only.

  Raises:
    ValueError: an unknown kind or option, out-of-range settings, ``mode='reference'`` or
      ``pad_factor`` with another option than ``'per_frame'`` (checked here, not at trace time),
      a flow missing for ``'flow_warped'`` FSS or phase-preserving noise (at call time).
  """
  if option not in VIDEO_OPTIONS:
    raise ValueError(f'noise: video={option!r} must be one of {VIDEO_OPTIONS}')
  image_fn = noise_lib.noise_fn(kind, r0=r0, rate=rate, edge_width=edge_width, mode=mode,
                                magnitude=magnitude, scale=scale, pad_factor=pad_factor)
  if option == 'per_frame':
    def per_frame(key: Array, x0: Array, radius: noise_lib.Radius = None,
                  flow: Optional[Array] = None) -> Array:
      del flow  # Independent frames: the flow is not used.
      return image_fn(key, x0, radius)
    return per_frame
  if mode != 'paper' or pad_factor:
    raise ValueError(f"noise: mode={mode!r}, pad_factor={pad_factor} are image-noise settings; "
                     f"video={option!r} implements mode='paper' without padding only")

  def draw(key: Array, x0: Array, radius: noise_lib.Radius = None,
           flow: Optional[Array] = None) -> Array:
    if option == 'flow_warped' and flow is None and kind != 'gaussian':
      raise ValueError("noise: video='flow_warped' needs the clip's flow [B, T - 1, H, W, 2] "
                       '(a clip dataset stores it; sample.py estimates it with OpenCV)')
    warp = option if option != 'flow_warped' or flow is not None else 'per_frame'
    flow = flow if warp == 'flow_warped' else None
    if kind == 'gaussian':
      radius = -math.inf
    elif kind == 'phase_preserving':
      radius = None
    elif radius is None:
      radius = noise_lib.sample_radius(jax.random.fold_in(key, 2), (x0.shape[0],), r0, rate)
    eps = video_fss(key, x0, radius, warp, flow=flow, edge_width=edge_width,
                    magnitude='gaussian' if kind == 'gaussian' else magnitude)
    return (scale * eps.astype(jnp.float32)).astype(x0.dtype) if scale != 1.0 else eps

  return draw
