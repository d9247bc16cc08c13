"""The spatio-temporal DiT (phipd_jax.models.video_dit): one-frame clips are images, factorised
attention keeps frames apart until its temporal gate opens, 3-D patches round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax import models
from phipd_jax.models.dit import DiT
from phipd_jax.models import video_dit


def _randomise(model, scale=0.05, seed=1, keep_zero=()):
  """Every parameter perturbed (zero-initialised adaLN and output layers included), except the
  paths containing one of ``keep_zero``."""
  flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
  key = jax.random.key(seed)
  for index, (path, leaf) in enumerate(flat):
    if any(name in map(str, path) for name in keep_zero):
      continue
    noise = scale * jax.random.normal(jax.random.fold_in(key, index), leaf.value.shape)
    leaf.value = leaf.value + noise
  nnx.update(model, nnx.from_flat_state(flat))
  return model


def _video(attention, **kwargs):
  return video_dit.VideoDiT(in_channels=3, patch_size=2, hidden=32, depth=2, heads=4,
                            attention=attention, rngs=nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize('attention', video_dit.VIDEO_ATTENTION)
def test_a_one_frame_clip_is_an_image_to_a_video_dit_with_image_weights(attention):
  """An image DiT's weights in a video DiT (pt = 1): same output on a one-frame clip."""
  image = _randomise(DiT(in_channels=3, patch_size=2, hidden=32, depth=2, heads=4,
                                 num_classes=5, rngs=nnx.Rngs(0)))
  video = _video(attention, num_classes=5)
  image_params = dict(nnx.to_flat_state(nnx.state(image, nnx.Param)))
  flat = nnx.to_flat_state(nnx.state(video, nnx.Param))
  for path, leaf in flat:
    if path in image_params:
      value = image_params[path].value
      leaf.value = value[None] if path[0] == 'patch_embed' and path[-1] == 'kernel' else value
    else:  # The temporal branch: random, but its gate is what keeps it out.
      assert 'time' in str(path[1:]), path
      leaf.value = leaf.value + (0.0 if 'adaln_time' in str(path) else 0.05)
  nnx.update(video, nnx.from_flat_state(flat))
  x = jax.random.normal(jax.random.key(2), (3, 8, 8, 3))
  t, y = jnp.array([0.1, 0.5, 0.9]), jnp.array([0, 4, 2])
  np.testing.assert_allclose(video(x[:, None], t, y)[:, 0], image(x, t, y), atol=2e-5)


def test_factorised_attention_keeps_frames_apart_until_the_temporal_gate_opens():
  x = jax.random.normal(jax.random.key(3), (2, 4, 8, 8, 3))
  changed = x.at[:, 2].add(1.0)
  others = np.array([0, 1, 3])
  closed = _randomise(_video('factorised'), keep_zero=('adaln_time',))
  difference = np.abs(np.asarray(closed(changed, jnp.full(2, 0.3)) - closed(x, jnp.full(2, 0.3))))
  assert difference[:, 2].max() > 1e-3 and difference[:, others].max() == 0.0
  for model in (_randomise(_video('factorised')), _randomise(_video('full'))):
    difference = np.abs(np.asarray(model(changed, jnp.full(2, 0.3)) - model(x, jnp.full(2, 0.3))))
    assert difference[:, others].max() > 1e-4  # Frames now see each other.


def test_unpatchify_3d_inverts_patching_and_positions_are_zero_at_frame_zero():
  """Token k of frame-major, row-major order holds its (pt, p, p) patch as (row, column, frame,
  channel); with pt = 1 it is the image unpatchify of every frame."""
  np.testing.assert_array_equal(video_dit.sincos_positions_time(3, 8)[0], np.zeros(8))
  x = np.random.default_rng(0).normal(size=(2, 4, 6, 8, 3)).astype(np.float32)
  pt, p = 2, 2
  tokens = np.stack([x[b, f * pt:(f + 1) * pt, i * p:(i + 1) * p, j * p:(j + 1) * p]
                     .transpose(1, 2, 0, 3).reshape(-1)
                     for b in range(2) for f in range(2) for i in range(3) for j in range(4)])
  tokens = tokens.reshape(2, 2 * 3 * 4, -1)
  np.testing.assert_array_equal(video_dit.unpatchify_3d(jnp.asarray(tokens), 2, 3, 4, pt, p), x)
  from phipd_jax.models import layers
  frame_tokens = jnp.asarray(tokens[:, :12, :]).reshape(2, 12, 2, 2, 2, 3)[..., 0, :].reshape(
      2, 12, 12)
  np.testing.assert_array_equal(
      video_dit.unpatchify_3d(frame_tokens, 1, 3, 4, 1, p)[:, 0],
      layers.unpatchify(frame_tokens, 3, 4, p))


def test_registry_builds_it_and_refuses_bad_settings():
  model = models.build('video_dit', rngs=nnx.Rngs(0), in_channels=3, image_size=16,
                       size='tiny', patch_size=4, temporal_patch_size=2, attention='factorised')
  assert isinstance(model, video_dit.VideoDiT) and models.objective('video_dit') == 'diffusion'
  out = jax.jit(lambda x, t: model(x, t))(jnp.zeros((1, 4, 16, 16, 3)), jnp.zeros(1))
  assert out.shape == (1, 4, 16, 16, 3)
  with pytest.raises(ValueError, match="model.attention='axial'"):
    models.build('video_dit', rngs=nnx.Rngs(0), in_channels=3, image_size=16, size='tiny',
                 patch_size=4, attention='axial')
  with pytest.raises(ValueError, match='temporal_patch_size=2'):
    model(jnp.zeros((1, 3, 16, 16, 3)), jnp.zeros(1))
  with pytest.raises(ValueError, match=r'\[B, T, H, W, C\]'):
    model(jnp.zeros((1, 16, 16, 3)), jnp.zeros(1))
