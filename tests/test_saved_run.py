"""Saved runs load through the package alone: any working directory, a non-editable install."""

import jax
import numpy as np
import pytest

from phipd_jax import saved_run

from helpers import load_and_sample_elsewhere


def test_a_pixel_run_loads_and_samples_from_a_non_editable_install_elsewhere(
    trained_run, installed_package, tmp_path):
  report, samples = load_and_sample_elsewhere(installed_package, trained_run, str(tmp_path))
  assert report['package'].startswith(installed_package) and not report['latent']
  _, exp, restored = saved_run.load_run(trained_run)
  here = exp.sampler().generate(restored['ema_params'], jax.random.key(0), (2,) + exp.image_shape)
  np.testing.assert_allclose(samples, np.asarray(here), atol=1e-5)


def test_run_config_fills_fields_the_run_saved_without(trained_run, tmp_path):
  import json, shutil  # pylint: disable=g-import-not-at-top,multiple-import
  old = tmp_path / 'old'
  shutil.copytree(trained_run, old)
  saved = json.loads((old / 'config.json').read_text())
  del saved['rng_impl'], saved['model']['remat'], saved['codec']
  (old / 'config.json').write_text(json.dumps(saved))
  config = saved_run.run_config(str(old))
  assert config.rng_impl == 'threefry2x32' and config.model.remat == 'none'
  assert config.codec.workdir == '' and config.train.num_steps == saved['train']['num_steps']


def test_parts_json_records_each_part_and_a_changed_rebuild_is_refused(trained_run, tmp_path):
  import json, shutil  # pylint: disable=g-import-not-at-top,multiple-import
  recorded = json.loads(open(f'{trained_run}/parts.json').read())
  config = json.loads(open(f'{trained_run}/config.json').read())
  assert recorded['model']['size'] == config['model']['size']
  assert recorded['model']['in_channels'] == 3 and recorded['codec'] is None
  assert recorded['process']['kind'] == config['diffusion']['process']
  assert recorded['noise']['kind'] == config['noise']['kind']
  changed = tmp_path / 'changed'
  shutil.copytree(trained_run, changed)
  recorded['model']['patch_size'] *= 2  # As if today's defaults built another model.
  (changed / 'parts.json').write_text(json.dumps(recorded))
  with pytest.raises(ValueError, match='no longer rebuilds as it was trained; model: saved'):
    saved_run.load_run(str(changed))
  (changed / 'parts.json').unlink()  # Runs saved before parts.json load as before.
  saved_run.load_run(str(changed))
  # A field added since (diffusion.lwd.channels) at its behaviour-preserving value: loads; at
  # another value (the config asks for the released channels): refused.
  recorded['model']['patch_size'] //= 2
  del recorded['loss']['lwd']['channels']
  (changed / 'parts.json').write_text(json.dumps(recorded))
  saved_run.load_run(str(changed))
  config['diffusion']['lwd']['channels'] = 'released'
  (changed / 'config.json').write_text(json.dumps(config))
  with pytest.raises(ValueError, match="loss: saved .*'lwd'"):
    saved_run.load_run(str(changed))
