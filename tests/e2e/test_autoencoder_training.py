"""Autoencoder runs through the same trainer: the scale-consistent loss chosen by the model's
registry entry, reconstruction grids at checkpoints, resume, and loading the run back."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from configs import autoencoder_lwd
from phipd_jax import experiment, latent, saved_run, models, trainer, writers
from phipd_jax.models.autoencoder import Autoencoder

from helpers import assert_trees_equal


@pytest.fixture
def ae_config(tfds_dir):
  """The autoencoder smoke run on the bundled photos: 'tiny', f=4, 16 px, batch 8, no LPIPS."""
  config = autoencoder_lwd.get_config('runlocal,f=4')
  config.data.name, config.data.image_key = 'skimage_photos', 'image'
  config.data.tfds_dir = tfds_dir
  config.data.image_size, config.data.resize = 16, 48
  config.autoencoder.lam = 0.0  # LPIPS-VGG costs ~10x the tiny autoencoder's step on CPU.
  config.autoencoder.num_reconstruct = 3
  config.train.num_steps, config.train.log_every, config.train.checkpoint_every = 20, 5, 10
  return config


def test_the_registry_declares_the_objective(ae_config):
  assert models.objective('autoencoder') == 'autoencoder'
  assert models.objective('dit') == models.objective('jit') == 'diffusion'
  exp = experiment.build(ae_config)
  assert exp.objective == 'autoencoder' and exp.loss_constants() is None
  assert exp.image_shape == (16, 16, 3)  # The images: the autoencoder sees pixels.
  ae_config.autoencoder.lam = 0.05
  assert set(experiment.build(ae_config).loss_constants()) == {'lpips'}


@pytest.mark.parametrize('field, value, message', [
    ('autoencoder.alpha', -0.1, 'config.autoencoder.alpha'),
    ('autoencoder.lam', float('inf'), 'config.autoencoder.lam'),
    ('autoencoder.scales', (), 'config.autoencoder.scales'),
    ('autoencoder.scales', (8,), r'config.autoencoder.scales.*latent side .* = 4'),
    ('autoencoder.num_reconstruct', 0, 'config.autoencoder.num_reconstruct'),
    ('model.downsample', 16, 'downsample=16'),
    ('model.num_classes', 2, 'model.num_classes=2 must be 0'),
    ('data.image_size', 18, r'data.image_size=18 must be a positive multiple of model.downsample'),
    ('model.size', 'huge', 'model.size'),
])
def test_autoencoder_fields_are_validated(ae_config, field, value, message):
  section, name = field.split('.')
  ae_config[section][name] = value
  with pytest.raises(ValueError, match=message):
    experiment.build(ae_config)


def test_foreign_model_field_is_named(ae_config):
  ae_config.model.patch_size = 2  # A denoiser field.
  with pytest.raises(ValueError, match='model.patch_size is not a setting'):
    experiment.build(ae_config)


def test_loss_fn_is_the_scale_consistent_loss(ae_config):
  exp = experiment.build(ae_config)
  params = jax.jit(exp.init_params)(jax.random.key(0))
  x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  key = jax.random.key(2)
  loss, metrics = jax.jit(exp.loss_fn())(params, {'image': x, 'label': np.zeros(4, np.int32)},
                                         key)
  model = nnx.merge(exp.graphdef, params)
  settings = ae_config.autoencoder
  expected, _ = jax.jit(lambda x, key: latent.scale_consistent_vae_loss(
      x, model.encode, model.decode, key, settings.alpha, settings.beta, settings.lam,
      settings.scales))(x, key)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  assert {'rec_mse', 'scale_mse', 'kl', 'lpips', 'scale_s'} <= set(metrics)


def test_autoencoder_run_lowers_reconstruction_writes_grids_and_loads_back(ae_config, tmp_path):
  workdir = str(tmp_path / 'run')
  state = trainer.train(experiment.build(ae_config), workdir).state
  assert int(state.step) == 20
  rows = writers.read_metrics(workdir)
  assert [r['step'] for r in rows] == [5, 10, 15, 20]
  assert rows[-1]['rec_mse'] < 0.5 * rows[0]['rec_mse']
  assert rows[0]['kl'] > 0 and rows[0]['scale_mse'] > 0 and 'lwd_mask_fraction_s0.90' not in rows[0]
  samples = tmp_path / 'run' / 'samples'
  assert sorted(os.listdir(samples)) == ['reconstruct_000010.npz', 'reconstruct_000010.png',
                                         'reconstruct_000020.npz', 'reconstruct_000020.png']
  grid = np.load(samples / 'reconstruct_000020.npz')
  assert grid['photos'].shape == grid['reconstructions'].shape == (3, 16, 16, 3)
  assert not list(samples.glob('generate_*'))
  # load_run rebuilds the autoencoder experiment from config.json (no patch_size, its loss).
  config, exp, restored = saved_run.load_run(workdir)
  assert exp.objective == 'autoencoder' and config.autoencoder.alpha == 0.25
  assert 'patch_size' not in config.model
  assert_trees_equal(restored['ema_params'], state.ema_params)
  assert isinstance(nnx.merge(exp.graphdef, restored['ema_params']), Autoencoder)
