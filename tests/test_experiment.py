"""The experiment builder: the only config reader; validates by building, names the field."""

import importlib
import json
import os

import pytest

from configs import common
from phipd_jax import checkpoint, experiment, models, saved_run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('field, value, message', [
    ('data.image_size', 18, 'patch_size'),
    ('train.batch_size', 0, 'batch_size'),
    ('noise.r0', -1.0, 'noise.r0'),
    ('noise.kind', 'pink', 'noise.kind'),
    ('sample.sampler', 'ddim', 'sample.sampler'),
    ('optim.warmup_steps', 10, 'warmup_steps'),
    ('optim.learning_rate', -1e-3, 'optim.learning_rate'),
    ('optim.learning_rate', float('nan'), 'optim.learning_rate'),
    ('optim.grad_clip', -1.0, 'optim.grad_clip'),
    ('sample.guidance_scale', -2.0, 'sample.guidance_scale'),
    ('train.keep_checkpoints', 0, 'train.keep_checkpoints'),
    ('diffusion.process', 'sde', 'diffusion.process'),
    ('diffusion.prediction', 'edm', 'diffusion.prediction'),
    ('model.size', 'huge', 'model.size'),
])
def test_config_validation_names_the_field(tiny_config, field, value, message):
  section, name = field.split('.')
  tiny_config[section][name] = value
  with pytest.raises(ValueError, match=message):
    experiment.build(tiny_config)


def test_batch_must_divide_over_devices(tiny_config):
  with pytest.raises(ValueError, match='data-parallel'):
    experiment.build(tiny_config, data_parallel_size=3)


def test_edm_settings_are_validated(tiny_config):
  tiny_config.diffusion.process, tiny_config.diffusion.prediction = 'edm', 'edm'
  experiment.build(tiny_config)
  tiny_config.diffusion.edm.sigma_min = 100.0
  with pytest.raises(ValueError, match='sigma_min'):
    experiment.build(tiny_config)


def test_model_registry_builds_by_name_and_rejects_foreign_fields(tiny_config):
  assert set(models.MODELS) >= {'dit', 'jit'}
  tiny_config.model.in_context_len = 4  # A JiT field on a DiT.
  with pytest.raises(ValueError, match='model.in_context_len'):
    experiment.build(tiny_config)


SHIPPED_CONFIGS = sorted(
    name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, 'configs'))
    if name.endswith('.py') and name not in ('__init__.py', 'common.py'))


@pytest.mark.parametrize('name', SHIPPED_CONFIGS)
@pytest.mark.parametrize('variant', [None, 'runlocal'])
def test_every_shipped_config_validates(name, variant, tmp_path):
  if name == 'finetune_dit_phipd':  # Built on a converted run: tests/e2e/test_pretrained.py.
    with pytest.raises(ValueError, match='needs :base='):
      importlib.import_module(f'configs.{name}').get_config(variant)
    return
  if name == 'lora_study':  # One cell per run: the cells without a base run build here.
    with pytest.raises(ValueError, match='choose one of base, lora, full, scratch'):
      importlib.import_module(f'configs.{name}').get_config(variant)
    variant = 'scratch' + (',runlocal' if variant else '')
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  if config.codec.workdir:  # A latent run: its autoencoder run's config.json (no weights).
    ae_config = importlib.import_module('configs.autoencoder_lwd').get_config(variant)
    checkpoint.save_config(str(tmp_path), ae_config.to_dict())
    config.codec.workdir = str(tmp_path)
  pod = name.startswith('imagenet') and variant is None
  devices = 64 if pod else 1  # The pod configs are sized for a v5e-64 slice.
  experiment.build(config, data_parallel_size=devices)
  assert config.noise.kind in ('fss', 'gaussian')
  if pod:
    assert config.mesh.data * config.mesh.fsdp == 64
  if variant == 'runlocal':
    assert config.train.num_steps == 20 and config.model.size == 'tiny'


def test_unknown_config_option_is_an_error():
  from configs import quickstart
  with pytest.raises(ValueError, match="unknown config option 'runlocl'"):
    quickstart.get_config('runlocl')
  options = common.parse_arg('cpu,steps=30,name=x', cpu=False, steps=10, name='', scale=1.0)
  assert options.cpu is True and options.steps == 30 and options.name == 'x'
  assert options.scale == 1.0
  with pytest.raises(ValueError, match='must be a int'):
    common.parse_arg('steps=many', steps=10)
  with pytest.raises(ValueError, match='needs a value'):
    common.parse_arg('steps', steps=10)


def test_turn_one_config_json_migrates(tiny_config, tmp_path):
  """A DiT run saved by turn-1 code carried JiT fields; loading drops them."""
  saved = tiny_config.to_dict()
  saved['model']['in_context_len'] = 32
  saved['model']['spectral_forcing'] = {'schedule': '', 'kappa': 30.0, 'c_min': 0.05,
                                        'c_max': 1.0, 'alpha': 2.0, 'window': 0}
  del saved['noise']['pad_factor']  # A field added since.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config = saved_run.run_config(str(tmp_path))
  experiment.build(config)
  assert 'in_context_len' not in config.model and config.noise.pad_factor == 0.0


def test_flat_process_fields_of_older_runs_move_into_their_sections(tiny_config, tmp_path):
  """Runs saved with flow matching's and DDPM's settings flat in ``diffusion`` load with them in
  ``diffusion.flow`` / ``diffusion.ddpm``, and build the same process."""
  saved = tiny_config.to_dict()
  flow, ddpm = saved['diffusion'].pop('flow'), saved['diffusion'].pop('ddpm')
  saved['diffusion'].update(flow, t_clamp=0.05, logit_mean=0.8)
  saved['diffusion'].update({k: v for k, v in ddpm.items() if k != 'num_steps'},
                            num_train_steps=500, schedule='linear')
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config = saved_run.run_config(str(tmp_path))
  assert 't_clamp' not in config.diffusion and 'num_train_steps' not in config.diffusion
  assert (config.diffusion.flow.t_clamp, config.diffusion.flow.logit_mean) == (0.05, 0.8)
  assert (config.diffusion.ddpm.num_steps, config.diffusion.ddpm.schedule) == (500, 'linear')
  assert experiment.build(config).process.t_clamp == 0.05
  config.diffusion.process, config.diffusion.prediction = 'ddpm', 'eps'
  config.sample.sampler = 'ddim'
  assert experiment.build(config).process.num_steps == 500
  config.diffusion.ddpm.beta_stop = 0.1  # Not a DDPM keyword: the section is named.
  with pytest.raises(ValueError, match='config.diffusion.ddpm'):
    experiment.build(config)
