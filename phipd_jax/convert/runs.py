"""Pretrained checkpoints -> run directories that every entry point loads like a trained run.

:func:`convert` reads a checkpoint (:mod:`phipd_jax.convert.reading`), converts it with the
source's converter, builds the run's config on the package defaults (so
:func:`phipd_jax.experiment.build` validates it like any run's), checks that the converted
parameters have exactly the shapes the rebuilt model has, and writes

* ``config.json`` and ``parts.json`` (as ``train.py`` writes them);
* ``checkpoints/0/`` with the orbax items ``params``, ``ema_params`` (the same weights) and
  ``meta`` (no ``opt_state``: a converted run is a starting point; fine-tune it into a new
  workdir with ``train.py --config.init_from=<converted run>``);
* ``codec/``, a copy of the codec run a latent model decodes with (``--codec``);
* ``conversion.json``: the source, the file, what was inferred.

Everything is written to ``<workdir>.tmp`` and renamed at the end: a failed conversion leaves no
``workdir``, and an existing one is never overwritten.

Sources (:data:`SOURCES`): ``'dit'`` (facebookresearch/DiT ``.pt``), ``'diffusers_dit'`` (a
diffusers ``DiTTransformer2DModel`` folder), ``'jit'`` (JiT / Spectral Forcing ``.pth``),
``'diffusers_vae'`` (a diffusers ``AutoencoderKL`` folder, which becomes a codec run), and
``'lora'``: a LoRA run's adapters merged into its base (:func:`export_merged`), a plain run
that no longer needs the base.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Mapping, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from phipd_jax import checkpoint, defaults, experiment as experiment_lib, models, saved_run
from phipd_jax.convert import dit as dit_convert
from phipd_jax.convert.reading import (ConversionError, StateDict, read_diffusers_folder,
                                       read_state_dict)

SOURCES = ('dit', 'diffusers_dit', 'jit', 'diffusers_vae', 'lora')
CONVERSION_FILE = 'conversion.json'
CONVERTED_ITEMS = ('params', 'ema_params', 'meta')


def base_config(model: Mapping, image_size: int) -> ml_collections.ConfigDict:
  """The package defaults with ``model`` and ``data.image_size`` set."""
  config = defaults.get_base_config()
  config.model.update(dict(model))  # On the defaults' model section (dtype, attention, remat).
  config.data.image_size = config.data.resize = int(image_size)
  return config


def dit_config(model: Mapping, image_size: int, guidance_channels: int) -> ml_collections.ConfigDict:
  """A converted DiT's run config: DiT's training process (linear-beta DDPM, 1000 steps,
  eps prediction) and its sampling (ancestral DDPM, 250 respaced steps, guidance 4 as DiT's
  ``sample.py``)."""
  config = base_config(model, image_size)
  config.diffusion.process = 'ddpm'
  config.diffusion.prediction = 'eps'
  config.diffusion.ddpm.schedule = 'linear'
  config.diffusion.ddpm.num_steps = 1000
  config.diffusion.ddpm.beta_start, config.diffusion.ddpm.beta_end = 1e-4, 0.02
  config.diffusion.ddpm.spacing = 'linspace'  # = DiT's space_timesteps (tested).
  config.sample.sampler = 'ddpm'
  config.sample.num_steps = 250
  config.sample.guidance_scale = 4.0 if model.get('num_classes') else 1.0
  config.sample.guidance_channels = guidance_channels
  config.sample.clip_x0 = 0.0
  return config


def _count(params) -> int:
  """Scalars in a parameter state."""
  return int(sum(np.prod(shape) for shape in models.parameter_shapes(params).values()))


def _check_workdir(workdir: str):
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    raise ConversionError(f'--workdir={workdir} exists and is not empty: converting never '
                          'overwrites a run; pick a new directory')


def _codec_settings(codec: str) -> tuple[int, int, float, float]:
  """``(downsample, latent_channels, scale, shift)`` of a codec run (converted or trained).

  Raises:
    ConversionError: not an autoencoder run, or no checkpoint.
  """
  try:
    spec = saved_run.load_spec(codec)
  except (FileNotFoundError, ValueError) as error:
    raise ConversionError(f'--codec={codec}: not a run directory ({error})') from None
  if models.objective(spec.model['name']) != 'autoencoder':
    raise ConversionError(f"--codec={codec} is a model.name={spec.model['name']!r} run, not an "
                          'autoencoder (convert one with --from diffusers_vae)')
  if not checkpoint.has_checkpoint(codec):
    raise ConversionError(f'--codec={codec} has no checkpoint')
  return (models.downsample_factor(spec.model), spec.model['latent_channels'],
          float(spec.codec.scale), float(spec.codec.shift))


def _save(workdir: str, exp: experiment_lib.Experiment, params: nnx.State, note: dict,
          codec: Optional[str] = None, codec_config: Optional[dict] = None):
  """Writes the converted run (see the module docstring) to ``workdir`` atomically."""
  expected = models.parameter_shapes(jax.eval_shape(exp.init_params, jax.random.key(0)))
  got = models.parameter_shapes(params)
  if expected != got:
    wrong = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))[:5]
    raise ConversionError('the converted parameters do not match the model the run config '
                          f'rebuilds: {[(k, expected.get(k), got.get(k)) for k in wrong]}')
  partial = workdir.rstrip('/') + '.tmp'
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  try:
    config = exp.saved_config() if codec_config is None else codec_config
    checkpoint.save_config(partial, config)
    checkpoint.save_parts(partial, saved_run.parts(exp))
    if codec:
      checkpoint.copy_latest(codec, saved_run.codec_dir(partial))
    seed = int(exp.spec.seed)
    meta = {'step': np.int32(0),
            'rng': np.asarray(jax.random.key_data(jax.random.key(seed, impl=exp.rng_impl)))}
    # params once through orbax (which stages a host copy of what it saves), then its files
    # copied as ema_params: the same weights, and half the peak memory of saving both.
    manager = ocp.CheckpointManager(
        checkpoint.checkpoint_dir(partial), item_names=('params', 'meta'),
        item_handlers={'params': ocp.StandardCheckpointHandler(save_concurrent_gb=1),
                       'meta': ocp.StandardCheckpointHandler()})
    try:
      manager.save(0, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                              meta=ocp.args.StandardSave(meta)), force=True)
      manager.wait_until_finished()
    finally:
      manager.close()
    step = os.path.join(checkpoint.checkpoint_dir(partial), '0')
    shutil.copytree(os.path.join(step, 'params'), os.path.join(step, 'ema_params'))
    with open(os.path.join(partial, CONVERSION_FILE), 'w') as f:
      json.dump(note, f, indent=2, sort_keys=True)
    if os.path.isdir(workdir):  # An empty directory (checked): replaced.
      os.rmdir(workdir)
    os.rename(partial, workdir)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise


def _build(config: ml_collections.ConfigDict, codec: Optional[str]) -> experiment_lib.Experiment:
  try:
    return experiment_lib.build(config, data_parallel_size=1, codec_source=codec)
  except ValueError as error:
    raise ConversionError(f'the converted run does not build: {error}') from None


def convert_dit_run(state: StateDict, workdir: str, *, source: str, inferred: Mapping,
                    model_name: Optional[str], heads: Optional[int], codec: Optional[str],
                    guidance_channels: int, time_frequency_shift: int = 0) -> dict:
  """Writes a DiT run from ``state`` (see :func:`convert`); returns the conversion note."""
  model = dit_convert.model_settings(inferred, model_name, heads)
  if time_frequency_shift:
    model['time_frequency_shift'] = time_frequency_shift
  side = inferred['grid'] * inferred['patch_size'] if inferred['grid'] else 0
  scale = shift = 0.0
  if codec:
    factor, channels, scale, shift = _codec_settings(codec)
    if channels != inferred['in_channels']:
      raise ConversionError(f'--codec={codec} has {channels} latent channels, the DiT takes '
                            f'{inferred["in_channels"]}')
    image_size = side * factor
  else:
    if inferred['in_channels'] != 3:
      raise ConversionError(f'the DiT takes {inferred["in_channels"]} channels: a latent model '
                            'needs --codec (a converted VAE run: --from diffusers_vae)')
    image_size = side
  if not image_size:
    raise ConversionError(f'{state.source}: no positional table to infer the image size from')
  config = dit_config(model, image_size, guidance_channels if inferred['in_channels'] > 3 else 0)
  if codec:
    config.codec.workdir = os.path.abspath(codec)
    config.codec.scale, config.codec.shift = scale or 1.0, shift
  exp = _build(config, codec)
  convert_fn = (dit_convert.convert_diffusers_dit if source == 'diffusers_dit'
                else dit_convert.convert_dit)
  params = convert_fn(state, config.model.to_dict(), exp.model_shape[-1], exp.model_shape[0])
  note = {'from': source, 'checkpoint': state.source, 'model': config.model.to_dict(),
          'inferred': dict(inferred), 'image_size': image_size, 'codec': codec or '',
          'parameters': _count(params)}
  _save(workdir, exp, params, note, codec=codec)
  return note


def convert(source: str, checkpoint_path: str, workdir: str, *, model_name: Optional[str] = None,
            codec: Optional[str] = None, guidance_channels: int = 3) -> dict:
  """Converts a pretrained checkpoint into the run directory ``workdir`` (see the module
  docstring).

  Args:
    source: one of :data:`SOURCES`.
    checkpoint_path: the checkpoint file (``dit``, ``jit``) or diffusers folder
      (``diffusers_dit``, ``diffusers_vae``).
    workdir: the run directory to create (must not exist, or be empty).
    model_name: the named model (``DiT-XL/2``, ``JiT-B/16``): what the state dict does not
      determine (attention heads), checked against what it does.
    codec: a codec run (``--from diffusers_vae`` output) for a latent model.
    guidance_channels: classifier-free guidance on the first N latent channels in the converted
      run's sampler (facebookresearch DiT: 3, its ``forward_with_cfg``; 0 = all).

  Returns:
    The conversion note (also written as ``conversion.json``).

  Raises:
    ConversionError: an unknown source, an unreadable file, a missing / unexpected key or a
      shape mismatch (naming the key and both shapes), a named model that disagrees with the
      file, a missing codec; nothing is written.
  """
  if source not in SOURCES:
    raise ConversionError(f'--from={source!r} must be one of {SOURCES}')
  _check_workdir(workdir)
  if codec and not os.path.isdir(codec):
    raise ConversionError(f'--codec={codec}: no such run directory')
  if source == 'dit':
    state = read_state_dict(checkpoint_path)
    return convert_dit_run(state, workdir, source=source, inferred=dit_convert.infer_dit(state),
                           model_name=model_name, heads=None, codec=codec,
                           guidance_channels=guidance_channels)
  if source == 'diffusers_dit':
    config, weights = read_diffusers_folder(checkpoint_path, 'transformer')
    inferred = dit_convert.infer_diffusers_dit(config)
    state = read_state_dict(weights)
    heads = inferred.pop('heads')
    inferred.pop('image_size')
    return convert_dit_run(state, workdir, source=source, inferred=inferred,
                           model_name=model_name, heads=heads, codec=codec,
                           guidance_channels=0, time_frequency_shift=1)
  if source == 'diffusers_vae':
    config, weights = read_diffusers_folder(checkpoint_path, 'vae')
    return convert_vae_run(read_state_dict(weights), config, workdir)
  if source == 'lora':
    return export_merged(checkpoint_path, workdir)
  return convert_jit_run(checkpoint_path, workdir, model_name)


def export_merged(lora_run: str, workdir: str) -> dict:
  """Writes the LoRA run ``lora_run``'s EMA adapters merged into its base as a plain run
  (``lora.rank = 0``, no ``init_from``; the codec copied): what :func:`phipd_jax.load` samples,
  without the base run.

  Raises:
    ConversionError: ``lora_run`` is not a LoRA run directory, or its base is missing.
  """
  try:
    config, exp, restored = saved_run.load_run(lora_run, ('ema_params',))
  except (FileNotFoundError, ValueError) as error:
    raise ConversionError(f'--checkpoint={lora_run}: {error}') from None
  if exp.lora is None:
    raise ConversionError(f'--checkpoint={lora_run} is not a LoRA run (config.lora.rank = 0)')
  config.lora.rank, config.init_from = 0, ''
  own_codec = saved_run.codec_dir(lora_run)
  codec = own_codec if os.path.isdir(own_codec) else None
  if codec:
    config.codec.workdir = os.path.abspath(own_codec)
  merged_exp = _build(config, codec)
  note = {'from': 'lora', 'checkpoint': os.path.abspath(lora_run), 'model': config.model.to_dict(),
          'base': exp.spec.top.init_from, 'rank': exp.lora.rank,
          'parameters': _count(restored['ema_params'])}
  _save(workdir, merged_exp, restored['ema_params'], note, codec=codec)
  return note


def convert_vae_run(state: StateDict, diffusers_config: Mapping, workdir: str,
                    image_size: int = 256) -> dict:
  """Writes a codec run from a diffusers ``AutoencoderKL`` (see :func:`convert`)."""
  from phipd_jax.convert import vae as vae_convert  # pylint: disable=g-import-not-at-top
  kwargs = vae_convert.model_kwargs_from_diffusers_config(diffusers_config)
  if kwargs['in_channels'] != 3 or kwargs['out_channels'] != 3:
    raise ConversionError(f'config.json: in_channels={kwargs["in_channels"]}, out_channels='
                          f'{kwargs["out_channels"]}; the library\'s codecs take RGB images (3)')
  scale, shift = vae_convert.scaling_and_shift(diffusers_config)
  model = dict(name='autoencoder_kl', num_classes=0, dtype='float32', param_dtype='float32',
               **{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()
                  if k not in ('in_channels', 'dtype')})
  config = defaults.get_base_config()
  defaults.set_autoencoder_recipe(config)
  config.model = ml_collections.ConfigDict(model)
  config.data.image_size = config.data.resize = image_size
  config.autoencoder.lam = 0.0  # Fine-tuning it with LPIPS is the user's choice.
  config.codec.scale, config.codec.shift = scale, shift
  exp = _build(config, None)
  params = vae_convert.convert_autoencoder_kl(state, kwargs)
  note = {'from': 'diffusers_vae', 'checkpoint': state.source, 'model': model,
          'scaling_factor': scale, 'shift_factor': shift,
          'parameters': _count(params)}
  _save(workdir, exp, params, note)
  return note


def convert_jit_run(checkpoint_path: str, workdir: str, model_name: Optional[str]) -> dict:
  """Writes a JiT / Spectral Forcing run (see :func:`convert`): JiT's recipe
  (:func:`phipd_jax.defaults.set_jit_recipe`: x-prediction flow matching, Heun 50 steps) with
  JiT's guidance interval; Spectral Forcing's settings from the checkpoint's ``args``."""
  from phipd_jax.convert import jit as jit_convert  # pylint: disable=g-import-not-at-top
  obj = jit_convert.read_jit_checkpoint(checkpoint_path)
  state = jit_convert.select_jit_state_dict(obj, checkpoint_path)
  kwargs = jit_convert.jit_model_kwargs(state, model_name,
                                        args=jit_convert.jit_checkpoint_args(obj))
  if kwargs['in_channels'] != 3:
    raise ConversionError(f'{state.source}: a JiT of {kwargs["in_channels"]} channels; the '
                          'library runs pixel-space JiT on RGB images')
  config = defaults.get_base_config()
  defaults.set_jit_recipe(config)
  model = config.model
  model.size, model.patch_size = kwargs['size'], kwargs['patch_size']
  model.num_classes, model.in_context_len = kwargs['num_classes'], kwargs['in_context_len']
  if kwargs['spectral_forcing']:
    forcing = dict(kwargs['spectral_forcing'])
    forcing['window'] = forcing.get('window') or 0
    model.spectral_forcing.update(forcing)
  config.data.image_size = config.data.resize = kwargs['image_size']
  config.sample.guidance_interval = (0.0, 0.9)  # JiT's interval, in the library's time.
  exp = _build(config, None)
  params = jit_convert.convert_jit(state, kwargs)
  note = {'from': 'jit', 'checkpoint': state.source, 'model': config.model.to_dict(),
          'image_size': kwargs['image_size'],
          'parameters': _count(params)}
  _save(workdir, exp, params, note)
  return note
