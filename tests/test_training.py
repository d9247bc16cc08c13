"""The train step over any loss: loss goes down, compiles once (8 devices: tests/test_trainer.py)."""


import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import checkpoint, diffusion, experiment, sharding
from phipd_jax.data import pipeline

def test_fifty_steps_on_the_embedded_photos_lower_the_loss(tiny_config):
  config = tiny_config
  config.train.num_steps = 50
  config.optim.warmup_steps = 5
  config.optim.learning_rate = 2e-3
  mesh = sharding.make_mesh()
  exp = experiment.build(config)
  state = exp.create_train_state(mesh)
  train_step = exp.train_step(mesh, state)
  dataset = pipeline.train_dataset(config.data, 8, 0, 50)
  probe = jnp.asarray(np.concatenate([dataset[i]['image'] for i in range(4)]))
  noise_fn = exp.noise_fn

  def probe_loss(params):  # Fixed images, times and noise: a deterministic yardstick.
    losses = [diffusion.diffusion_loss(exp.process, exp.apply_fn(params), probe,
                                       jax.random.key(k), noise_fn, 'v') for k in range(4)]
    return float(np.mean(losses))

  before = probe_loss(state.params)
  for step in range(50):
    state, metrics = train_step(state, sharding.global_batch(dataset[step], mesh))
    assert np.isfinite(float(metrics['loss']))
  after = probe_loss(state.params)
  assert after < 0.75 * before, (before, after)
  assert int(state.step) == 50


def test_train_step_takes_any_loss():
  """The step differentiates whatever loss it is given (here a quadratic with a known optimum)."""
  import optax
  from phipd_jax import training
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  target = jnp.arange(4.0)
  init = lambda key: {'w': jnp.zeros(4)}
  optimizer = optax.sgd(0.25)
  state = training.create_train_state(init, optimizer, mesh, seed=0)
  loss_fn = lambda params, batch, key: (jnp.sum((params['w'] - batch['x']) ** 2),
                                        {'w0': params['w'][0]})
  shardings = jax.tree.map(lambda x: x.sharding, state)
  step = training.make_train_step(loss_fn, optimizer, shardings, sharding.batch_sharding(mesh),
                                  ema_decay=0.0)
  for _ in range(30):
    state, metrics = step(state, {'x': target[None].repeat(1, 0)[0]})
  np.testing.assert_allclose(state.params['w'], target, atol=1e-5)
  assert 'w0' in metrics and 'grad_norm' in metrics


def test_train_step_compiles_once_across_steps_and_a_restore(tiny_config, tmp_path):
  mesh = sharding.make_mesh()
  exp = experiment.build(tiny_config)
  state = exp.create_train_state(mesh)
  train_step = exp.train_step(mesh, state)
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


def test_rbg_run_key_is_deterministic_restorable_and_its_own_stream(tiny_config, tmp_path):
  """config.rng_impl='rbg': the state holds an rbg key, steps are reproducible, a checkpoint
  restores into the rbg template, and the model starts from the same (threefry) init."""
  mesh = sharding.make_mesh()
  dataset = pipeline.train_dataset(tiny_config.data, 8, 0, 6)
  batch = sharding.global_batch(dataset[0], mesh)
  runs = {}
  for impl in ('threefry2x32', 'rbg', 'rbg'):
    tiny_config.rng_impl = impl
    exp = experiment.build(tiny_config)
    state = exp.create_train_state(mesh)
    init = jax.tree.map(jnp.copy, state.params)  # The step donates the state.
    state, metrics = exp.train_step(mesh, state)(state, batch)
    runs.setdefault(impl, []).append((init, state, float(metrics['loss'])))
  (t_init, t_state, t_loss), = runs['threefry2x32']
  (r_init, r_state, r_loss), (_, _, r_loss_again) = runs['rbg']
  assert t_state.rng.shape == (2,) and r_state.rng.shape == (4,)
  chex_equal = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), t_init, r_init)
  assert all(jax.tree.leaves(chex_equal))  # Same initial parameters.
  assert r_loss == r_loss_again and r_loss != t_loss  # Reproducible, and another noise stream.
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(1, r_state, force=True)
  checkpointer.wait()
  template = experiment.build(tiny_config).create_train_state(mesh)
  restored = checkpointer.restore(template)
  checkpointer.close()
  assert bool(jnp.array_equal(restored.rng, r_state.rng))
  tiny_config.rng_impl = 'philox'
  import pytest
  with pytest.raises(ValueError, match='rng_impl'):
    experiment.build(tiny_config)
