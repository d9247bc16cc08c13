"""Clip runs (data.frames > 0) in the experiment builder and the loss: what is refused, and the
noise reading the batch's flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import clips_phipd
from phipd_jax import experiment, video_noise


@pytest.fixture
def clip_config():
  config = clips_phipd.get_config('runlocal')
  config.data.frames, config.data.image_size = 4, 16
  return config


@pytest.mark.parametrize('field, value, message', [
    ('data.frames', 0, "model.name='video_dit' trains on clips"),
    ('data.frames', 3, 'multiple of model.temporal_patch_size=2'),
    ('data.frames', -1, 'integer >= 0'),
    ('model.name', 'dit', "must be one of \\('video_dit',\\)"),
    ('noise.video', 'optical', 'must be one of'),
    ('diffusion.lwd.enabled', True, 'defined on images'),
    ('codec.workdir', '/tmp/x', 'pixel-space only'),
])
def test_clip_settings_that_cannot_train_are_named(clip_config, field, value, message):
  section, name = field.rsplit('.', 1)
  target = clip_config
  for part in section.split('.'):
    target = target[part]
  target[name] = value
  with pytest.raises(ValueError, match=f'config.{field}'.replace('.', r'\.') + '.*' + message):
    experiment.build(clip_config)


def test_an_image_run_refuses_a_clip_noise_option():
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.noise.video = 'flow_warped'
  with pytest.raises(ValueError, match=r"config\.noise\.video='flow_warped'.*data.frames > 0"):
    experiment.build(config)


def test_the_clip_loss_draws_its_noise_along_the_batch_flow(clip_config):
  """flow_warped: the loss changes with the flow (same key, same clips); per_frame: it does not.
  And the built shapes are clips: image_shape (T, H, W, C), the sampler's noise 5-D."""
  batch = {'image': jax.random.uniform(jax.random.key(0), (2, 4, 16, 16, 3), minval=-1,
                                       maxval=1), 'label': jnp.zeros((2,), jnp.int32)}
  still = jnp.zeros((2, 3, 16, 16, 2))
  pan = still.at[..., 0].set(2.0)
  losses = {}
  for option in ('per_frame', 'flow_warped'):
    clip_config.noise.video = option
    exp = experiment.build(clip_config)
    assert exp.image_shape == (4, 16, 16, 3) and exp.is_clip
    params = exp.init_params(jax.random.key(1))
    loss_fn = jax.jit(exp.loss_fn())  # One compile per option, both flows.
    losses[option] = [float(loss_fn(params, dict(batch, flow=f), jax.random.key(2))[0])
                      for f in (still, pan)]
  assert losses['per_frame'][0] == losses['per_frame'][1]
  assert losses['flow_warped'][0] != losses['flow_warped'][1]
  sampler = exp.sampler(video='spatiotemporal')
  eps = sampler.noise(batch['image'], jax.random.key(3), jnp.float32(2.0))
  np.testing.assert_allclose(eps, video_noise.video_fss(jax.random.key(3), batch['image'], 2.0,
                                                        'spatiotemporal'), atol=1e-6)
  with pytest.raises(ValueError, match='must be one of'):
    exp.sampler(video='optical')


CLIP_MESH_SCRIPT = '''
import jax, jax.numpy as jnp, numpy as np
from configs import clips_phipd
from phipd_jax import benchmarking, experiment, sharding
config = clips_phipd.get_config('runlocal,video=flow_warped')
config.data.frames, config.data.image_size, config.train.batch_size = 4, 16, 8
config.model.remat = 'full'
images = jax.random.uniform(jax.random.key(0), (8, 4, 16, 16, 3), minval=-1, maxval=1)
batch = {'image': np.asarray(images), 'label': np.zeros((8,), np.int32),
         'flow': np.asarray(benchmarking.random_flow(jax.random.key(1), images.shape))}
losses = {}
for data, fsdp in [(8, 1), (2, 4), (1, 8)]:
  config.mesh.data, config.mesh.fsdp = data, fsdp
  mesh = sharding.make_mesh(data, fsdp)
  exp = experiment.build(config, sharding.data_parallel_size(mesh))
  state = exp.create_train_state(mesh)
  step = exp.train_step(mesh, state)
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(batch, mesh))
  losses[(data, fsdp)] = float(metrics['loss'])
print(losses)
values = list(losses.values())
np.testing.assert_allclose(values, values[0], rtol=1e-5)
print('OK')
'''


def test_a_clip_train_step_on_8_devices_splits_like_one_whatever_the_mesh():
  """The clip step (video DiT with remat, flow-warped noise reading the batch's flow) gives the
  same loss on 8 x 1, 2 x 4 and 1 x 8 meshes of 8 host devices."""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  result = subprocess.run([sys.executable, '-c', CLIP_MESH_SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-3000:]
