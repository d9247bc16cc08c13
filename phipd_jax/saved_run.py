"""Saved runs: a ``train.py`` run directory read back as a built experiment and its arrays.

A run directory holds ``config.json`` (every field of the run's config) and
``checkpoints/<step>/`` (orbax items ``params``, ``ema_params``, ``opt_state``, ``meta``); a
latent run also holds ``codec/``, its own copy of the autoencoder run it encodes with. The
package's own defaults (:mod:`phipd_jax.defaults`) fill fields a run saved before they existed,
and :func:`phipd_jax.defaults.migrate` rewrites fields whose meaning moved, so any run loads from
any working directory with only the package installed (no ``configs/`` on the path).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

import jax
import ml_collections

from phipd_jax import checkpoint, defaults, experiment as experiment_lib, sharding, specs
from phipd_jax import latent, models, training


CODEC_DIR = 'codec'  # <workdir>/codec: a latent run's copy of its autoencoder (a loadable run dir).


def codec_dir(workdir: str) -> str:
  """Where a latent run keeps its copy of the autoencoder run."""
  return os.path.join(workdir, CODEC_DIR)


def load_codec(exp: experiment_lib.Experiment, scale: Optional[float] = None) -> latent.Codec:
  """The codec of a built experiment: the identity in pixel space, else the autoencoder run of
  ``exp.codec_source`` (its EMA parameters, latest readable checkpoint) at ``scale`` (default
  ``codec.scale`` of the run; 0 = unscaled, for measuring the scale).

  Raises:
    FileNotFoundError: the autoencoder run has no readable checkpoint.
  """
  if not exp.is_latent:
    return latent.identity_codec(exp.image_shape[-1])
  if not checkpoint.has_checkpoint(exp.codec_source):
    raise FileNotFoundError(f'config.codec.workdir: no checkpoint in {exp.codec_source}')
  codec_exp = exp.codec_experiment
  template = training.abstract_train_state(codec_exp.init_params, codec_exp.optimizer,
                                           sharding.make_mesh(-1, 1), 0)
  params = checkpoint.restore_items(exp.codec_source, template, ('ema_params',))
  scale = exp.spec.codec.scale if scale is None else scale
  return latent.autoencoder_codec(codec_exp.graphdef, params['ema_params'],
                                  scale=float(scale) or 1.0, shift=float(exp.spec.codec.shift))


def parts(exp: experiment_lib.Experiment) -> dict:
  """The keyword arguments each built part of ``exp`` was built from (JSON-ready): the model
  (registry name, its kwargs and the input it was built for), the process, the prediction, the
  loss, the noise function, the optimizer and, for a latent run, the codec's latent shape and
  scale. The trainer writes them beside the checkpoints as ``parts.json``; :func:`load_run`
  rebuilds the run from ``config.json`` and today's defaults and checks it gets the same parts.
  """
  spec = exp.spec
  kind = spec.diffusion['process']
  built = {
      'model': dict(spec.model, in_channels=exp.model_shape[-1], image_size=exp.model_shape[-3]),
      'process': dict(spec.diffusion[kind], kind=kind), 'prediction': exp.prediction,
      'loss': {'objective': exp.objective, 'loss_space': spec.diffusion['loss_space'],
               'lwd': spec.diffusion['lwd'], 'label_dropout': spec.train.label_dropout,
               'autoencoder': dataclasses.asdict(spec.autoencoder) if spec.autoencoder else None},
      'noise': dict(spec.noise.settings(), kind=spec.noise.kind),
      'optimizer': dict(dataclasses.asdict(spec.optim), num_steps=spec.train.num_steps),
      'codec': ({'latent_shape': list(exp.model_shape), 'scale': spec.codec.scale,
                 'shift': spec.codec.shift}
                if exp.is_latent else None)}
  if exp.is_clip:  # Only clip runs record them (older parts.json have neither).
    built['noise']['video'] = spec.noise.video
    built['frames'] = spec.data.frames
  if exp.lora is not None:  # Only LoRA runs record it (older parts.json have no 'lora').
    built['lora'] = {'rank': exp.lora.rank, 'alpha': exp.lora.alpha,
                     'targets': list(exp.lora.targets),
                     'dropout': exp.lora.dropout, 'base': spec.top.init_from}
  return json.loads(json.dumps(built))  # As parts.json holds them (tuples as lists).


# Fields added to a part after parts.json began, with the value that builds what runs saved
# before them built: a recorded part without the field matches a rebuilt one holding that value.
ADDED_FIELDS = {
    ('loss', 'lwd', 'channels'): 'all',  # LWD energy map over every channel (paper Eq. 2).
    ('codec', 'shift'): 0.0,  # Latents before codec.shift existed were not shifted.
}


def _drop_added_fields(recorded: dict, rebuilt: dict) -> dict:
  """``rebuilt`` without the :data:`ADDED_FIELDS` that ``recorded`` predates (at their
  behaviour-preserving value)."""
  rebuilt = json.loads(json.dumps(rebuilt))
  for path, value in ADDED_FIELDS.items():
    old, new = recorded, rebuilt
    for key in path[:-1]:
      old = old.get(key) if isinstance(old, dict) else None
      new = new.get(key) if isinstance(new, dict) else None
    if isinstance(old, dict) and isinstance(new, dict) and path[-1] not in old and (
        new.get(path[-1]) == value):
      del new[path[-1]]
  return rebuilt


def check_parts(exp: experiment_lib.Experiment, workdir: str):
  """Raises ValueError when ``workdir``'s ``parts.json`` differs from the parts ``exp`` builds
  (a default or a builder changed since the run was saved); runs saved without it pass, and so
  do fields added since at the value that builds what the run built (:data:`ADDED_FIELDS`)."""
  recorded = checkpoint.load_parts(workdir)
  if recorded is None:
    return
  rebuilt = _drop_added_fields(recorded, parts(exp))
  changed = [f'{name}: saved {recorded.get(name)!r}, rebuilt {rebuilt.get(name)!r}'
             for name in sorted(set(recorded) | set(rebuilt))
             if recorded.get(name) != rebuilt.get(name)]
  if changed:
    raise ValueError(f'{workdir}: the run no longer rebuilds as it was trained; ' +
                     '; '.join(changed))


def load_lora_base(exp: experiment_lib.Experiment, mesh=None):
  """The frozen base of a LoRA run: the EMA parameters of its ``config.init_from`` run, whose
  network must have exactly the shapes of this run's.

  Raises:
    FileNotFoundError: the base run (referenced, not copied) is missing or has no checkpoint.
    ValueError: the base run's network has other shapes (an adapter applied to another base).
  """
  base_dir = exp.spec.top.init_from
  if not base_dir or not os.path.isdir(base_dir):
    raise FileNotFoundError(f'config.init_from={base_dir!r}: the base run of this LoRA run is '
                            'missing (LoRA runs reference their base; they do not copy it)')
  _, base_exp, restored = load_run(base_dir, ('ema_params',), mesh=mesh)
  expected = jax.eval_shape(exp.model_init_params, jax.random.key(0))
  if models.parameter_shapes(expected) != models.parameter_shapes(restored['ema_params']):
    raise ValueError(f'config.init_from={base_dir!r}: its model '
                     f"{base_exp.spec.model} has other parameter shapes than this run's "
                     f'{exp.spec.model}: LoRA adapters need the same base network')
  return restored['ema_params']


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's migrated ``config.json`` on today's defaults.

  Raises:
    FileNotFoundError: the workdir has no config.json.
    ValueError: the saved config cannot be migrated.
  """
  return defaults.config_from_saved(checkpoint.load_config_dict(workdir))


def load_spec(workdir: str) -> specs.RunSpec:
  """The typed specs of a saved run (cheap: reads config.json only).

  Raises:
    FileNotFoundError: the workdir has no config.json.
    ValueError: the saved config has unknown fields or cannot be migrated.
  """
  return specs.from_config_dict(run_config(workdir).to_dict())


def load_run(workdir: str, items: Sequence[str] = ('ema_params',),
             num_steps: Optional[int] = None, mesh=None, step: Optional[int] = None
             ) -> tuple[ml_collections.ConfigDict, experiment_lib.Experiment, dict]:
  """A saved run's ``(config, experiment, restored items)`` from its latest readable checkpoint,
  or from the checkpoint of training step ``step``.

  Only ``items`` are read (``'params'``, ``'ema_params'``, ``'opt_state'``, ``'meta'``): a sampler
  restores the EMA parameters and never builds Adam moments. A latent run's codec is built once,
  from the run's own copy (``<workdir>/codec``), and loaded into the experiment.

  Args:
    workdir: a ``train.py`` run directory.
    items: checkpoint items to restore.
    num_steps: override of ``config.sample.num_steps``.
    mesh: where the arrays land (default: every local device, replicated).
    step: a training step whose checkpoint is on disk (default: the latest readable one).

  Raises:
    FileNotFoundError: no config.json, no readable checkpoint, or none of ``step``.
    ValueError: the saved config no longer builds (with the field named), or builds other parts
      than the run recorded in its parts.json (:func:`check_parts`).
  """
  config = run_config(workdir)
  if num_steps is not None:
    config.sample.num_steps = num_steps
  own_codec = codec_dir(workdir)
  exp = experiment_lib.build(config, codec_source=own_codec if os.path.isdir(own_codec) else None)
  check_parts(exp, workdir)
  if not checkpoint.has_checkpoint(workdir):
    raise FileNotFoundError(f'no checkpoint in {checkpoint.checkpoint_dir(workdir)}: train the run '
                            'first (python train.py --config ... --workdir ...)')
  mesh = mesh or sharding.make_mesh(-1, 1)
  template = training.abstract_train_state(exp.init_params, exp.optimizer, mesh, config.seed,
                                           rng_impl=exp.rng_impl)
  restored = checkpoint.restore_items(workdir, template, items, step)
  if exp.lora is not None:  # Adapters merged into the base once: callers get the network's.
    exp = exp.with_lora_base(load_lora_base(exp, mesh))
    restored = {name: (exp.model_params(tree) if name in ('params', 'ema_params') else tree)
                for name, tree in restored.items()}
  if exp.is_latent:
    exp = exp.with_codec(load_codec(exp))
  return config, exp, restored
