"""Dense optical flow of real clips, estimated with OpenCV's DIS, in the library's convention.

``flow[t, y, x] = (dx, dy)`` in pixels: the pixel ``(y, x)`` of frame ``t`` is at
``(y + dy, x + dx)`` in frame ``t + 1`` (forward flow, OpenCV's ``(dx, dy)`` channel order; the
convention of :mod:`phipd_jax.video_noise` and :func:`phipd_jax.data.clips.clip_flow`, which
gives the exact flow of the synthetic clips).

**Method.** Dense Inverse Search (Kroeger et al., *Fast Optical Flow using Dense Inverse
Search*, ECCV 2016; ``cv2.DISOpticalFlow``) between consecutive frames converted to gray
(``cv2.COLOR_RGB2GRAY``): inverse-compositional patch matching on an image pyramid, patches
densified by weighted averaging, then variational refinement (Brox-style data, gradient and
smoothness terms) at every scale. Parameters (:data:`DIS_PARAMETERS`) are OpenCV's ``FAST``
preset (8-pixel patches every 4 pixels, 16 gradient-descent iterations, 5 variational
refinement iterations with alpha 20, delta 5, gamma 10, mean normalisation and spatial
propagation on) with the finest scale set to 0, so the flow is refined at full resolution for
every clip size (OpenCV already falls back to scale 0 for the library's 64-pixel clips, where
the preset's finest scale 2 would be coarser than its coarsest).

**Why DIS, not Farneback.** On rendered 64-pixel camera-motion clips
(:mod:`phipd_jax.data.clips`, 4 photos x 7 frame pairs per motion, 8-pixel border excluded) the
mean endpoint error of DIS was 0.04 px (pan, mean flow 1.06 px), 0.07 (zoom, 0.57 px), 0.11
(rotate, 0.78 px) and 0.07 (mixed, 0.75 px); ``cv2.calcOpticalFlowFarneback`` with its usual
parameters (pyramid 0.5, 3 levels, 15-pixel window, 3 iterations, poly_n 5, sigma 1.2) had 2-3x
larger errors (0.09, 0.16, 0.27, 0.18) and did not improve with other windows or levels. Both
take about 2 ms a 64-pixel frame pair.

The result does not depend on OpenCV's thread count (checked: 1, 2 and 8 threads give identical
flows), so the module leaves ``cv2.setNumThreads`` alone. A new DIS object is made per call, and
``calc`` is never given an initial flow, so every frame pair is estimated independently.
"""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV's DISOPTICAL_FLOW_PRESET_FAST, set explicitly (so the flow does not change if OpenCV
# changes its presets), with the finest scale 0 (full resolution).
DIS_PARAMETERS = {
    'FinestScale': 0,
    'PatchSize': 8,
    'PatchStride': 4,
    'GradientDescentIterations': 16,
    'VariationalRefinementIterations': 5,
    'VariationalRefinementAlpha': 20.0,
    'VariationalRefinementDelta': 5.0,
    'VariationalRefinementGamma': 10.0,
    'UseMeanNormalization': True,
    'UseSpatialPropagation': True,
}
MIN_SIZE = 16  # Pixels a side: OpenCV refuses 10-pixel frames (8-pixel patches); 16 leaves room.


def _dis() -> cv2.DISOpticalFlow:
  flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
  for name, value in DIS_PARAMETERS.items():
    getattr(flow, f'set{name}')(value)
  return flow


def estimate_flow(clip: np.ndarray) -> np.ndarray:
  """The forward optical flow between consecutive frames of one clip (DIS, see the module).

  Args:
    clip: uint8 ``[T, H, W, 3]`` RGB frames, ``T >= 2``, ``H, W >=`` :data:`MIN_SIZE`.

  Returns:
    float32 ``[T - 1, H, W, 2]``: ``flow[t, y, x] = (dx, dy)`` in pixels, the pixel ``(y, x)``
    of frame ``t`` is at ``(y + dy, x + dx)`` in frame ``t + 1``. Deterministic.

  Raises:
    ValueError: ``clip`` is not uint8 ``[T, H, W, 3]`` with ``T >= 2`` and ``H, W >= 16``.
  """
  clip = np.asarray(clip)
  if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f'optical flow: clip must be uint8 [T, H, W, 3], got {clip.dtype} '
                     f'{clip.shape}')
  frames, height, width = clip.shape[:3]
  if frames < 2:
    raise ValueError(f'optical flow: a clip needs at least 2 frames, got {frames}')
  if min(height, width) < MIN_SIZE:
    raise ValueError(f'optical flow: frames of {height}x{width} pixels; DIS needs at least '
                     f'{MIN_SIZE}x{MIN_SIZE}')
  gray = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in clip]
  dis = _dis()
  return np.stack([dis.calc(now, after, None) for now, after in zip(gray[:-1], gray[1:])]
                  ).astype(np.float32)


def estimate_flows(clips: np.ndarray) -> np.ndarray:
  """:func:`estimate_flow` of every clip of a batch: uint8 ``[B, T, H, W, 3]`` -> float32
  ``[B, T - 1, H, W, 2]`` (``(dx, dy)`` pixels, forward), the flow
  :func:`phipd_jax.video_noise.flow_warped_from_noise` takes.

  Raises:
    ValueError: ``clips`` is not ``[B, T, H, W, 3]`` (``B >= 1``), or as :func:`estimate_flow`.
  """
  clips = np.asarray(clips)
  if clips.ndim != 5 or not len(clips):
    raise ValueError(f'optical flow: clips must be [B, T, H, W, 3] with B >= 1, got '
                     f'{clips.shape}')
  return np.stack([estimate_flow(clip) for clip in clips])
