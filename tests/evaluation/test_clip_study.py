"""The video study's rows and metrics (phipd_jax.evaluation.clip_study)."""

import jax.numpy as jnp
import numpy as np
import skimage.data

from phipd_jax import video_noise
from phipd_jax.data import clips, pipeline
from phipd_jax.evaluation import clip_study, perceptual, temporal


def test_rows_cover_every_noise_option_and_both_sdedit_noises():
  rows = clip_study.study_rows([2.0, 4.0], [0.75])
  phipd = [(r['radius'], r['noise']) for r in rows if r['method'] == 'phipd']
  assert phipd == [(r, o) for r in (2.0, 4.0) for o in video_noise.VIDEO_OPTIONS]
  assert [(r['strength'], r['noise']) for r in rows if r['method'] == 'sdedit'] == [
      (0.75, 'per_frame'), (0.75, 'flow_warped')]
  assert clip_study.row_title(rows[-1]) == 'SDEdit s=0.75 flow_warped'


def test_metrics_of_the_input_are_its_floor_and_independent_frames_score_worse():
  """The input against itself: structure 1, FD 0, warping error that of temporal.py; the same
  frames in reversed order (content that does not follow the flow) are worse on both temporal
  metrics and keep per-frame structure only where frames agree."""
  made = [clips.synthetic_clip(photo, np.random.default_rng(i), 'pan', 4, 32)
          for i, photo in enumerate([skimage.data.astronaut(), skimage.data.coffee()])]
  inputs = pipeline.to_model_range(np.stack([m[0] for m in made]))
  flow = np.stack([clips.clip_flow(m[1], 32) for m in made])
  reference = perceptual.vgg_features(inputs.reshape((-1, 32, 32, 3)))
  own = clip_study.clip_metrics(inputs, inputs, flow, reference)
  assert own['gradient_correlation'] > 0.999 and own['edge_f'] > 0.999
  assert abs(own['fd_vgg']) < 1e-2
  np.testing.assert_allclose(own['warping_error'], float(np.mean(temporal.warping_error(
      jnp.asarray(inputs), jnp.asarray(flow)))), rtol=1e-6)
  shuffled = inputs[:, ::-1]
  other = clip_study.clip_metrics(shuffled, inputs, flow, reference)
  assert other['warping_error'] > 3 * own['warping_error']
  assert other['flicker'] > own['flicker']
  assert other['gradient_correlation'] < own['gradient_correlation']
