"""The OVG setup end to end: multi-domain data, translation by inversion, sample.py --method ovg."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import edges2shoes_two_domain
from phipd_jax import experiment
from phipd_jax.data import pipeline
from phipd_jax.diffusion import inversion

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_down_up_repeats_the_top_left_pixel_of_every_block():
  images = np.random.default_rng(0).integers(0, 255, (2, 16, 24, 3)).astype(np.uint8)
  out = pipeline.down_up(images, 8)
  assert out.shape == images.shape
  for row in range(0, 16, 8):
    for col in range(0, 24, 8):
      block = out[:, row:row + 8, col:col + 8]
      np.testing.assert_array_equal(block, np.broadcast_to(images[:, row:row + 1, col:col + 1],
                                                           block.shape))
  np.testing.assert_array_equal(pipeline.down_up(images, 1), images)
  with pytest.raises(ValueError, match='not a multiple of block=5'):
    pipeline.down_up(images, 5)


@pytest.mark.parametrize('entry, parsed', [('photo', ('photo', 1)), ('photo:down8', ('photo', 8))])
def test_parse_domain(entry, parsed):
  assert pipeline.parse_domain(entry) == parsed


def _config(data, *options):
  """The two-domain runlocal config at 16 px, on ``data = (AB folder, tfds dir)`` or, given a
  tfds dir alone, on no data at all (building and sampling only)."""
  config = edges2shoes_two_domain.get_config(','.join(('runlocal',) + options))
  folder, tfds_dir = data if isinstance(data, tuple) else ('', data)
  config.data.dir, config.data.tfds_dir = folder, tfds_dir
  config.data.image_size = config.data.resize = 16
  config.model.patch_size = 4
  return config


def test_every_record_gives_one_example_per_domain_labelled_by_index(small_ab):
  config = _config(small_ab)
  config.data.flip = False
  dataset = pipeline.train_dataset(config.data, 48, seed=0, num_steps=2)
  batch = dataset[0]
  labels = batch['label']
  assert set(np.unique(labels)) == {0, 1, 2}
  images = batch['image']
  # Class 2 is x8 down-up: constant 8x8 blocks; photos (class 1) are not.
  low = images[labels == 2]
  np.testing.assert_array_equal(low, pipeline.down_up(low, 8))
  photos = images[labels == 1]
  assert not np.array_equal(photos, pipeline.down_up(photos, 8))
  # Edge maps (class 0) are mostly white paper, brighter than the photos.
  assert images[labels == 0].mean() > max(0.8, photos.mean())
  examples = pipeline.load_examples(config.data, 'test', 16)
  assert len(examples) == 3 * 24 and [e.label for e in examples[:3]] == [0, 1, 2]


@pytest.mark.parametrize('field, value, message', [
    ('data.domains', ('edges', 'photo:up2'), "'photo:up2' must be"),
    ('model.num_classes', 2, 'must be >= len(data.domains) = 3'),
    ('sample.inversion_classes', (0, 3), 'classes in [0, model.num_classes=3)'),
    ('sample.ovg.kappa', 0.0, 'must be a finite number > 0'),
    ('sample.ovg.forward_fraction', 0.02, "unless diffusion.process='ddpm'"),
])
def test_bad_multi_domain_fields_name_the_field(tfds_dir, field, value, message):
  config = _config(tfds_dir)
  section, name = field.rsplit('.', 1)
  parent = config
  for part in section.split('.'):
    parent = parent[part]
  parent[name] = value
  with pytest.raises(ValueError, match=None) as error:
    experiment.build(config)
  assert field in str(error.value) and message in str(error.value)


@pytest.mark.parametrize('options', [(), ('ddim',)])
def test_ovg_with_zero_steps_equals_plain_inversion_through_the_sampler(tfds_dir, options):
  """The sampler's wiring: the same start noise, source labels and grid for both methods, and
  the target class (not the source) drives the sampling half."""
  config = _config(tfds_dir, *options)
  config.sample.ovg.eta_n = config.sample.ovg.eta_c = 0.0
  exp = experiment.build(config)
  params = exp.init_params(jax.random.key(0))
  # DiT's zero-initialised output layers ignore the label: perturb every parameter.
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(treedef, [leaf + 0.05 * jax.random.normal(k, leaf.shape, leaf.dtype)
                                        for leaf, k in zip(leaves, keys)])
  sampler = exp.sampler()
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
  key = jax.random.key(2)
  out_plain, noise_plain = sampler.translate_by_inversion(params, x, key, 'invert', 0, 1, 2.0)
  out_ovg, noise_ovg = sampler.translate_by_inversion(params, x, key, 'ovg', 0, 1, 2.0)
  np.testing.assert_array_equal(np.asarray(noise_ovg), np.asarray(noise_plain))
  np.testing.assert_array_equal(np.asarray(out_ovg), np.asarray(out_plain))
  # The inversion half by hand: the source class, unguided, from x + sigma(grid[0]) n.
  source = sampler.denoiser(params, jnp.zeros((2,), jnp.int32))
  n = jax.random.normal(jax.random.fold_in(key, 0), x.shape, jnp.float32)
  method = 'ddim' if options else 'euler'
  expected = inversion.invert(exp.process, source, x, sampler.num_steps, method=method,
                              start_noise=n)
  np.testing.assert_allclose(np.asarray(noise_plain), np.asarray(expected), rtol=1e-5,
                             atol=1e-5 * float(np.abs(np.asarray(expected)).max()))
  np.testing.assert_array_equal(
      np.asarray(sampler.invert_source(params, x, key, 'invert', 0)), np.asarray(noise_plain))
  other, _ = sampler.translate_by_inversion(params, x, key, 'invert', 0, 2, 2.0)
  assert not np.allclose(np.asarray(other), np.asarray(out_plain))


def test_inversion_methods_refuse_bad_classes_and_flow_ovg(tfds_dir):
  config = _config(tfds_dir)
  exp = experiment.build(config)
  sampler = exp.sampler()
  x = jnp.zeros((1, 16, 16, 3))
  with pytest.raises(ValueError, match=r'target class 3 must be in \[0, 3\)'):
    sampler.translate_by_inversion(None, x, jax.random.key(0), 'invert', 0, 3)
  config.diffusion.process, config.diffusion.prediction = 'flow', 'v'
  flow = experiment.build(config).sampler()
  with pytest.raises(ValueError, match='OVG needs an EDM or DDPM process'):
    flow.translate_by_inversion(None, x, jax.random.key(0), 'ovg', 0, 1)


def test_two_domain_run_learns_and_sample_ovg_writes_outputs_and_diagnostics(
    shared_data, small_ab, tmp_path):
  """A short EDM two-domain run lowers the loss; sample.py --method ovg on two real edge maps."""
  from phipd_jax import trainer
  config = _config(small_ab)
  config.train.num_steps, config.train.log_every, config.train.checkpoint_every = 40, 10, 40
  config.train.batch_size = 24
  config.sample.num_steps, config.sample.num_translate, config.sample.num_generate = 3, 2, 3
  workdir = tmp_path / 'run'
  trainer.train(experiment.build(config), str(workdir))
  losses = [json.loads(line)['loss'] for line in open(workdir / 'metrics.jsonl')
            if '"loss"' in line]
  assert losses[-1] < 0.7 * losses[0], losses
  assert (workdir / 'samples' / 'translate_000040.png').exists()
  inputs = tmp_path / 'edges'
  inputs.mkdir()
  for stem in ('1000', '1010'):
    with Image.open(os.path.join(shared_data, 'edges2shoes_handbags', 'train',
                                 f'{stem}_AB.jpg')) as image:
      width, height = image.size
      image.crop((width // 2, 0, width, height)).save(inputs / f'{stem}.png')
  out = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, 'sample.py', '--workdir', str(workdir), '--mode', 'translate',
       '--method', 'ovg', '--input', str(inputs), '--resize', '--output', str(out)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'OVG class 0->1' in result.stdout and 'hf_power_ratio' in result.stdout
  for name in ('1000.png', '1010.png', 'grid.png', 'noise.png', 'spectrum.png'):
    assert (out / name).stat().st_size > 200, name
  saved = np.load(out / 'inverted.npz')
  assert saved['noise'].shape == (2, 16, 16, 3) and float(saved['scale']) == pytest.approx(80.0, rel=1e-5)
  for name in ('hf_power_ratio', 'lf_power_ratio', 'lag1_decorrelation', 'pca_effective_rank'):
    assert np.isfinite(saved[name]), name
  # The benchmark on the same run (4 held-out records per task): every row, the Gaussian
  # reference, the figures.
  from phipd_jax.evaluation import inversion_study
  study = tmp_path / 'study'
  summary = inversion_study.run_study([str(workdir)], [], num=4,
                                      strengths=(0.6,), batch_size=4, out_dir=str(study),
                                      num_reference=16)
  settings = {(row['task'], row['setting']) for row in summary['rows']}
  for task in ('edges', 'down8'):
    assert {(task, 'sdedit s=0.6'), (task, 'invert'), (task, 'ovg'), (task, 'N(0, I)')} <= settings
  truth = {row['task']: row for row in summary['rows'] if row['setting'] == 'ground truth'}
  assert all(row['fd_vgg'] > 0 for row in truth.values())  # Reference disjoint from targets.
  ovg_rows = [row for row in summary['rows'] if row['method'] == 'ovg']
  assert all(row['noise_maps'] == 4 and np.isfinite(row['noise_hf_power_ratio'])
             for row in ovg_rows)
  for name in ('ovg_study.json', 'ovg_study.md', 'frontier.png', 'spectra_edges.png',
               'run_edges.png'):
    assert (study / name).stat().st_size > 200, name
  pca = inversion_study.pca_study(str(workdir), num=4, batch_size=4)
  assert set(pca['effective_rank']) == {'x4 source, inverted', 'x8 source, inverted',
                                        'x16 source, inverted', 'N(0, I)'}
  # Figs. 3 and 4: every source inverted with its class, per-map diagnostics, correlations.
  sweep = inversion_study.source_sweep(str(workdir), num=4, batch_size=4, num_reference=16)
  assert list(sweep['sources']) == list(inversion_study.SWEEP_SOURCES)
  assert [sweep['sources'][s]['class'] for s in ('photo', 'x4', 'x16', 'edges')] == [1, 2, 2, 0]
  assert len(sweep['per_map']['source_decorrelation']) == 4 * len(inversion_study.SWEEP_SOURCES)
  assert all(0.0 <= v <= 1.0 for v in sweep['per_map']['source_decorrelation'])
  assert set(sweep['correlations']) == {'noise_hf_power_ratio', 'hf_texture_ratio',
                                        'lowpass_structure_corr'}
  # The x16 source is the photo's 1x1-pixel-per-16x16 copy: its maps differ from the photo's.
  assert sweep['sources']['x16']['noise_hf_power_ratio'] != sweep['sources']['photo'][
      'noise_hf_power_ratio']
  # A kept checkpoint loads by its step; a step not on disk is named with the ones that are.
  from phipd_jax.evaluation import runs
  assert runs.load(str(workdir), checkpoint_step=40)[0].train.num_steps == 40
  with pytest.raises(FileNotFoundError, match=r'no checkpoint of step 20 .*on disk: \[40\]'):
    runs.load(str(workdir), checkpoint_step=20)
  bad_class = subprocess.run(
      [sys.executable, 'sample.py', '--workdir', str(workdir), '--mode', 'translate',
       '--method', 'ovg', '--input', str(inputs), '--resize', '--target_class', '7'],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert bad_class.returncode == 1
  assert "--target_class=7 must be in [0, 3)" in bad_class.stderr
