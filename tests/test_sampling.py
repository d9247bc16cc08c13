"""The translation-method table (phipd_jax.sampling.METHODS): each entry is the Sampler call it
wraps, translation_columns is built on it, and check refuses every bad setting by name."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import edges2shoes_two_domain
from phipd_jax import experiment, inputs, sampling
from phipd_jax.evaluation import collapse, translation

Setting = sampling.Setting


def _equal(a, b):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _perturbed(exp):
  """Initial parameters with every leaf perturbed (DiT's zero-initialised output layers would
  otherwise ignore the label and the input)."""
  leaves, treedef = jax.tree.flatten(exp.init_params(jax.random.key(0)))
  keys = jax.random.split(jax.random.key(3), len(leaves))
  return jax.tree.unflatten(treedef, [leaf + 0.05 * jax.random.normal(k, leaf.shape, leaf.dtype)
                                      for leaf, k in zip(leaves, keys)])


@pytest.fixture(scope='module')
def two_domain(tfds_dir):
  """A class-conditional EDM model (3 classes, 16 px, 2 steps) and its sampler, untrained."""
  config = edges2shoes_two_domain.get_config('runlocal')
  config.data.dir, config.data.tfds_dir = '', tfds_dir
  config.data.image_size = config.data.resize = 16
  config.model.patch_size = 4
  config.sample.num_steps = 2
  exp = experiment.build(config)
  return config, exp.sampler(), _perturbed(exp)


@pytest.fixture(scope='module')
def unconditional(tfds_dir):
  """The quickstart model (flow matching, unconditional) at 16 px, 2 steps, untrained."""
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir, config.data.image_size = tfds_dir, 16
  config.sample.num_steps = 2
  exp = experiment.build(config)
  return config, exp.sampler(), _perturbed(exp)


X = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
KEY = jax.random.key(2)


def test_every_method_is_the_sampler_call_it_wraps(two_domain):
  _, sampler, params = two_domain
  setting = Setting(radius=3.0, strength=0.7, source=0, target=2, guidance_scale=2.0)
  run = lambda name: sampling.METHODS[name](sampler, params, X, KEY, setting)
  outputs, noise = run('phipd')
  assert noise is None
  _equal(outputs, sampler.translate(params, X, KEY, 'phipd', 3.0, 0.7, 2, 2.0))
  outputs, noise = run('sdedit')
  assert noise is None
  _equal(outputs, sampler.translate(params, X, KEY, 'sdedit', strength=0.7, label=2,
                                    guidance_scale=2.0))
  for name in ('invert', 'ovg'):
    outputs, noise = run(name)
    expected, expected_noise = sampler.translate_by_inversion(params, X, KEY, name, 0, 2, 2.0)
    _equal(outputs, expected)
    _equal(noise, expected_noise)
    _equal(sampling.inverted_noise(sampler, params, X, KEY, name, setting),
           sampler.invert_source(params, X, KEY, name, 0))
  outputs, noise = run('generate')
  assert noise is None
  _equal(outputs, sampler.generate(params, KEY, X.shape, jnp.full((2,), 2, jnp.int32), 2.0))
  # Fields a method does not read change nothing; the ones it reads do.
  other = Setting(radius=3.0, strength=0.7, source=1, target=2, guidance_scale=2.0)
  _equal(sampling.METHODS['sdedit'](sampler, params, X, KEY, other)[0], run('sdedit')[0])
  other = Setting(radius=1.0, strength=0.7, source=0, target=2, guidance_scale=2.0)
  assert not np.allclose(np.asarray(sampling.METHODS['phipd'](sampler, params, X, KEY, other)[0]),
                         np.asarray(run('phipd')[0]))
  # Plain inversion for a method that does not invert: conditioned on the source class.
  _equal(sampling.inverted_noise(sampler, params, X, KEY, 'phipd', setting),
         sampler.invert(params, X, jnp.zeros((2,), jnp.int32)))


def test_unconditional_methods_are_the_sampler_calls(unconditional):
  _, sampler, params = unconditional
  setting = Setting(radius=2.0, strength=0.6)
  _equal(sampling.METHODS['phipd'](sampler, params, X, KEY, setting)[0],
         sampler.translate(params, X, KEY, 'phipd', 2.0, 0.6))
  _equal(sampling.METHODS['sdedit'](sampler, params, X, KEY, setting)[0],
         sampler.translate(params, X, KEY, 'sdedit', strength=0.6))
  _equal(sampling.METHODS['generate'](sampler, params, X, KEY, setting)[0],
         sampler.generate(params, KEY, X.shape))
  _equal(sampling.inverted_noise(sampler, params, X, KEY, 'sdedit', setting),
         sampler.invert(params, X))


def test_study_rows_run_through_the_table_in_keyed_chunks(unconditional, two_domain):
  _, sampler, params = unconditional
  row = {'method': 'structured_sdedit', 'radius': 2.0, 'strength': 0.6}
  outputs, noise = translation.run_method(sampler, params, np.asarray(X), KEY, row, batch_size=1)
  setting = Setting(radius=2.0, strength=0.6)
  for start in range(2):  # Chunk `start` gets fold_in(key, start); outputs clipped to [-1, 1].
    expected = sampling.METHODS['phipd'](sampler, params, X[start:start + 1],
                                         jax.random.fold_in(KEY, start), setting)[0]
    _equal(outputs[start:start + 1], np.clip(np.asarray(expected), -1, 1))
  assert noise is None
  _, sampler, params = two_domain
  row = {'method': 'ovg', 'radius': None, 'strength': 1.0}
  outputs, noise = translation.run_method(sampler, params, np.asarray(X), KEY, row,
                                          classes=(0, 2), guidance_scale=2.0)
  expected, inverted = sampling.METHODS['ovg'](
      sampler, params, X, jax.random.fold_in(KEY, 0),
      Setting(source=0, target=2, guidance_scale=2.0))
  _equal(outputs, np.clip(np.asarray(expected), -1, 1))
  _equal(noise, inverted)


def test_translation_columns_titles_order_and_key(two_domain):
  _, sampler, params = two_domain
  columns = sampling.translation_columns(sampler, params, X, KEY, (2.0, 4.0), 0.8, (0.5,),
                                         (0, 1), 3.0)
  assert [title for title, _ in columns] == ['phi-PD r=2', 'phi-PD r=4', 'SDEdit s=0.5',
                                             'inversion', 'OVG']
  expected = [sampler.translate(params, X, KEY, 'phipd', r, 0.8, 1, 3.0) for r in (2.0, 4.0)]
  expected.append(sampler.translate(params, X, KEY, 'sdedit', strength=0.5, label=1,
                                    guidance_scale=3.0))
  expected += [sampler.translate_by_inversion(params, X, KEY, m, 0, 1, 3.0)[0]
               for m in ('invert', 'ovg')]
  for (_, got), want in zip(columns, expected):
    _equal(got, want)


def test_translation_columns_without_classes_or_ovg(unconditional):
  _, sampler, params = unconditional
  columns = sampling.translation_columns(sampler, params, X, KEY, (4.0,), 1.0, (0.5, 0.75))
  assert [title for title, _ in columns] == ['phi-PD r=4', 'SDEdit s=0.5', 'SDEdit s=0.75']
  _equal(columns[0][1], sampler.translate(params, X, KEY, 'phipd', 4.0, 1.0))


@pytest.mark.parametrize('method, setting, message', [
    ('nope', Setting(), "method='nope' must be one of ('phipd', 'sdedit', 'invert', 'ovg', "
     "'generate')"),
    ('phipd', Setting(radius=-1.0), 'radius=-1.0 must be >= 0'),
    ('phipd', Setting(radius=math.nan), 'radius=nan must be >= 0'),
    ('phipd', Setting(), 'method phipd: pass radius'),
    ('sdedit', Setting(strength=0.0), r'strength=0.0 must be in (0, 1]'),
    ('sdedit', Setting(strength=1.5), r'strength=1.5 must be in (0, 1]'),
    ('sdedit', Setting(guidance_scale=-1.0), 'guidance_scale=-1.0 must be >= 0'),
    ('sdedit', Setting(target=3), r'target=3 must be in [0, 3) (model.num_classes)'),
    ('invert', Setting(source=-1, target=1), r'source=-1 must be in [0, 3)'),
    ('invert', Setting(source=0), 'method invert: pass target'),
    ('ovg', Setting(), 'method ovg: pass source and target'),
    (None, Setting(strength=2.0), r'strength=2.0 must be in (0, 1]'),
])
def test_check_refuses_bad_settings_on_a_conditional_model(two_domain, method, setting, message):
  _, sampler, _ = two_domain
  with pytest.raises(ValueError) as error:
    sampling.check(method, setting, sampler)
  assert message in str(error.value)


def test_check_refuses_class_methods_without_classes_and_ovg_on_flow(two_domain, unconditional):
  _, flow, _ = unconditional
  for method in ('invert', 'ovg'):
    with pytest.raises(ValueError, match='translates between classes of one model, but this run '
                       r'is unconditional \(model.num_classes=0\)'):
      sampling.check(method, Setting(), flow)
  with pytest.raises(ValueError, match='target=0 must be in .* unconditional model'):
    sampling.check('sdedit', Setting(target=0), flow)
  config, _, _ = two_domain
  config = config.copy_and_resolve_references()
  config.diffusion.process, config.diffusion.prediction = 'flow', 'v'
  capabilities = sampling.Capabilities(3, experiment.build_process(config.diffusion))
  with pytest.raises(ValueError, match='--method ovg needs an EDM or DDPM process, not '
                     'FlowMatching'):
    sampling.check('ovg', Setting(source=0, target=1), capabilities, {'method': '--method'})
  sampling.check('invert', Setting(source=0, target=1), capabilities)  # Flow inverts.


def test_check_passes_good_settings_and_names_fields_as_asked(two_domain):
  config, sampler, _ = two_domain
  capabilities = sampling.Capabilities(config.model.num_classes,
                                       experiment.build_process(config.diffusion))
  for checked in (sampler, capabilities):
    sampling.check('phipd', Setting(radius=math.inf, strength=1.0, target=2), checked)
    sampling.check('ovg', Setting(source=0, target=1, guidance_scale=0.0), checked)
    sampling.check(None, Setting(), checked)
  with pytest.raises(ValueError, match=r'--target_class=7 must be in \[0, 3\)'):
    sampling.check('ovg', Setting(source=0, target=7), capabilities, {'target': '--target_class'})


def test_map_batches_keys_each_batch_and_drops_padding():
  images = {f'{i}.png': np.full((4, 4, 3), i, np.float32) for i in range(5)}
  images['wide.png'] = np.zeros((4, 8, 3), np.float32)
  batches = list(inputs.batches(images, 2))
  assert [(paths, batch.shape, index) for paths, batch, index in batches] == [
      (['0.png', '1.png'], (2, 4, 4, 3), 0), (['2.png', '3.png'], (2, 4, 4, 3), 1),
      (['4.png'], (2, 4, 4, 3), 2), (['wide.png'], (1, 4, 8, 3), 3)]
  _equal(batches[2][1][1], images['4.png'])  # Padded with its first image.
  key = jax.random.key(5)
  seen = []

  def fn(batch, batch_key):
    seen.append(batch_key)
    return batch + 1, None

  results = list(sampling.map_batches(fn, iter(batches), key))
  for index, batch_key in enumerate(seen):
    _equal(jax.random.key_data(batch_key), jax.random.key_data(jax.random.fold_in(key, index)))
  assert [len(out) for _, (out, noise) in results] == [2, 2, 1, 1]
  assert all(noise is None for _, (_, noise) in results)
  _equal(results[2][1][0][0], images['4.png'] + 1)


def test_inversion_report_files_and_mixed_sizes(tmp_path):
  rng = np.random.default_rng(0)
  noise = [rng.standard_normal((16, 16, 3)).astype(np.float32) * 2 for _ in range(3)]
  sources = [rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32) for _ in range(3)]
  line = collapse.write_inversion_report(str(tmp_path), noise, sources, ['a', 'b', 'c'],
                                         scale=2.0)
  saved = np.load(tmp_path / 'inverted.npz')
  _equal(saved['noise'], np.stack(noise))
  assert list(saved['names']) == ['a', 'b', 'c'] and float(saved['scale']) == 2.0
  report = collapse.collapse_report(jnp.asarray(np.stack(noise)), jnp.asarray(np.stack(sources)),
                                    2.0)
  assert line == ', '.join(f'{k} {v:.3f}' for k, v in report.items())
  assert abs(float(saved['hf_power_ratio']) - 1) < 0.3  # Gaussian noise at the given scale.
  for png in ('noise.png', 'spectrum.png'):
    assert (tmp_path / png).stat().st_size > 1000
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  line = collapse.write_inversion_report(str(mixed), [noise[0], noise[1][:8]], sources[:2],
                                         ['a', 'b'], scale=2.0)
  assert line == 'mixed sizes, no diagnostics'
  assert sorted(np.load(mixed / 'inverted.npz').files) == ['names', 'noise_0', 'noise_1']
  assert not (mixed / 'noise.png').exists()


class _PoolCodec:
  """A stand-in latent codec: 2x2 mean pooling to 4 channels (what the report reads of one)."""
  downsample = 2

  def encode(self, x):
    pooled = x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2, 3).mean((2, 4))
    return jnp.concatenate([pooled, pooled[..., :1]], axis=-1)


def test_inversion_report_of_a_latent_run_compares_with_the_latents(tmp_path):
  rng = np.random.default_rng(1)
  noise = [rng.standard_normal((8, 8, 4)).astype(np.float32) for _ in range(2)]
  sources = [rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32) for _ in range(2)]
  line = collapse.write_inversion_report(str(tmp_path), noise, sources, ['a', 'b'], scale=1.0,
                                         codec=_PoolCodec())
  latents = _PoolCodec().encode(jnp.asarray(np.stack(sources)))
  report = collapse.collapse_report(jnp.asarray(np.stack(noise)), latents, 1.0)
  assert line == ', '.join(f'{k} {v:.3f}' for k, v in report.items())
  assert np.load(tmp_path / 'inverted.npz')['noise'].shape == (2, 8, 8, 4)
  assert (tmp_path / 'noise.png').stat().st_size > 500
