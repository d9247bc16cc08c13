"""LoRA (phipd_jax.lora and its runs): step 0 equals the base exactly, training changes only the
adapters (the base bit-identical), merged layers equal the unmerged low-rank path, small adapter
checkpoints, loading merges once, and bad settings fail before anything is written."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax import checkpoint, experiment, lora, saved_run, trainer


@pytest.fixture(scope='module')
def base_run(tmp_path_factory, tfds_dir):
  """A 6-step quickstart base (tiny DiT, 16 px)."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size, config.data.resize = 16, 48
  config.train.batch_size, config.train.num_steps = 8, 6
  config.train.checkpoint_every, config.train.log_every = 6, 3
  config.optim.warmup_steps = 2
  config.sample.write_grids = False
  workdir = str(tmp_path_factory.mktemp('base'))
  trainer.train(experiment.build(config), workdir)
  return config, workdir


def lora_config(base_run, rank=4, **overrides):
  config, workdir = base_run
  config = config.copy_and_resolve_references()
  config.init_from = workdir
  config.lora.rank = rank
  config.lora.alpha = 8.0
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def flat(tree):
  return {'.'.join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(tree)}


def test_step_zero_equals_the_base_exactly(base_run):
  exp = experiment.build(lora_config(base_run))
  base = saved_run.load_lora_base(exp)
  exp = exp.with_lora_base(base)
  adapters = exp.init_params(jax.random.key(0))
  assert set(adapters) and all(np.all(np.asarray(a['b']) == 0) for a in adapters.values())
  merged, original = flat(exp.model_params(adapters)), flat(base)
  assert merged.keys() == original.keys()
  assert all(np.array_equal(merged[k], original[k]) for k in merged)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  t = jnp.array([0.2, 0.7])
  assert np.array_equal(exp.apply_fn(exp.model_params(adapters))(x, t, None),
                        exp.apply_fn(base)(x, t, None))


def test_merged_layers_equal_the_unmerged_low_rank_path(base_run):
  spec = lora.LoraSpec(rank=4, alpha=8.0, targets=('qkv', 'proj', 'mlp', 'adaln'))
  exp = experiment.build(lora_config(base_run))
  base = saved_run.load_lora_base(exp)
  adapters = lora.init_adapters(jax.random.key(2), base, spec)
  adapters = {name: {'a': a['a'], 'b': jax.random.normal(jax.random.fold_in(jax.random.key(3), i),
                                                         a['b'].shape) * 0.1}
              for i, (name, a) in enumerate(sorted(adapters.items()))}
  merged = flat(lora.merge(base, adapters, spec))
  original = flat(base)
  rng = np.random.RandomState(0)
  kernels = lora.target_kernels(base, spec)
  assert len(kernels) == 4 * 5  # 4 blocks x (qkv, proj, mlp_in, mlp_out, adaln).
  for name, (path, _) in kernels.items():
    key = '.'.join(map(str, path))
    x_in = rng.randn(5, original[key].shape[0]).astype(np.float32)
    unmerged = x_in @ original[key] + spec.scale * (x_in @ np.asarray(adapters[name]['a'])) @ (
        np.asarray(adapters[name]['b']))
    np.testing.assert_allclose(x_in @ merged[key], unmerged, rtol=1e-5, atol=1e-5)
  untouched = [k for k in original if not any(k == '.'.join(map(str, p))
                                             for p, _ in kernels.values())]
  assert all(np.array_equal(merged[k], original[k]) for k in untouched)


def random_adapters(base, spec, seed=2):
  adapters = lora.init_adapters(jax.random.key(seed), base, spec)
  return {name: {'a': a['a'], 'b': 0.1 * jax.random.normal(
      jax.random.fold_in(jax.random.key(seed + 1), i), a['b'].shape)}
          for i, (name, a) in enumerate(sorted(adapters.items()))}


def test_the_low_rank_training_path_equals_the_merged_network(base_run):
  """Training runs x W + s (x A) B (never A B): same outputs and adapter gradients as merging."""
  exp = experiment.build(lora_config(base_run))
  base = saved_run.load_lora_base(exp)
  spec = exp.lora
  adapters = random_adapters(base, spec)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  t = jnp.array([0.2, 0.7])
  merged = exp.apply_fn(lora.merge(base, adapters, spec))(x, t, None)
  unmerged = jax.jit(lambda a: exp.apply_fn(lora.low_rank(base, a, spec))(x, t, None))(adapters)
  assert float(jnp.max(jnp.abs(merged))) > 0.1  # The adapters change the output...
  assert not np.allclose(merged, exp.apply_fn(base)(x, t, None), atol=1e-3)
  np.testing.assert_allclose(unmerged, merged, rtol=1e-5, atol=1e-5)  # ...the same way.
  objective = lambda f: (lambda a: jnp.sum(exp.apply_fn(f(base, a, spec))(x, t, None) ** 2))
  grad_merged = jax.grad(objective(lora.merge))(adapters)
  grad_low_rank = jax.jit(jax.grad(objective(lora.low_rank)))(adapters)
  for name in adapters:
    for part in 'ab':
      scale = float(jnp.max(jnp.abs(grad_merged[name][part])))
      np.testing.assert_allclose(grad_low_rank[name][part], grad_merged[name][part],
                                 atol=1e-4 * max(scale, 1e-6), rtol=1e-4)


@pytest.mark.parametrize('with_bias', [True, False])
def test_the_one_product_low_rank_layer_matches_its_definition(with_bias):
  """layers._low_rank_dense = x W + (x' A) B (+ bias): value and every gradient, against
  automatic differentiation of the definition."""
  from phipd_jax.models import layers  # pylint: disable=g-import-not-at-top
  keys = jax.random.split(jax.random.key(0), 6)
  x, x_in = jax.random.normal(keys[0], (10, 12)), jax.random.normal(keys[1], (10, 12))
  kernel, a = jax.random.normal(keys[2], (12, 7)), jax.random.normal(keys[3], (12, 3))
  b = jax.random.normal(keys[4], (3, 7))
  bias = jax.random.normal(keys[5], (7,)) if with_bias else None
  cotangent = jnp.cos(jnp.arange(70.0)).reshape(10, 7)

  def definition(x, x_in, kernel, bias, a, b):
    out = x @ kernel + (x_in @ a) @ b
    return out if bias is None else out + bias

  args = (x, x_in, kernel, bias, a, b)
  np.testing.assert_allclose(layers._low_rank_dense(*args), definition(*args), rtol=1e-5,
                             atol=1e-5)
  ours = jax.vjp(layers._low_rank_dense, *args)[1](cotangent)
  reference = jax.vjp(definition, *args)[1](cotangent)
  assert (ours[3] is None) == (not with_bias)
  for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  assert len(jax.tree.leaves(ours)) == len(jax.tree.leaves(reference)) == 5 + with_bias


def test_lora_dropout_drops_the_adapter_input_only_when_training(base_run):
  exp = experiment.build(lora_config(base_run))
  base = saved_run.load_lora_base(exp)
  spec = lora.LoraSpec(4, 8.0, exp.lora.targets, dropout=0.5)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  t = jnp.array([0.2, 0.7])
  out = lambda adapters, key: exp.apply_fn(lora.low_rank(base, adapters, spec, key))(x, t, None)
  # B = 0: the dropped branch is still zero (to rounding: the training path's one product over
  # [x, x' A] sums in another order than x W; the merged model is exact, test above).
  zero = exp.init_params(jax.random.key(0))
  np.testing.assert_allclose(out(zero, jax.random.key(4)), exp.apply_fn(base)(x, t, None),
                             rtol=1e-6, atol=1e-6)
  adapters = random_adapters(base, spec)
  no_key = out(adapters, None)
  np.testing.assert_allclose(no_key, exp.apply_fn(lora.merge(base, adapters, spec))(x, t, None),
                             rtol=1e-5, atol=1e-5)
  dropped, other = out(adapters, jax.random.key(4)), out(adapters, jax.random.key(5))
  assert not np.allclose(dropped, no_key, atol=1e-4) and not np.allclose(dropped, other, atol=1e-4)
  # Inverted dropout: one layer's dropped update is unbiased (mean over keys -> the full update).
  kernel = lora.LowRankKernel(jnp.zeros((64, 8)), jax.random.normal(jax.random.key(6), (64, 4)),
                              jax.random.normal(jax.random.key(7), (4, 8)), None, 2.0, 0.5)
  inputs = jax.random.normal(jax.random.key(8), (3, 64))
  keys = jax.random.split(jax.random.key(9), 4000)
  mean = jnp.mean(jax.vmap(lambda k: kernel.__class__(
      kernel.base, kernel.a, kernel.b, k, 2.0, 0.5).update(inputs))(keys), axis=0)
  full = kernel.update(inputs)
  assert float(jnp.max(jnp.abs(mean - full))) < 0.1 * float(jnp.max(jnp.abs(full)))


def test_training_changes_only_the_adapters(base_run, tmp_path):
  _, base_dir = base_run
  before = {name: open(os.path.join(root, name), 'rb').read()
            for root, _, names in os.walk(os.path.join(base_dir, 'checkpoints'))
            for name in names}
  exp = experiment.build(lora_config(base_run))
  workdir = str(tmp_path / 'lora')
  summary = trainer.train(exp, workdir)
  adapters = summary.state.params
  assert isinstance(adapters, dict) and all(set(v) == {'a', 'b'} for v in adapters.values())
  assert any(np.any(np.asarray(v['b']) != 0) for v in adapters.values())  # It trained.
  after = {name: open(os.path.join(root, name), 'rb').read()
           for root, _, names in os.walk(os.path.join(base_dir, 'checkpoints'))
           for name in names}
  assert before == after  # The base run is read, never written.
  # The adapter checkpoint is small: a fraction of the base's.
  size = lambda d: sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(d) for n in ns)
  step = lambda d: os.path.join(d, 'checkpoints', '6')
  assert size(step(workdir)) < 0.35 * size(step(base_dir))
  # Loading merges once; the merged network differs from the base after training.
  _, loaded, restored = saved_run.load_run(workdir)
  base = saved_run.load_lora_base(loaded)
  merged, original = flat(restored['ema_params']), flat(base)
  assert merged.keys() == original.keys()
  assert any(not np.array_equal(merged[k], original[k]) for k in merged)
  expected = flat(lora.merge(base, checkpoint.restore_items(
      workdir, jax.eval_shape(lambda: summary.state), ('ema_params',))['ema_params'],
                             loaded.lora))
  assert all(np.array_equal(merged[k], expected[k]) for k in merged)
  # Exported merged weights: a plain run (no base needed) with the same network.
  from phipd_jax.convert import runs  # pylint: disable=g-import-not-at-top
  runs.export_merged(workdir, str(tmp_path / 'merged'))
  _, plain, exported = saved_run.load_run(str(tmp_path / 'merged'))
  assert plain.lora is None and not plain.spec.top.init_from
  exported = flat(exported['ema_params'])
  assert all(np.array_equal(merged[k], exported[k]) for k in merged)


@pytest.mark.parametrize('overrides, message', [
    (dict(rank=1000), 'config.lora.rank=1000 is invalid: above the smaller side'),
    ({'dropout': 1.0}, r'config.lora.dropout=1.0 is invalid: must be a probability in \[0, 1\)'),
    ({'targets': ('attention',)}, 'must be one of'),
])
def test_bad_lora_settings_fail_at_build(base_run, overrides, message):
  config = lora_config(base_run, rank=overrides.pop('rank', 4))
  for name, value in overrides.items():
    config.lora[name] = value
  with pytest.raises(ValueError, match=message):
    experiment.build(config)


def test_targets_that_match_no_layer_are_an_error():
  from phipd_jax import models  # pylint: disable=g-import-not-at-top
  autoencoder = nnx.eval_shape(lambda: models.build('autoencoder', rngs=nnx.Rngs(0),
                                                    in_channels=3, image_size=16, size='tiny'))
  with pytest.raises(ValueError, match='match no layer'):
    lora.target_kernels(nnx.state(autoencoder, nnx.Param), lora.LoraSpec(4, 0.0, ('qkv',)))


def test_a_lora_run_needs_a_base_and_the_same_network(base_run, tmp_path):
  config = lora_config(base_run)
  config.init_from = ''
  with pytest.raises(ValueError, match='set config.init_from'):
    experiment.build(config)
  config = lora_config(base_run)
  config.init_from = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='has no checkpoint'):
    trainer.train(experiment.build(config), str(tmp_path / 'a'))
  assert not os.path.exists(tmp_path / 'a')
  config = lora_config(base_run)
  config.model.size = 'small'  # Another width than the base's tiny DiT.
  with pytest.raises(ValueError, match='other parameter shapes'):
    trainer.train(experiment.build(config), str(tmp_path / 'b'))
  assert not os.path.exists(tmp_path / 'b')


def test_lora_base_is_split_over_fsdp_and_the_step_matches_data_parallel():
  """On 8 host devices (data 2 x fsdp 4), a LoRA step holds its frozen base split over ``fsdp``
  like the parameters it stands for, and computes what the data-parallel step (8 x 1, the base
  replicated) computes."""
  script = '''
    import jax, numpy as np
    from configs import quickstart
    from phipd_jax import experiment, sharding
    config = quickstart.get_config('runlocal')
    config.init_from, config.lora.rank, config.train.batch_size = 'base', 4, 8
    config.data.image_size, config.mesh.fsdp_min_size = 16, 1024
    results = []
    for data, fsdp in ((2, 4), (8, 1)):
      config.mesh.data, config.mesh.fsdp = data, fsdp
      exp = experiment.build(config, data_parallel_size=data)
      exp = exp.with_lora_base(exp.model_init_params(jax.random.key(3)))
      mesh = sharding.make_mesh(data, fsdp)
      state = exp.create_train_state(mesh)
      step = exp.train_step(mesh, state)
      base = jax.tree.leaves(step.constants['lora_base'])
      split = [x for x in base if 'fsdp' in str(x.sharding.spec)]
      if fsdp > 1:
        assert split and all(x.addressable_shards[0].data.size * fsdp == x.size for x in split)
        print('split', len(split), 'of', len(base))
      images = jax.random.uniform(jax.random.key(1), (8, 16, 16, 3))
      batch = sharding.global_batch({'image': np.asarray(images),
                                     'label': np.zeros((8,), np.int32)}, mesh)
      state = state.replace(params=jax.tree.map(lambda b: b + 0.01, state.params))  # B != 0.
      state, metrics = step(state, batch)
      results.append((float(metrics['loss']), jax.device_get(state.params)))
    (loss_a, params_a), (loss_b, params_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print('ok')
  '''
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
             XLA_FLAGS='--xla_force_host_platform_device_count=8')
  result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], env=env,
                          cwd=env['PYTHONPATH'], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-3000:]
  assert 'split' in result.stdout
