"""Latent Wavelet Diffusion wired from config: validation, the loss through Experiment.loss_fn,
and a run through the trainer that logs the mask fraction per sigma bin (arXiv:2506.00433)."""

import jax
import numpy as np
import pytest

from phipd_jax import experiment, losses, trainer, writers


def _batch(seed=0, shape=(8, 16, 16, 3)):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, shape).astype(np.float32),
          'label': np.zeros(shape[:1], np.int32)}


@pytest.mark.parametrize('field, value, message', [
    ('ell', -0.1, 'config.diffusion.lwd.ell=-0.1'),
    ('ell', float('nan'), 'config.diffusion.lwd.ell'),
    ('normalize', 'sum', 'config.diffusion.lwd.normalize'),
    ('log_bins', -1, 'config.diffusion.lwd.log_bins'),
    ('channels', 'first', 'config.diffusion.lwd.channels'),
])
def test_lwd_fields_are_validated(tiny_config, field, value, message):
  tiny_config.diffusion.lwd.enabled = True
  tiny_config.diffusion.lwd[field] = value
  with pytest.raises(ValueError, match=message):
    experiment.build(tiny_config)


@pytest.mark.parametrize('process, prediction, sampler', [('ddpm', 'eps', 'ddim'),
                                                          ('edm', 'edm', 'euler')])
def test_lwd_needs_the_flow_process(tiny_config, process, prediction, sampler):
  """DDPM steps and EDM sigmas are not the mask's noise level in [0, 1]: refused at build."""
  config = tiny_config
  config.diffusion.process, config.diffusion.prediction = process, prediction
  config.sample.sampler = sampler
  experiment.build(config)  # Valid without LWD ...
  config.diffusion.lwd.enabled = True
  with pytest.raises(ValueError, match=r"config.diffusion.lwd.enabled.*diffusion.process='flow'"):
    experiment.build(config)  # ... and named with it.


def test_all_ones_mask_gives_the_plain_loss_and_the_paper_mask_a_smaller_one(tiny_config):
  plain = experiment.build(tiny_config)
  params = jax.jit(plain.init_params)(jax.random.key(0))
  batch, key = _batch(), jax.random.key(3)

  def loss(**settings):
    config = tiny_config.copy_and_resolve_references()
    config.diffusion.lwd.update(settings)
    return jax.jit(experiment.build(config).loss_fn())(params, batch, key)

  reference, metrics = loss()
  assert metrics == {}
  # sigma <= 1 <= A + ell: every position supervised, under both normalisations.
  for normalize in ('all', 'mask'):
    value, metrics = loss(enabled=True, ell=1.0, normalize=normalize)
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-6)
    np.testing.assert_array_equal([float(v) for v in metrics.values()], 1.0)
  assert sorted(metrics) == [losses.lwd_metric_name(s) for s in (0.1, 0.3, 0.5, 0.7, 0.9)]
  masked, metrics = loss(enabled=True, ell=0.3, log_bins=2)  # Masked-out terms count as 0.
  assert float(masked) <= float(reference)
  assert sorted(metrics) == ['lwd_mask_fraction_s0.25', 'lwd_mask_fraction_s0.75']
  assert float(metrics['lwd_mask_fraction_s0.25']) == 1.0  # sigma <= ell.
  assert float(metrics['lwd_mask_fraction_s0.75']) < 1.0


def test_lwd_run_trains_and_logs_mask_fractions_per_sigma_bin(tiny_config, tmp_path):
  config = tiny_config
  config.diffusion.lwd.enabled = True
  config.train.num_steps, config.train.checkpoint_every = 4, 4
  state = trainer.train(experiment.build(config), str(tmp_path)).state
  assert int(state.step) == 4
  rows = writers.read_metrics(str(tmp_path))
  assert [r['step'] for r in rows] == [2, 4]
  for row in rows:
    assert np.isfinite(row['loss'])
    assert row['lwd_mask_fraction_s0.10'] == 1.0 and row['lwd_mask_fraction_s0.30'] == 1.0
    assert row['lwd_mask_fraction_s0.90'] < 1.0
