"""Training: loss goes down, checkpoints round-trip, resume is bit-exact, 8 devices == 1."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train as train_script
from phipd_jax import checkpoint, diffusion, noise as noise_lib, sharding, training
from phipd_jax.data import pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fifty_steps_on_the_embedded_photos_lower_the_loss(tiny_config):
  config = tiny_config
  config.train.num_steps = 50
  config.optim.warmup_steps = 5
  config.optim.learning_rate = 2e-3
  mesh = sharding.make_mesh()
  graphdef, state, optimizer = training.create_train_state(config, mesh)
  train_step = training.make_train_step(config, graphdef, optimizer, mesh, state)
  dataset = pipeline.train_dataset(config.data, 8, 0, 50)
  probe = jnp.asarray(np.concatenate([dataset[i]['image'] for i in range(4)]))
  process = diffusion.process_from_config(config.diffusion)
  noise_fn = noise_lib.training_noise_fn('fss', r0=0.0, rate=config.noise.rate)

  def probe_loss(params):  # Fixed images, times and noise: a deterministic yardstick.
    losses = [diffusion.diffusion_loss(process, training.apply_model(graphdef, params), probe,
                                       jax.random.key(k), noise_fn, 'v') for k in range(4)]
    return float(np.mean(losses))

  before = probe_loss(state.params)
  for step in range(50):
    state, metrics = train_step(state, sharding.global_batch(dataset[step], mesh))
    assert np.isfinite(float(metrics['loss']))
  after = probe_loss(state.params)
  assert after < 0.75 * before, (before, after)
  assert int(state.step) == 50


def test_checkpoint_round_trip(tiny_config, tmp_path):
  mesh = sharding.make_mesh()
  _, state, _ = training.create_train_state(tiny_config, mesh)
  state = state.replace(step=jnp.int32(7))
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(7, state, force=True)
  checkpointer.wait()
  _, fresh, _ = training.create_train_state(tiny_config.copy_and_resolve_references(), mesh)
  fresh = jax.tree.map(jnp.zeros_like, fresh)
  restored = checkpointer.restore(fresh)
  checkpointer.close()
  _assert_trees_equal(restored, state)
  assert int(restored.step) == 7
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpoint.Checkpointer(str(tmp_path / 'empty')).restore(fresh)


def test_stopped_and_resumed_run_equals_uninterrupted_run(tiny_config, tmp_path):
  uninterrupted = train_script.train(tiny_config, str(tmp_path / 'a'))
  train_script.train(tiny_config, str(tmp_path / 'b'), stop_after=4)
  assert sorted(os.listdir(tmp_path / 'b' / 'checkpoints')) == ['3', '4']
  resumed = train_script.train(tiny_config, str(tmp_path / 'b'))
  _assert_trees_equal(resumed, uninterrupted)  # params, EMA, optimizer state, step, key.
  rows = [r['step'] for r in train_script.writers.read_metrics(str(tmp_path / 'b'))]
  assert rows == [2, 4, 6]  # Logged once per window, none lost or repeated across the restart.


def test_init_from_copies_params_and_restarts_the_optimizer(tiny_config, tmp_path):
  source = train_script.train(tiny_config, str(tmp_path / 'source'), stop_after=3)
  tiny_config.init_from = str(tmp_path / 'source')
  tiny_config.train.num_steps = 1
  tiny_config.optim.warmup_steps = 0
  tiny_config.optim.learning_rate = 0.0
  finetuned = train_script.train(tiny_config, str(tmp_path / 'finetune'))
  _assert_trees_equal(finetuned.params, source.params)  # lr 0: one step changes nothing.
  assert int(finetuned.step) == 1


def test_eight_devices_give_the_same_loss_as_one():
  script = textwrap.dedent('''
      import jax, numpy as np
      from configs import quickstart
      from phipd_jax import sharding, training
      from phipd_jax.data import pipeline
      import sys
      config = quickstart.get_config('runlocal')
      config.data.tfds_dir = sys.argv[1]
      config.data.image_size, config.train.batch_size = 16, 8
      assert jax.device_count() == 8
      dataset = pipeline.train_dataset(config.data, 8, 0, 3)
      results = []
      for devices in [jax.devices(), jax.devices()[:1]]:
        mesh = sharding.make_mesh(devices=devices)
        graphdef, state, optimizer = training.create_train_state(config, mesh)
        step = training.make_train_step(config, graphdef, optimizer, mesh, state)
        losses = []
        for i in range(3):
          state, metrics = step(state, sharding.global_batch(dataset[i], mesh))
          losses.append(float(metrics['loss']))
        results.append((losses, jax.tree.leaves(jax.device_get(state.params))))
      (l8, p8), (l1, p1) = results
      print('losses', l8, l1)
      np.testing.assert_allclose(l8, l1, rtol=1e-5)
      for a, b in zip(p8, p1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
      print('OK')
  ''')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=REPO_ROOT)
  tfds_dir = os.path.join(REPO_ROOT, '.pytest_cache', 'tfds_8dev')
  result = subprocess.run([sys.executable, '-c', script, tfds_dir], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-3000:]


@pytest.mark.parametrize('field, value, message', [
    ('data.image_size', 18, 'patch_size'),
    ('train.batch_size', 0, 'batch_size'),
    ('noise.r0', -1.0, 'noise.r0'),
    ('noise.kind', 'pink', 'noise.kind'),
    ('sample.sampler', 'ddim', 'sample.sampler'),
    ('optim.warmup_steps', 10, 'warmup_steps'),
])
def test_config_validation_names_the_field(tiny_config, field, value, message):
  section, name = field.split('.')
  tiny_config[section][name] = value
  with pytest.raises(ValueError, match=message):
    training.validate_config(tiny_config)


def test_batch_must_divide_over_devices(tiny_config):
  with pytest.raises(ValueError, match='data-parallel'):
    training.validate_config(tiny_config, data_parallel_size=3)


SHIPPED_CONFIGS = sorted(
    name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, 'configs'))
    if name.endswith('.py') and name not in ('__init__.py', 'common.py'))


@pytest.mark.parametrize('name', SHIPPED_CONFIGS)
@pytest.mark.parametrize('variant', [None, 'runlocal'])
def test_every_shipped_config_validates(name, variant):
  import importlib
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  pod = name.startswith('imagenet') and variant is None
  devices = 64 if pod else 1  # The pod configs are sized for a v5e-64 slice.
  training.validate_config(config, data_parallel_size=devices)
  assert config.noise.kind in ('fss', 'gaussian')
  if pod:
    assert config.mesh.data * config.mesh.fsdp == 64


def test_train_step_compiles_once_across_steps_and_a_restore(tiny_config, tmp_path):
  mesh = sharding.make_mesh()
  graphdef, state, optimizer = training.create_train_state(tiny_config, mesh)
  train_step = training.make_train_step(tiny_config, graphdef, optimizer, mesh, state)
  dataset = pipeline.train_dataset(tiny_config.data, 8, 0, 6)
  for step in range(2):
    state, _ = train_step(state, sharding.global_batch(dataset[step], mesh))
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(2, state, force=True)
  checkpointer.wait()
  state = checkpointer.restore(state)
  checkpointer.close()
  for step in range(2, 4):
    state, _ = train_step(state, sharding.global_batch(dataset[step], mesh))
  assert train_step._cache_size() == 1  # No recompilation between steps or after resuming.


def test_ddpm_class_conditional_run_trains_and_samples(tiny_config, tmp_path):
  """The DDPM + eps + DDIM path and labels with guidance, through train.py's loop."""
  config = tiny_config
  config.diffusion.process, config.diffusion.prediction = 'ddpm', 'eps'
  config.sample.sampler, config.sample.num_steps = 'ddim', 3
  config.model.num_classes, config.sample.guidance_scale = 2, 2.0
  config.train.num_steps, config.train.checkpoint_every = 3, 3
  config.sample.write_grids = True
  state = train_script.train(config, str(tmp_path))
  assert int(state.step) == 3
  samples = np.load(tmp_path / 'samples' / 'generate_000003.npz')['samples']
  assert samples.shape == (4, 16, 16, 3) and np.all(np.isfinite(samples))
  assert (tmp_path / 'samples' / 'translate_000003.png').exists()
