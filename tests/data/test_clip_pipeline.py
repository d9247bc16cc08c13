"""The clip input path (data.frames > 0): resize, crop and flip keep a clip's flow true."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from phipd_jax.data import clips, pipeline
from phipd_jax.evaluation import temporal


@pytest.fixture(scope='module')
def clip_example():
  frames, affines = clips.synthetic_clip(skimage.data.astronaut(), np.random.default_rng(3),
                                         'mixed', 5, 64)
  return pipeline.Example(frames, 0, flow=clips.clip_flow(affines, 64))


def _errors(example):
  x = jnp.asarray(pipeline.to_model_range(example.image))[None]
  flow = jnp.asarray(example.flow)[None]
  return (float(temporal.warping_error(x, flow)[0]),
          float(temporal.warping_error(x, jnp.zeros_like(flow))[0]))


def test_resize_crop_and_flip_keep_the_frames_on_their_flow(clip_example):
  """After resize (flow vectors scaled), a crop (vectors unchanged) and a mirror (dx negated),
  the next frame warped back along the carried flow still lands on the previous one."""
  with_flow, without = _errors(clip_example)
  assert with_flow < 0.25 * without
  resized = pipeline.resize_clip(clip_example, 40)
  assert resized.image.shape == (5, 40, 40, 3) and resized.flow.shape == (4, 40, 40, 2)
  np.testing.assert_allclose(np.abs(resized.flow).mean(), np.abs(clip_example.flow).mean() * 40
                             / 64, rtol=0.05)
  for flip in (False, True):
    cropped = pipeline.crop_clip(resized, 3, 5, 32, flip)
    assert cropped.image.shape == (5, 32, 32, 3) and cropped.flow.shape == (4, 32, 32, 2)
    with_flow, without = _errors(cropped)
    assert with_flow < 0.25 * without, (flip, with_flow, without)
  wrong = dataclasses.replace(cropped, flow=cropped.flow * np.array([-1.0, 1.0], np.float32))
  assert _errors(wrong)[0] > 2 * _errors(cropped)[0]  # The mirror's sign matters.


def test_a_pan_mirrored_pans_the_other_way_and_augment_crops_every_frame_alike(clip_example):
  flow = np.zeros((2, 8, 8, 2), np.float32)
  flow[..., 0], flow[..., 1] = 1.5, -0.5
  example = pipeline.Example(np.zeros((3, 8, 8, 3), np.uint8), 0, flow=flow)
  mirrored = pipeline.crop_clip(example, 1, 2, 4, flip=True).flow
  np.testing.assert_array_equal(mirrored[..., 0], -1.5)
  np.testing.assert_array_equal(mirrored[..., 1], -0.5)
  out = pipeline._Augment(48, flip=True).random_map(clip_example, np.random.default_rng(0))
  assert out['image'].shape == (5, 48, 48, 3) and out['flow'].shape == (4, 48, 48, 2)
  frames = pipeline.to_model_range(clip_example.image)
  offsets = [(top, left) for top in range(17) for left in range(17)
             if any(np.array_equal(out['image'][0], f[top:top + 48, left:left + 48][:, ::s])
                    for f in frames[:1] for s in (1, -1))]
  assert len(offsets) == 1  # Frame 0 is one window of the source ...
  top, left = offsets[0]
  mirrored = not np.array_equal(out['image'][0], frames[0, top:top + 48, left:left + 48])
  expected = pipeline.crop_clip(clip_example, top, left, 48, mirrored)
  np.testing.assert_array_equal(out['image'], pipeline.to_model_range(expected.image))
  np.testing.assert_array_equal(out['flow'], expected.flow)  # ... and so is every frame.


def test_a_clip_record_gives_its_first_frames_and_their_flow(clip_example):
  data = type('Data', (), dict(image_key='frames', label_key='', frames=3))()
  affines = np.stack([np.eye(2, 3, dtype=np.float32)] * 5)
  affines[:, 0, 2] = np.arange(5)  # A pan of 1 pixel per frame.
  record = {'frames': clip_example.image, 'affines': affines}
  example = pipeline._decode(record, data)
  assert example.image.shape == (3, 64, 64, 3) and example.flow.shape == (2, 64, 64, 2)
  np.testing.assert_allclose(example.flow[..., 0], -1.0, atol=1e-5)
  estimated = dict(frames=clip_example.image, flow=np.ones((4, 64, 64, 2), np.float32))
  np.testing.assert_array_equal(pipeline._decode(estimated, data).flow, 1.0)
  data.image_key = 'image'
  with pytest.raises(ValueError, match="data.image_key='image'.*image_key='frames'"):
    pipeline._decode(record, data)
  data.image_key = 'frames'
  with pytest.raises(ValueError, match="needs a 'flow' or 'affines'"):
    pipeline._decode({'frames': clip_example.image}, data)
  data.frames = 6
  with pytest.raises(ValueError, match=r'data.frames=6.*T >= 6'):
    pipeline._decode(record, data)
