"""Temporal-consistency metrics (phipd_jax.evaluation.temporal) against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from phipd_jax.evaluation import temporal


def _pan(frame, frames, dx):
  clip = np.stack([np.roll(frame, t * dx, axis=1) for t in range(frames)])
  flow = np.zeros((frames - 1,) + frame.shape[:2] + (2,), np.float32)
  flow[..., 0] = dx
  return clip[None].astype(np.float32), flow[None]


def test_a_clip_moving_with_its_flow_has_no_warping_error_and_no_flicker():
  frame = np.random.default_rng(0).uniform(-1, 1, (16, 16, 3))
  clip, flow = _pan(frame, 4, 1)
  assert float(temporal.warping_error(clip, flow)[0]) < 1e-10
  assert float(temporal.flicker(clip, flow)[0]) < 1e-6
  # The same clip judged against a wrong (zero) flow is inconsistent.
  assert float(temporal.warping_error(clip, np.zeros_like(flow))[0]) > 0.3


def test_independent_frames_give_twice_the_variance_and_sqrt2_flicker():
  rng = np.random.default_rng(1)
  clips = rng.normal(0, 0.5, (2, 6, 32, 32, 3)).astype(np.float32)
  flow = np.zeros((2, 5, 32, 32, 2), np.float32)
  np.testing.assert_allclose(temporal.warping_error(clips, flow), 2 * 0.25, rtol=0.05)
  np.testing.assert_allclose(temporal.flicker(clips, flow), np.sqrt(2), rtol=0.05)


def test_sub_pixel_warp_and_valid_mask_equal_scipy_map_coordinates():
  rng = np.random.default_rng(2)
  clip = rng.uniform(-1, 1, (1, 2, 12, 10, 3)).astype(np.float32)
  flow = rng.uniform(-2.5, 2.5, (1, 1, 12, 10, 2)).astype(np.float32)
  rows, cols = np.meshgrid(np.arange(12), np.arange(10), indexing='ij')
  y, x = rows + flow[0, 0, ..., 1], cols + flow[0, 0, ..., 0]
  expected = np.stack([ndimage.map_coordinates(clip[0, 1, ..., c], [y, x], order=1,
                                               mode='nearest') for c in range(3)], -1)
  valid = (y >= 0) & (y <= 11) & (x >= 0) & (x <= 9)
  warped, got_valid = temporal.warp_to_previous(jnp.asarray(clip[0, 1]), jnp.asarray(flow[0, 0]))
  np.testing.assert_array_equal(got_valid, valid)
  np.testing.assert_allclose(np.asarray(warped)[valid], expected[valid], atol=1e-5)
  error = np.mean(((clip[0, 0] - expected) ** 2).mean(-1)[valid])
  np.testing.assert_allclose(temporal.warping_error(clip, flow)[0], error, rtol=1e-5)


def test_jit_and_clear_errors():
  clip, flow = _pan(np.zeros((8, 8, 3)), 3, 1)
  np.testing.assert_allclose(jax.jit(temporal.flicker)(clip, flow), temporal.flicker(clip, flow))
  with pytest.raises(ValueError, match=r'\[B, T, H, W, C\]'):
    temporal.warping_error(clip[0], flow)
  with pytest.raises(ValueError, match='at least 2 frames'):
    temporal.warping_error(clip[:, :1], flow[:, :0])
  with pytest.raises(ValueError, match=r'\[B, T - 1, H, W, 2\]'):
    temporal.flicker(clip, flow[:, :1])
