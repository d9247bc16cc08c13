"""Latent diffusion: a diffusion run over a trained autoencoder (``config.codec.workdir``).

The codec round trip (reconstruction PSNR of held-out photos above a stated threshold), the run's
own copy of the codec and its measured latent scale, the loss and the FSS noise on latents, a
short run that lowers the loss and resumes bit-exactly, decoding in the sampler, and the errors
a bad ``codec.workdir`` gives before anything is written.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import autoencoder_lwd, quickstart
from phipd_jax import experiment, latent, models, saved_run, spectral, trainer, writers
from phipd_jax.diffusion import objectives
from phipd_jax.data import pipeline
from phipd_jax.evaluation import inception, lwd_study

import fid_reference
from helpers import assert_trees_equal, load_and_sample_elsewhere

IMAGE_SIZE = 32  # Photos; the f=4 codec gives 8x8x4 latents.
# Held-out reconstruction PSNR the 60-step tiny f=4 autoencoder must reach on the 24 held-out
# 32-px photos (measured 2026-11-29: 18.6 dB). It must also beat the 4x4 block-mean image (48
# numbers per image against the latent's 256; 16.4 dB).
PSNR_THRESHOLD_DB = 17.0


def psnr(x, y) -> float:
  """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
  mse = float(np.mean(np.square(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
  return 10 * np.log10(4.0 / mse)


def _photos(config, count=24):
  data = config.data
  return pipeline.eval_images(data, data.eval_split, data.image_key, count)


def _on_small_ab(config, small_ab):
  config.data.name, config.data.image_key = 'edges2shoes_handbags', 'photo'
  config.data.dir, config.data.tfds_dir = small_ab
  config.data.image_size, config.data.resize = IMAGE_SIZE, IMAGE_SIZE
  config.data.train_split, config.data.eval_split = 'train', 'test'
  return config


@pytest.fixture(scope='module')
def ae_run(tmp_path_factory, small_ab):
  """A tiny f=4 autoencoder trained for 60 steps on 24 edges2shoes photos (no LPIPS)."""
  config = _on_small_ab(autoencoder_lwd.get_config('runlocal,f=4'), small_ab)
  config.autoencoder.lam = 0.0
  config.train.num_steps, config.train.log_every, config.train.checkpoint_every = 60, 20, 60
  config.optim.learning_rate, config.optim.warmup_steps = 3e-3, 5
  config.optim.ema_decay = 0.0  # The reconstructions of the last step.
  config.sample.write_grids = False
  workdir = str(tmp_path_factory.mktemp('ae'))
  trainer.train(experiment.build(config), workdir)
  return workdir


@pytest.fixture
def latent_config(ae_run, small_ab):
  """The quickstart smoke run on the codec's 8x8x4 latents of the same photos: tiny DiT/2."""
  config = _on_small_ab(quickstart.get_config('runlocal'), small_ab)
  config.model.patch_size = 2
  config.codec.workdir = ae_run
  config.codec.scale_images = 16
  config.train.batch_size, config.train.num_steps = 8, 6
  config.train.log_every, config.train.checkpoint_every = 2, 3
  config.optim.warmup_steps = 1
  config.sample.write_grids = False
  config.sample.num_steps = 3
  config.sample.radii = (2.0,)
  return config


def test_codec_round_trip_reconstructs_held_out_photos(ae_run, latent_config):
  exp = experiment.build(latent_config)
  assert exp.is_latent and exp.model_shape == (8, 8, 4) and exp.image_shape == (32, 32, 3)
  codec = saved_run.load_codec(exp, scale=1.0)
  photos = _photos(latent_config)
  z = jax.jit(codec.encode)(jnp.asarray(photos))
  assert z.shape == (24, 8, 8, 4)
  reconstructions = np.asarray(jax.jit(codec.decode)(z))
  blocks = photos.reshape(24, 8, 4, 8, 4, 3).mean((2, 4), keepdims=True)
  block_mean = np.broadcast_to(blocks, (24, 8, 4, 8, 4, 3)).reshape(photos.shape)
  measured, baseline = psnr(reconstructions, photos), psnr(block_mean, photos)
  assert measured > max(PSNR_THRESHOLD_DB, baseline), (measured, baseline)
  # The scale maps latents to unit std; decode inverts it exactly.
  scale = trainer.measure_codec_scale(exp, codec)
  scaled = dataclasses.replace(codec, scale=scale)
  z_scaled = np.asarray(scaled.encode(jnp.asarray(photos)))
  np.testing.assert_allclose(z_scaled, np.asarray(z) * scale, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(scaled.decode(jnp.asarray(z_scaled))), reconstructions,
                             atol=1e-5)


def _check_latent_phipd(workdir, latent_config):
  """encode -> FSS noise (the run's noise_fn, as sampling draws it) keeps the latent's phase
  inside the cutoff; phi-PD translation decodes the latent sample."""
  _, exp, restored = saved_run.load_run(workdir)
  sampler = exp.sampler()
  photos = jnp.asarray(_photos(latent_config, 4))
  z = sampler.encode(photos)
  radius = 1.0
  eps = np.asarray(sampler.noise(z, jax.random.key(0), jnp.float32(radius)))
  zx = np.fft.fft2(np.asarray(z, np.float64), axes=(1, 2))
  ze = np.fft.fft2(np.asarray(eps, np.float64), axes=(1, 2))
  d = np.asarray(spectral.frequency_distance(z.shape, (1, 2)))
  inside = np.broadcast_to(d <= radius, zx.shape) & (np.abs(zx) > 1e-3) & (np.abs(ze) > 1e-3)
  assert inside.sum() > 0
  gap = zx[inside] / np.abs(zx[inside]) - ze[inside] / np.abs(ze[inside])
  assert np.max(np.abs(gap)) < 1e-4
  # Beyond the cutoff's Gaussian edge the phase is not the latent's.
  outside = np.broadcast_to(d >= radius + 2 * latent_config.noise.edge_width, zx.shape)
  assert outside.sum() > 0 and np.median(np.abs(np.angle(ze[outside] * np.conj(zx[outside])))) > 0.5
  # Translation decodes: outputs are images, equal to decoding the latent sample by hand.
  outputs = sampler.translate(restored['ema_params'], photos, jax.random.key(0), 'phipd', radius)
  assert outputs.shape == photos.shape
  latent_sample = sampler.sample_from(restored['ema_params'], z, jnp.asarray(eps), jnp.float32(1))
  np.testing.assert_allclose(np.asarray(outputs), np.asarray(sampler.decode(latent_sample)),
                             atol=1e-5)


def test_latent_run_copies_its_codec_measures_the_scale_resumes_bit_exactly_and_keeps_phase(
    latent_config, ae_run, installed_package, tmp_path):
  uninterrupted = trainer.train(experiment.build(latent_config), str(tmp_path / 'a')).state
  interrupted = str(tmp_path / 'b')
  trainer.train(experiment.build(latent_config), interrupted, stop_after=4)
  resumed = trainer.train(experiment.build(latent_config), interrupted).state
  assert_trees_equal(resumed, uninterrupted)  # params, EMA, optimizer state, step, key.
  # The run's own codec: the autoencoder's config and newest step, and the measured scale.
  own = os.path.join(interrupted, 'codec')
  assert sorted(os.listdir(own)) == ['checkpoints', 'config.json', 'parts.json']
  assert os.listdir(os.path.join(own, 'checkpoints')) == ['60']
  with open(os.path.join(interrupted, 'config.json')) as f:
    saved = json.load(f)['codec']
  exp = experiment.build(latent_config)
  expected = trainer.measure_codec_scale(exp, saved_run.load_codec(exp, scale=1.0))
  assert saved['workdir'] == ae_run and saved['scale'] == pytest.approx(expected, rel=1e-6)
  # The loss is the diffusion loss of the scaled latents of the batch.
  loaded = exp.with_codec(saved_run.load_codec(exp, scale=saved['scale']))
  batch = {'image': np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
           'label': np.zeros(8, np.int32)}
  key = jax.random.key(3)
  loss, _ = jax.jit(loaded.loss_fn())(uninterrupted.params, batch, key,
                                      loaded.loss_constants())
  # By hand: the loss function's key split, the diffusion loss of z = scale * E(x).
  z = loaded.codec.encode(jnp.asarray(batch['image']))
  _, loss_key = jax.random.split(key)
  expected_loss = objectives.diffusion_loss(
      loaded.process, models.apply_model(loaded.graphdef, uninterrupted.params), z, loss_key,
      lambda k, x: loaded.noise_fn(k, x), loaded.prediction)
  np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-5)
  _check_latent_phipd(interrupted, latent_config)
  # The run loads from its own codec copy in a fresh Python with only a non-editable install of
  # the package, in another working directory, and samples the same numbers as here.
  report, samples = load_and_sample_elsewhere(installed_package, interrupted, str(tmp_path))
  assert report['latent'] and report['package'].startswith(installed_package)
  _, exp, restored = saved_run.load_run(interrupted)
  here = exp.sampler().generate(restored['ema_params'], jax.random.key(0), (2,) + exp.image_shape)
  np.testing.assert_allclose(samples, np.asarray(here), atol=1e-5)


@pytest.mark.parametrize('target, message', [
    ('missing', 'config.codec.workdir=.* has no config.json'),
    ('pixel_run', "config.codec.workdir=.* is a model.name='dit' run, not an autoencoder"),
])
def test_a_bad_codec_workdir_fails_before_anything_is_written(latent_config, trained_run,
                                                              tmp_path, target, message):
  latent_config.codec.workdir = str(tmp_path / 'nowhere') if target == 'missing' else trained_run
  with pytest.raises(ValueError, match=message):
    trainer.train(experiment.build(latent_config), str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_latent_lwd_run_lowers_the_loss_writes_decoded_grids_and_is_evaluated(
    latent_config, ae_run, tmp_path):
  """configs/latent_lwd.py's recipe (flow matching + the LWD mask on latents) end to end, then
  the ablation's evaluation (evaluate.py --mode lwd) of it and its autoencoder."""
  config = latent_config
  config.diffusion.lwd.enabled = True
  config.train.num_steps, config.train.log_every, config.train.checkpoint_every = 40, 10, 20
  config.optim.learning_rate, config.optim.warmup_steps = 2e-3, 5
  config.sample.write_grids = True
  config.sample.num_generate, config.sample.num_translate = 4, 2
  config.sample.translate_source, config.sample.translate_reference = 'edges', 'photo'
  workdir = str(tmp_path / 'run')
  trainer.train(experiment.build(config), workdir)
  rows = writers.read_metrics(workdir)
  assert rows[-1]['loss'] < 0.8 * rows[0]['loss']
  assert rows[-1]['lwd_mask_fraction_s0.10'] == 1.0 > rows[-1]['lwd_mask_fraction_s0.90']
  generated = np.load(os.path.join(workdir, 'samples', 'generate_000040.npz'))['samples']
  assert generated.shape == (4, 32, 32, 3)  # Decoded images, not 8x8x4 latents.

  out = tmp_path / 'study'
  fid_weights = str(tmp_path / 'fid_inception.npz')  # Random weights: the columns' wiring.
  inception.save_npz(fid_reference.random_state_dict(seed=0), fid_weights)
  summary = lwd_study.run_study([ae_run], [workdir], num=8,
                                batch_size=8, out_dir=str(out), fid_weights=fid_weights,
                                checkpoint_steps=(20,))
  assert sorted(os.listdir(out)) == ['lwd_study.json', 'lwd_study.md', 'lwd_study.png',
                                     'reconstruct_ae0.png', 'samples_run.png']
  ae_row = summary['autoencoders'][0]
  exp = experiment.build(latent_config)
  codec = saved_run.load_codec(exp, scale=1.0)
  photos = _photos(latent_config, 8)
  reconstructions = np.clip(np.asarray(codec.decode(codec.encode(jnp.asarray(photos)))), -1, 1)
  np.testing.assert_allclose(ae_row['psnr'], np.mean([psnr(r, p) for r, p in
                                                      zip(reconstructions, photos)]), rtol=1e-3)
  run_row, reference_row, reconstruction_row = summary['rows']
  assert reconstruction_row['name'] == 'ae0 reconstructions of train photos'
  assert run_row['lwd'] and run_row['autoencoder'] == 'ae0' and run_row['ell'] == 0.3
  assert run_row['lwd_mask_fraction_s0.10'] == 1.0
  assert run_row['fd_vgg'] > reference_row['fd_vgg'] and run_row['swd_mean'] > 0
  assert '| run | ae0 | True | 0.3 |' in (out / 'lwd_study.md').read_text()
  # Convergence rows: the step-20 checkpoint sampled and scored like the final one.
  early, last = summary['convergence']
  assert (early['checkpoint_step'], last['checkpoint_step']) == (20, 40)
  assert last['fd_vgg'] == run_row['fd_vgg'] and early['fd_vgg'] != last['fd_vgg']
  # FID / KID columns with the weights given (the LWD paper's table), counts beside them.
  assert run_row['num_samples'] == 8 and np.isfinite(run_row['fid'])
  assert np.isfinite(reconstruction_row['kid_mean']) and 'FID (N)' in (
      out / 'lwd_study.md').read_text()


def test_latent_cache_gives_the_encoders_latents_of_the_training_batches(latent_config):
  exp = experiment.build(latent_config)
  exp = exp.with_codec(saved_run.load_codec(exp, scale=1.7))
  data = latent_config.data
  images = pipeline.augmented_images(data, data.train_split)
  assert images.shape == (48, 32, 32, 3)  # 24 photos and their mirrors.
  cache = latent.LatentCache(exp.codec, images, batch_size=16)
  dataset = pipeline.train_dataset(data, 8, seed=0, num_steps=3)
  for step in range(3):  # Every augmented training row is found (bit-identical to a variant).
    batch = dataset[step]
    cached = cache(batch)
    assert set(cached) == {'latent', 'label'}
    np.testing.assert_allclose(cached['latent'],
                               np.asarray(exp.codec.encode(jnp.asarray(batch['image']))),
                               atol=1e-5)
  with pytest.raises(KeyError, match='not in the cache'):
    cache({'image': batch['image'] + 0.01, 'label': batch['label']})
  latent_config.data.resize = 48
  with pytest.raises(ValueError, match='config.codec.cache=True is invalid: caching latents'):
    experiment.build(latent_config)
