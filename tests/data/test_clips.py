"""Synthetic camera-motion clips (phipd_jax.data.clips): the stored cameras give the exact flow."""

import os

import numpy as np
import pytest
import skimage.data

from phipd_jax.data import clips
from phipd_jax.evaluation import temporal


@pytest.mark.parametrize('motion', clips.MOTIONS)
def test_flow_carries_every_scene_point_to_where_the_next_camera_sees_it(motion):
  rng = np.random.default_rng(0)
  affines = clips.camera_motion(rng, motion, 6, 24, (200, 300, 3))
  flow = clips.clip_flow(affines, 24).astype(np.float64)
  rows, cols = np.meshgrid(np.arange(24.0), np.arange(24.0), indexing='ij')
  for t in range(5):
    p = np.stack([cols.ravel(), rows.ravel(), np.ones(24 * 24)])
    moved = p.copy()
    moved[:2] += flow[t].reshape(-1, 2).T
    np.testing.assert_allclose(affines[t + 1] @ moved, affines[t] @ p, atol=1e-3)
  # Every frame's window lies inside the photo.
  corners = np.array([[0, 0, 23, 23], [0, 23, 0, 23], [1, 1, 1, 1]], np.float64)
  for affine in affines:
    x, y = affine @ corners
    assert x.min() >= 0 and x.max() <= 299 and y.min() >= 0 and y.max() <= 199


@pytest.mark.parametrize('motion', clips.MOTIONS)
def test_rendered_frames_follow_their_flow(motion):
  """Frame t + 1 warped back along the flow matches frame t far better than without it."""
  rng = np.random.default_rng(1)
  frames, affines = clips.synthetic_clip(skimage.data.astronaut(), rng, motion, 6, 48)
  assert frames.shape == (6, 48, 48, 3) and frames.dtype == np.uint8
  assert affines.shape == (6, 2, 3) and affines.dtype == np.float32
  flow = clips.clip_flow(affines.astype(np.float64), 48)[None]
  clip = frames[None].astype(np.float32) / 127.5 - 1
  moving = float(temporal.warping_error(clip, flow)[0])
  still = float(temporal.warping_error(clip, np.zeros_like(flow))[0])
  assert moving < 0.25 * still, (moving, still)  # Zooms move little near the centre.
  assert np.abs(flow).max() > 0.4  # It moves.


def test_clips_are_deterministic_in_the_rng_and_refuse_bad_requests():
  photo = skimage.data.chelsea()
  first = clips.synthetic_clip(photo, np.random.default_rng(5), 'mixed', 4, 32)
  again = clips.synthetic_clip(photo, np.random.default_rng(5), 'mixed', 4, 32)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  with pytest.raises(ValueError, match="motion='dolly'"):
    clips.camera_motion(np.random.default_rng(0), 'dolly', 4, 32, (100, 100))
  with pytest.raises(ValueError, match='at least 2 frames'):
    clips.camera_motion(np.random.default_rng(0), 'pan', 1, 32, (100, 100))
  with pytest.raises(ValueError, match='too small'):
    clips.camera_motion(np.random.default_rng(0), 'zoom', 8, 64, (20, 20))


def test_camera_motion_clips_builder_writes_four_clips_per_photo_with_their_cameras(
    shared_data, tmp_path):
  """The tfds builder on a 2-photo BSDS500-style folder: every record reads back pixel-exact,
  equal to the clip drawn from the photo's own seed (the same clips on every machine)."""
  import shutil
  from phipd_jax.data import builders
  source = tmp_path / 'bsds'
  for split in ('train', 'val', 'test'):
    (source / 'images' / split).mkdir(parents=True)
  names = sorted(os.listdir(os.path.join(shared_data, 'bsds500', 'images', 'test')))[:2]
  for name in names:
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', 'test', name),
                source / 'images' / 'test')
  builder = builders.prepared_builder('camera_motion_clips', str(tmp_path / 'tfds'), str(source))
  records = list(builder.as_data_source('test'))
  assert len(records) == 2 * len(clips.MOTIONS)
  text = lambda value: value.decode() if isinstance(value, bytes) else value
  record = next(r for r in records if text(r['id']) == f'{names[0][:-4]}_rotate')
  assert record['frames'].shape == (8, 64, 64, 3) and text(record['motion']) == 'rotate'
  photo = builders.read_rgb(os.path.join(source, 'images', 'test', names[0]))
  seed = int(__import__('hashlib').sha256(f'{names[0][:-4]}/rotate'.encode()).hexdigest()[:8], 16)
  frames, affines = clips.synthetic_clip(photo, np.random.default_rng(seed), 'rotate', 8, 64)
  np.testing.assert_array_equal(record['frames'], frames)
  np.testing.assert_array_equal(record['affines'], affines)
