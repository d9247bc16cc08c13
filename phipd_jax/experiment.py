"""The one reader of run configs: validates by building, and builds every object of a run.

Data flows one way: config -> :func:`build` -> (model graphdef, process, noise function, loss
function, optimizer, sampler settings) -> training / sampling / benchmarking, which never see a
config. A bad value raises ``ValueError`` naming the config field, the value and what is allowed,
before anything is written or loaded.

``load_run(workdir)`` rebuilds a saved run's experiment from its ``config.json`` (older runs are
migrated to today's fields) and restores only the checkpoint items a caller asks for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from phipd_jax import models, noise as noise_lib, sampling, sharding as sharding_lib, training
from phipd_jax.diffusion import objectives, processes

Array = jax.Array


@contextlib.contextmanager
def field(name: str, value: Any = None, allowed: str = ''):
  """Re-raises a builder's ``ValueError``/``TypeError`` as one naming ``config.<name>``."""
  try:
    yield
  except (ValueError, TypeError) as error:
    message = str(error).split('\n-----')[0]  # Without JAX's traceback-filtering note.
    if f'config.{name}' in message or message.startswith(name.split('.')[0] + '.'):
      raise ValueError(message if message.startswith('config.') else f'config.{message}') from None
    detail = f' ({allowed})' if allowed else ''
    raise ValueError(f'config.{name}={value!r} is invalid{detail}: {message}') from None


def _fail(name: str, value: Any, allowed: str):
  raise ValueError(f'config.{name}={value!r} is invalid: {allowed}')


def _positive_finite(name: str, value, allow_zero: bool = False):
  ok = isinstance(value, (int, float)) and math.isfinite(value) and (
      value >= 0 if allow_zero else value > 0)
  if not ok:
    _fail(name, value, f'must be a finite number {">= 0" if allow_zero else "> 0"}')


# ---------------------------------------------------------------------------------------------
# Builders of one part each.


def build_process(diffusion: ml_collections.ConfigDict) -> processes.Process:
  """The forward process of ``config.diffusion``."""
  kind = diffusion.process
  if kind not in processes.PROCESSES:
    _fail('diffusion.process', kind, f'must be one of {sorted(processes.PROCESSES)}')
  with field(f'diffusion ({kind})', None):
    if kind == 'flow':
      return processes.FlowMatching(time_sampler=diffusion.time_sampler,
                                    logit_mean=diffusion.logit_mean,
                                    logit_std=diffusion.logit_std, t_clamp=diffusion.t_clamp)
    if kind == 'ddpm':
      return processes.DDPM(schedule=diffusion.schedule, num_steps=diffusion.num_train_steps,
                            beta_start=diffusion.beta_start, beta_end=diffusion.beta_end,
                            spacing=diffusion.spacing)
    return processes.EDM(**diffusion.edm.to_dict())


def noise_settings(noise: ml_collections.ConfigDict) -> dict:
  """The keyword arguments of :func:`phipd_jax.noise.noise_fn` of ``config.noise``."""
  return dict(r0=noise.r0, rate=noise.rate, edge_width=noise.edge_width, mode=noise.mode,
              magnitude=noise.magnitude, scale=noise.scale,
              pad_factor=noise.pad_factor if noise.pad_factor else None)


def build_noise_fn(noise: ml_collections.ConfigDict, kind: Optional[str] = None) -> Callable:
  """``noise_fn(key, x0, radius=None)`` of ``config.noise`` (``kind`` overrides its kind)."""
  kind = kind or noise.kind
  if kind not in noise_lib.NOISE_KINDS:
    _fail('noise.kind', kind, f'must be one of {noise_lib.NOISE_KINDS}')
  for name in ('rate', 'edge_width', 'scale'):
    _positive_finite(f'noise.{name}', noise[name])
  _positive_finite('noise.r0', noise.r0, allow_zero=True)
  with field('noise', noise.to_dict()):
    return noise_lib.noise_fn(kind, **noise_settings(noise))


def build_optimizer(optim: ml_collections.ConfigDict,
                    num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warmup then cosine (or constant) decay, after global-norm clipping.

  Returns:
    ``(optimizer, learning-rate schedule)``.
  """
  _positive_finite('optim.learning_rate', optim.learning_rate)
  _positive_finite('optim.grad_clip', optim.grad_clip)
  _positive_finite('optim.weight_decay', optim.weight_decay, allow_zero=True)
  if not 0 <= optim.final_lr_fraction <= 1:
    _fail('optim.final_lr_fraction', optim.final_lr_fraction, 'must be in [0, 1]')
  for name in ('b1', 'b2'):
    if not 0 <= optim[name] < 1:
      _fail(f'optim.{name}', optim[name], 'must be in [0, 1)')
  if not 0 <= optim.ema_decay < 1:
    _fail('optim.ema_decay', optim.ema_decay, 'must be in [0, 1)')
  if not 0 <= optim.warmup_steps < num_steps:
    _fail('optim.warmup_steps', optim.warmup_steps, f'must be in [0, train.num_steps={num_steps})')
  rate = optim.learning_rate
  if optim.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(0.0, rate, optim.warmup_steps, max(num_steps, 1),
                                                  end_value=rate * optim.final_lr_fraction)
  elif optim.schedule == 'constant':
    schedule = optax.join_schedules([optax.linear_schedule(0.0, rate, optim.warmup_steps),
                                     optax.constant_schedule(rate)], [optim.warmup_steps])
  else:
    _fail('optim.schedule', optim.schedule, "must be 'cosine' or 'constant'")
  optimizer = optax.chain(
      optax.clip_by_global_norm(optim.grad_clip),
      optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay))
  return optimizer, schedule


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
  """``config.model`` without its name: the builder's keyword arguments."""
  kwargs = config.model.to_dict()
  kwargs.pop('name')
  return kwargs


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs,
                in_channels: int = 3) -> nnx.Module:
  """The network of ``config.model`` (registry :data:`phipd_jax.models.MODELS`)."""
  name = config.model.name
  if name in models.SIZES and config.model.size not in models.SIZES[name]:
    _fail('model.size', config.model.size,
          f'must be one of {sorted(models.SIZES[name])} for model.name={name!r}')
  with field('model', None):
    return models.build(name, rngs=rngs, in_channels=in_channels,
                        image_size=config.data.image_size, **model_kwargs(config))


# ---------------------------------------------------------------------------------------------
# The whole experiment.


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Every object a run needs, built once from its config.

  Attributes:
    config: the validated config (kept for writing ``config.json`` and for the entry points).
    graphdef: the model's ``nnx.GraphDef`` (parameters live in the train state).
    process: the forward process.
    noise_fn: ``noise_fn(key, x0, radius=None) -> eps`` of the run (training and sampling).
    prediction: the network's prediction type.
    optimizer: the optax transformation; ``learning_rate`` its schedule.
    image_shape: ``(H, W, C)`` of the space the diffusion runs in.
  """

  config: ml_collections.ConfigDict
  graphdef: nnx.GraphDef
  process: processes.Process
  noise_fn: Callable
  prediction: str
  optimizer: optax.GradientTransformation
  learning_rate: optax.Schedule
  image_shape: tuple[int, int, int]

  @property
  def num_classes(self) -> int:
    return self.config.model.num_classes

  def init_params(self, key: Array):
    """Fresh model parameters (``nnx.State`` of ``nnx.Param``) from ``key``."""
    return nnx.state(build_model(self.config, nnx.Rngs(key), self.image_shape[-1]), nnx.Param)

  def apply_fn(self, params) -> Callable:
    """``(x_in, t_in, y) -> output`` of the model with ``params`` (merged inside the trace)."""
    return training.apply_model(self.graphdef, params)

  def loss_fn(self, mesh=None) -> Callable:
    """``loss_fn(params, batch, key) -> (loss, metrics)`` of the diffusion objective.

    ``batch`` holds ``'image'`` (float32 ``[B, H, W, C]`` in ``[-1, 1]``) and ``'label'``; the
    label dropout for classifier-free guidance and the objective draw from ``key``. With a mesh,
    activations are kept split over the batch axes.
    """
    process, noise_fn, prediction = self.process, self.noise_fn, self.prediction
    loss_space = self.config.diffusion.loss_space
    num_classes, dropout = self.num_classes, self.config.train.label_dropout
    graphdef = self.graphdef
    constrain = lambda x: x
    if mesh is not None:
      batch_sharding = sharding_lib.batch_sharding(mesh)
      constrain = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)

    def loss_fn(params, batch, key):
      label_key, loss_key = jax.random.split(key)
      labels = None
      if num_classes:
        drop = jax.random.uniform(label_key, batch['label'].shape) < dropout
        labels = jnp.where(drop, num_classes, batch['label'])
      model = training.apply_model(graphdef, params)
      # Keep activations split over the batch (GSPMD may otherwise follow the fsdp weights).
      apply_fn = lambda x, t, y: constrain(model(constrain(x), t, y))
      loss = objectives.diffusion_loss(process, apply_fn, constrain(batch['image']), loss_key,
                                       lambda k, x: noise_fn(k, x), prediction, labels,
                                       loss_space)
      return loss, {}

    return loss_fn

  def sampler(self, num_steps: Optional[int] = None,
              method: Optional[str] = None) -> sampling.Sampler:
    """The :class:`~phipd_jax.sampling.Sampler` of the run's ``config.sample`` settings
    (``num_steps`` and ``method`` override the config's)."""
    sample = self.config.sample
    return sampling.Sampler(
        process=self.process, graphdef=self.graphdef, prediction=self.prediction,
        method=method or sample.sampler, num_steps=num_steps or sample.num_steps,
        noise_fn=build_noise_fn(self.config.noise, 'fss'),
        gaussian_fn=build_noise_fn(self.config.noise, 'gaussian'),
        null_label=self.num_classes or None,
        guidance_interval=tuple(sample.guidance_interval) or None, clip_x0=sample.clip_x0,
        ovg=sample.ovg.to_dict() if 'ovg' in sample else None)

  def create_train_state(self, mesh) -> training.TrainState:
    """A train state at step 0, born sharded on ``mesh`` (see
    :func:`phipd_jax.training.create_train_state`)."""
    return training.create_train_state(self.init_params, self.optimizer, mesh, self.config.seed,
                                       self.config.mesh.fsdp_min_size)

  def train_step(self, mesh, state: training.TrainState) -> Callable:
    """The jitted, sharded, state-donating ``train_step(state, batch) -> (state, metrics)``."""
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return training.make_train_step(self.loss_fn(mesh), self.optimizer, shardings,
                                    sharding_lib.batch_sharding(mesh),
                                    ema_decay=self.config.optim.ema_decay,
                                    learning_rate=self.learning_rate)


def _validate_run_fields(config, data_parallel_size: int):
  data, train, sample = config.data, config.train, config.sample
  if data.image_size <= 0:
    _fail('data.image_size', data.image_size, 'must be > 0 (pixels)')
  if data.resize < data.image_size:
    _fail('data.resize', data.resize, f'must be >= data.image_size={data.image_size}')
  if train.batch_size <= 0 or train.batch_size % data_parallel_size:
    _fail('train.batch_size', train.batch_size,
          f'must be a positive multiple of the data-parallel size {data_parallel_size}')
  for name in ('num_steps', 'checkpoint_every', 'log_every', 'keep_checkpoints'):
    if not train[name] >= 1:
      _fail(f'train.{name}', train[name], 'must be >= 1')
  if not 0 <= train.label_dropout < 1:
    _fail('train.label_dropout', train.label_dropout, 'must be in [0, 1)')
  if sample.num_steps <= 0:
    _fail('sample.num_steps', sample.num_steps, 'must be > 0')
  for strength in tuple(sample.sdedit_strengths) + (sample.phipd_strength,):
    if not 0 < strength <= 1:
      _fail('sample.sdedit_strengths/phipd_strength', strength, 'must be in (0, 1]')
  for radius in sample.radii:
    if not radius >= 0:
      _fail('sample.radii', tuple(sample.radii), 'every radius must be >= 0 (or inf)')
  _positive_finite('sample.guidance_scale', sample.guidance_scale, allow_zero=True)
  _positive_finite('sample.clip_x0', sample.clip_x0, allow_zero=True)
  interval = tuple(sample.guidance_interval)
  if interval and (len(interval) != 2 or not 0 <= interval[0] < interval[1] <= 1):
    _fail('sample.guidance_interval', interval, '() or (low, high) with 0 <= low < high <= 1')
  if config.model.num_classes < 0:
    _fail('model.num_classes', config.model.num_classes, 'must be >= 0')
  domains = tuple(data.get('domains', ()))
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  for domain in domains:
    with field('data.domains', domains):
      pipeline.parse_domain(domain)
  if domains and config.model.num_classes < len(domains):
    _fail('model.num_classes', config.model.num_classes,
          f'must be >= len(data.domains) = {len(domains)} (one class per domain)')
  classes = tuple(sample.get('inversion_classes', ()))
  if classes and (len(classes) != 2 or not all(0 <= c < config.model.num_classes
                                                for c in classes)):
    _fail('sample.inversion_classes', classes,
          f'() or (source, target) with classes in [0, model.num_classes='
          f'{config.model.num_classes})')
  if 'ovg' in sample:
    ovg = sample.ovg
    for name in ('eta_n', 'eta_c'):
      _positive_finite(f'sample.ovg.{name}', ovg[name], allow_zero=True)
    _positive_finite('sample.ovg.kappa', ovg.kappa)
    if not 0 <= ovg.forward_fraction <= 1:
      _fail('sample.ovg.forward_fraction', ovg.forward_fraction, 'must be in [0, 1]')


def build(config: ml_collections.ConfigDict, data_parallel_size: int = 1) -> Experiment:
  """Validates ``config`` by building every part of the run; cheap (no arrays are allocated).

  Args:
    config: a run config (``configs/common.get_base_config`` and its experiment overrides).
    data_parallel_size: the mesh's data-parallel size (the batch must divide over it).

  Raises:
    ValueError: a field out of range, naming ``config.<field>``, its value and what is allowed.
  """
  _validate_run_fields(config, data_parallel_size)
  process = build_process(config.diffusion)
  prediction = config.diffusion.prediction
  with field('diffusion.prediction', prediction):
    process.check_prediction(prediction)
  with field('sample.sampler', config.sample.sampler):
    process.check_sampler(config.sample.sampler)
  if 'ovg' in config.sample and config.sample.ovg.forward_fraction and (
      process.ovg_branch != 'ddim'):
    _fail('sample.ovg.forward_fraction', config.sample.ovg.forward_fraction,
          "must be 0 unless diffusion.process='ddpm' (it exists only in OVG's DDIM branch)")
  loss_space = config.diffusion.loss_space
  if loss_space not in objectives.LOSS_SPACES:
    _fail('diffusion.loss_space', loss_space, f'must be one of {objectives.LOSS_SPACES}')
  if loss_space == 'v' and not process.velocity_loss:
    _fail('diffusion.loss_space', loss_space, "'v' needs diffusion.process='flow'")
  noise_fn = build_noise_fn(config.noise)
  optimizer, schedule = build_optimizer(config.optim, config.train.num_steps)
  channels = 3
  image_shape = (config.data.image_size, config.data.image_size, channels)
  model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0), channels))
  graphdef, _ = nnx.split(model)
  return Experiment(config=config, graphdef=graphdef, process=process, noise_fn=noise_fn,
                    prediction=prediction, optimizer=optimizer, learning_rate=schedule,
                    image_shape=image_shape)


# ---------------------------------------------------------------------------------------------
# Saved runs.


def migrate(saved: dict) -> dict:
  """A saved ``config.json`` (any version) as today's fields.

  Turn-1 runs stored the JiT-only ``model.in_context_len`` / ``model.spectral_forcing`` for
  every model; a DiT run's copies (which it never used) are dropped.
  """
  saved = dict(saved)
  model = dict(saved.get('model', {}))
  if model.get('name', 'dit') != 'jit':
    model.pop('in_context_len', None)
    forcing = model.pop('spectral_forcing', None)
    if forcing and forcing.get('schedule'):
      raise ValueError(f'saved run: model.spectral_forcing={forcing} on model.name='
                       f'{model.get("name")!r}')
  saved['model'] = model
  return saved


def run_config(workdir: str, defaults: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``defaults`` updated with the run's migrated ``config.json``.

  Raises:
    FileNotFoundError: the workdir has no config.json.
  """
  from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  saved = migrate(checkpoint.load_config_dict(workdir))
  config = ml_collections.ConfigDict(defaults.to_dict())
  if saved['model'].get('name') == 'jit' and 'spectral_forcing' not in config.model:
    from configs import common  # pylint: disable=g-import-not-at-top
    common.set_jit_recipe(config)
  config.update(saved)
  return config


def load_run(workdir: str, defaults: ml_collections.ConfigDict,
             items: Sequence[str] = ('ema_params',), num_steps: Optional[int] = None,
             mesh=None) -> tuple[ml_collections.ConfigDict, Experiment, dict]:
  """A saved run's ``(config, experiment, restored items)`` from its latest readable checkpoint.

  Only ``items`` are read (``'params'``, ``'ema_params'``, ``'opt_state'``, ``'meta'``): a sampler
  restores the EMA parameters and never builds Adam moments.

  Args:
    workdir: a ``train.py`` run directory.
    defaults: today's full default config (``configs.common.get_base_config()``).
    items: checkpoint items to restore.
    num_steps: override of ``config.sample.num_steps``.
    mesh: where the arrays land (default: every local device, replicated).

  Raises:
    FileNotFoundError: no config.json, or no readable checkpoint.
    ValueError: the saved config no longer builds (with the field named).
  """
  from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  config = run_config(workdir, defaults)
  if num_steps is not None:
    config.sample.num_steps = num_steps
  experiment = build(config)
  if not checkpoint.has_checkpoint(workdir):
    raise FileNotFoundError(f'no checkpoint in {checkpoint.checkpoint_dir(workdir)}: train the run '
                            'first (python train.py --config ... --workdir ...)')
  mesh = mesh or sharding_lib.make_mesh(-1, 1)
  template = training.abstract_train_state(experiment.init_params, experiment.optimizer, mesh,
                                           config.seed)
  restored = checkpoint.restore_items(workdir, template, items)
  return config, experiment, restored
