"""Synthetic camera-motion clips with their exact optical flow.

A clip is a virtual camera moving over one still photo: frame ``t`` shows the photo through a
square window whose position, scale and angle follow a motion (:data:`MOTIONS`). The camera
of frame ``t`` is an affine map ``A_t`` from frame pixels ``p = (x, y)`` to photo pixels,
``q = M_t p + b_t``, stored per clip as ``affines [T, 2, 3] = [M_t | b_t]``. The scene is a
plane, so the forward flow of frame ``t`` is exact: the photo point ``A_t(p)`` appears in frame
``t + 1`` at ``A_{t+1}^{-1}(A_t(p))``, and ``flow_t(p) = A_{t+1}^{-1}(A_t(p)) - p`` (pixels,
``(dx, dy)``, the convention of :mod:`phipd_jax.video_noise` and
:mod:`phipd_jax.evaluation.temporal`). Frames are rendered by bilinear sampling of the photo
(``scipy.ndimage.map_coordinates``; the window never leaves the photo).

Motions (per-frame magnitudes drawn uniformly from the ranges below; the direction at random):

* ``pan``: translation of 0.5-2 frame pixels per frame, any direction;
* ``zoom``: scale change of 2-5 % per frame, in or out, about the window's centre;
* ``rotate``: 1.5-4 degrees per frame about the window's centre;
* ``mixed``: a pan, a zoom and a rotation together, each at half its range.

Every function here is NumPy (the data pipeline's side), deterministic in its ``rng``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

MOTIONS = ('pan', 'zoom', 'rotate', 'mixed')
PAN_PIXELS = (0.5, 2.0)  # Frame pixels per frame.
ZOOM_RATE = (0.02, 0.05)  # Relative scale change per frame.
ROTATE_DEGREES = (1.5, 4.0)  # Per frame.
MIN_SCALE = 0.5  # Photo pixels per frame pixel: a smaller window would magnify the photo > 2x.


def _affine(scale: float, angle: float, centre: np.ndarray, size: int) -> np.ndarray:
  """``[2, 3]``: frame pixel ``p`` -> photo pixel ``centre + scale R(angle) (p - c_frame)``."""
  cos, sin = math.cos(angle), math.sin(angle)
  matrix = scale * np.array([[cos, -sin], [sin, cos]])
  frame_centre = np.full(2, (size - 1) / 2)
  return np.concatenate([matrix, (centre - matrix @ frame_centre)[:, None]], axis=1)


def camera_motion(rng: np.random.Generator, motion: str, frames: int, size: int,
                  photo_shape: Sequence[int]) -> np.ndarray:
  """The cameras ``[T, 2, 3]`` (float64) of one clip of ``frames`` frames of ``size`` pixels over
  a photo of ``photo_shape = (H, W, ...)``.

  The window's scale (photo pixels per frame pixel) is the largest, in steps of 5 % down from a
  window 1.5x the photo's short side, whose whole motion fits inside the photo; its start is
  drawn uniformly where every frame stays inside.

  Raises:
    ValueError: an unknown motion, fewer than 2 frames, or a photo too small for the clip (the
      window would need fewer than :data:`MIN_SCALE` photo pixels per frame pixel).
  """
  if motion not in MOTIONS:
    raise ValueError(f'clips: motion={motion!r} must be one of {MOTIONS}')
  if frames < 2:
    raise ValueError(f'clips: a clip needs at least 2 frames, got {frames}')
  height, width = photo_shape[:2]
  half = 0.5 if motion == 'mixed' else 1.0
  pan = zoom = rotate = 0.0
  if motion in ('pan', 'mixed'):
    pan = half * rng.uniform(*PAN_PIXELS)
  if motion in ('zoom', 'mixed'):
    zoom = half * rng.uniform(*ZOOM_RATE) * rng.choice([-1.0, 1.0])
  if motion in ('rotate', 'mixed'):
    rotate = math.radians(half * rng.uniform(*ROTATE_DEGREES)) * rng.choice([-1.0, 1.0])
  direction = rng.uniform(0, 2 * math.pi)
  step = np.array([math.cos(direction), math.sin(direction)])
  steps = np.arange(frames)
  corners = np.array([[0, 0, size - 1, size - 1], [0, size - 1, 0, size - 1], [1, 1, 1, 1]],
                     np.float64)

  def cameras(base: float, start: np.ndarray) -> np.ndarray:
    centres = start[None] + base * pan * (steps - (frames - 1) / 2)[:, None] * step[None]
    return np.stack([_affine(base * (1.0 + zoom) ** t, rotate * t, centres[t], size)
                     for t in range(frames)])

  # The largest window scale whose whole motion fits in the photo; then a start drawn uniformly
  # among those that keep every frame inside.
  base = 1.5 * min(height, width) / size
  for _ in range(80):
    reach = np.concatenate([affine @ corners for affine in cameras(base, np.zeros(2))], axis=1)
    low, high = -reach.min(axis=1), np.array([width - 1, height - 1]) - reach.max(axis=1)
    if np.all(low <= high):
      return cameras(base, rng.uniform(low, high))
    base *= 0.95
    if base < MIN_SCALE:
      break
  raise ValueError(f'clips: photo {tuple(photo_shape[:2])} too small for {frames} frames of '
                   f'{size} px with motion {motion!r} (it would be magnified more than '
                   f'{1 / MIN_SCALE:g}x)')


def render_clip(photo: np.ndarray, affines: np.ndarray, size: int) -> np.ndarray:
  """The frames ``uint8 [T, size, size, C]`` of ``photo`` (uint8 ``[H, W, C]``) seen by
  ``affines`` (bilinear; points outside the photo take the nearest edge pixel)."""
  rows, cols = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                           indexing='ij')
  points = np.stack([cols.ravel(), rows.ravel(), np.ones(size * size)])
  frames = []
  for affine in affines:
    x, y = affine @ points
    channels = [ndimage.map_coordinates(photo[..., c].astype(np.float64), [y, x], order=1,
                                        mode='nearest') for c in range(photo.shape[-1])]
    frame = np.stack(channels, -1).reshape(size, size, -1)
    frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
  return np.stack(frames)


def clip_flow(affines: np.ndarray, size: int) -> np.ndarray:
  """The exact forward flow ``float32 [T - 1, size, size, 2]`` (``(dx, dy)`` pixels) of a clip
  rendered with ``affines`` ``[T, 2, 3]``: ``A_{t+1}^{-1}(A_t(p)) - p``."""
  rows, cols = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                           indexing='ij')
  points = np.stack([cols.ravel(), rows.ravel()])
  flows = []
  for now, after in zip(affines[:-1], affines[1:]):
    photo_points = now[:, :2] @ points + now[:, 2:]
    next_points = np.linalg.solve(after[:, :2], photo_points - after[:, 2:])
    flows.append((next_points - points).T.reshape(size, size, 2))
  return np.stack(flows).astype(np.float32)


SOURCE_SHORT_SIDE = 1.25  # The photo is resized to this many clip sizes on its short side.


def synthetic_clip(photo: np.ndarray, rng: np.random.Generator, motion: str, frames: int,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
  """``(frames uint8 [T, size, size, C], affines float32 [T, 2, 3])`` of one clip over
  ``photo`` (uint8 ``[H, W, C]``); :func:`clip_flow` gives its flow. The photo is first resized
  (PIL, Lanczos) to :data:`SOURCE_SHORT_SIDE` clip sizes on its short side, so that the frames
  are sampled at about 1 photo pixel per frame pixel, without aliasing; the affines are in the
  resized photo's pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  height, width = photo.shape[:2]
  factor = SOURCE_SHORT_SIDE * size / min(height, width)
  resized = (max(size, round(width * factor)), max(size, round(height * factor)))
  photo = np.asarray(Image.fromarray(photo).resize(resized, Image.LANCZOS))
  affines = camera_motion(rng, motion, frames, size, photo.shape)
  return render_clip(photo, affines, size), affines.astype(np.float32)
