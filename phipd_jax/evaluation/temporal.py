"""Temporal consistency of generated clips, measured against a known (or estimated) optical flow.

Clips are float ``[B, T, H, W, C]`` in ``[-1, 1]``; ``flow`` is ``[B, T - 1, H, W, 2]`` forward
flow in pixels with ``flow[:, t, y, x] = (dx, dy)``: the pixel ``(y, x)`` of frame ``t`` is at
``(y + dy, x + dx)`` in frame ``t + 1`` (the convention of :mod:`phipd_jax.video_noise`).

* :func:`warp_to_previous`: frame ``t + 1`` sampled at ``p + flow_t(p)`` (bilinear,
  ``jax.scipy.ndimage.map_coordinates``), so that it lies on frame ``t``'s grid, with the mask
  of pixels whose destination is inside the frame.
* :func:`warping_error`: ``E_warp`` of Lai et al., *Learning Blind Video Temporal Consistency*
  (ECCV 2018, Eq. 9): the mean squared difference between each frame and the next one warped
  back, over the valid pixels. 0 for a clip that moves exactly with the flow; it rises with
  flicker and with content that does not follow the motion.
* :func:`flicker`: the same comparison on the high-pass band only (each frame minus its Gaussian
  blur, dm-pix): the frame-to-frame change of motion-compensated fine detail, divided by the
  mean absolute high-pass of the frames, so it reads as the share of the detail that changes
  from frame to frame (library definition; independent per-frame detail gives about 1.4, the
  ``sqrt(2)`` of two independent bands).

Both are pure jax functions (jit-able); they return one value per clip, ``[B]``.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp

Array = jax.Array


def _check(clips: Array, flow: Array):
  if clips.ndim != 5:
    raise ValueError(f'temporal metrics: clips must be [B, T, H, W, C], got {clips.shape}')
  batch, frames, height, width, _ = clips.shape
  if frames < 2:
    raise ValueError(f'temporal metrics: clips need at least 2 frames, got {frames}')
  expected = (batch, frames - 1, height, width, 2)
  if tuple(flow.shape) != expected:
    raise ValueError(f'temporal metrics: flow.shape {tuple(flow.shape)} must be {expected} '
                     '([B, T - 1, H, W, 2], (dx, dy) in pixels)')


def warp_to_previous(frame: Array, flow: Array, margin: int = 0) -> tuple[Array, Array]:
  """Frame ``t + 1`` brought onto frame ``t``'s grid along the forward flow ``t -> t + 1``.

  Args:
    frame: frame ``t + 1``, ``[H, W, C]``.
    flow: ``[H, W, 2]`` forward flow of frame ``t`` in pixels, ``(dx, dy)``.
    margin: pixels within ``margin`` of the border, in frame ``t`` or at the destination, are
      not valid (a filter of that radius sees the border there).

  Returns:
    ``(warped [H, W, C], valid [H, W] bool)``: ``warped[p] = frame(p + flow(p))`` (bilinear);
    ``valid`` where ``p`` and ``p + flow(p)`` lie inside the frame, ``margin`` from its border.
  """
  height, width, _ = frame.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing='ij')
  y = rows + flow[..., 1]
  x = cols + flow[..., 0]
  inside = lambda r, c: ((r >= margin) & (r <= height - 1 - margin) & (c >= margin)
                         & (c <= width - 1 - margin))
  valid = inside(y, x) & inside(rows, cols)
  warp_channel = lambda channel: jax.scipy.ndimage.map_coordinates(channel, [y, x], order=1,
                                                                   mode='nearest')
  warped = jax.vmap(warp_channel, in_axes=-1, out_axes=-1)(frame.astype(jnp.float32))
  return warped, valid


def _pairs(clips: Array, flow: Array, margin: int = 0) -> tuple[Array, Array, Array]:
  """``(frame t, frame t + 1 warped back, valid)`` for every pair, ``[B, T - 1, H, W, (C)]``."""
  warp = jax.vmap(jax.vmap(lambda frame, f: warp_to_previous(frame, f, margin)))
  warped, valid = warp(clips[:, 1:], flow.astype(jnp.float32))
  return clips[:, :-1].astype(jnp.float32), warped, valid


def warping_error(clips: Array, flow: Array) -> Array:
  """``E_warp`` per clip, ``[B]``: mean over frame pairs and valid pixels of
  ``mean_c (y_t(p) - y_{t+1}(p + flow_t(p)))^2`` (Lai et al., ECCV 2018, Eq. 9; images in
  ``[-1, 1]``, so 4x their ``[0, 1]`` value).

  Raises:
    ValueError: shapes that do not match, fewer than 2 frames.
  """
  _check(clips, flow)
  previous, warped, valid = _pairs(clips, flow)
  squared = jnp.mean((previous - warped) ** 2, axis=-1)
  valid = valid.astype(jnp.float32)
  return jnp.sum(squared * valid, axis=(1, 2, 3)) / jnp.maximum(
      jnp.sum(valid, axis=(1, 2, 3)), 1.0)


def high_pass(frames: Array, sigma: float = 1.0) -> Array:
  """``frames - GaussianBlur_sigma(frames)`` (dm-pix, kernel 6 sigma + 1), ``[..., H, W, C]``."""
  shape = frames.shape
  flat = frames.reshape((-1,) + shape[-3:]).astype(jnp.float32)
  kernel_size = int(6 * sigma) | 1
  blurred = pix.gaussian_blur(flat, sigma, kernel_size)
  return (flat - blurred).reshape(shape)


def flicker(clips: Array, flow: Array, sigma: float = 1.0) -> Array:
  """Relative change of motion-compensated fine detail per clip, ``[B]`` (library definition).

  ``mean |HP(y_t)(p) - HP(y_{t+1})(p + flow_t(p))| / mean |HP(y_t)(p)|`` over frame pairs,
  channels and valid pixels, ``HP`` = :func:`high_pass` at ``sigma`` pixels; pixels whose
  filter window reaches the border (in either frame) are left out. 0 when the detail moves
  exactly with the flow; about ``sqrt(2)`` for independent detail in every frame. A sub-pixel
  flow's bilinear warp softens the detail of the warped frame, a floor that the input clip's
  own score measures.

  Raises:
    ValueError: shapes that do not match, fewer than 2 frames.
  """
  _check(clips, flow)
  detail = high_pass(clips, sigma)
  previous, warped, valid = _pairs(detail, flow, margin=(int(6 * sigma) | 1) // 2)
  valid = valid[..., None].astype(jnp.float32)
  change = jnp.sum(jnp.abs(previous - warped) * valid, axis=(1, 2, 3, 4))
  level = jnp.sum(jnp.abs(previous) * valid, axis=(1, 2, 3, 4))
  return change / jnp.maximum(level, 1e-12)
