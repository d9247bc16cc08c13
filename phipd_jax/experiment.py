"""The one reader of run configs: validates by building, and builds every object of a run.

Data flows one way: config -> :func:`build` -> (model graphdef, process, noise function, loss
function, optimizer, sampler settings) -> training / sampling / benchmarking, which never see a
config. A bad value raises ``ValueError`` naming the config field, the value and what is allowed,
before anything is written or loaded.

Saved runs are rebuilt by :func:`phipd_jax.saved_run.load_run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any, Callable, Optional

import jax
import ml_collections
import optax
from flax import nnx

from phipd_jax import defaults, latent, losses, models, noise as noise_lib, sampling
from phipd_jax import sharding as sharding_lib, specs
from phipd_jax import training
from phipd_jax.diffusion import lwd, objectives, processes

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


_fail, _positive_finite = specs.fail, specs.check_number


# ---------------------------------------------------------------------------------------------
# Builders of one part each.


def build_process(diffusion: ml_collections.ConfigDict) -> processes.Process:
  """The forward process of ``config.diffusion``."""
  kind = diffusion.process
  if kind not in processes.PROCESSES:
    _fail('diffusion.process', kind, f'must be one of {sorted(processes.PROCESSES)}')
  with field(f'diffusion.{kind}', None):
    return processes.build(kind, diffusion[kind].to_dict())


def noise_settings(noise: specs.NoiseSpec) -> dict:
  """The keyword arguments of :func:`phipd_jax.noise.noise_fn` of the noise spec (or section)."""
  return dict(r0=noise.r0, rate=noise.rate, edge_width=noise.edge_width, mode=noise.mode,
              magnitude=noise.magnitude, scale=noise.scale,
              pad_factor=noise.pad_factor if noise.pad_factor else None)


def build_noise_fn(noise: ml_collections.ConfigDict, kind: Optional[str] = None) -> Callable:
  """``noise_fn(key, x0, radius=None)`` of ``config.noise`` (``kind`` overrides its kind)."""
  kind = kind or noise.kind
  if kind not in noise_lib.NOISE_KINDS:
    _fail('noise.kind', kind, f'must be one of {noise_lib.NOISE_KINDS}')
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


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs, in_channels: int = 3,
                image_size: Optional[int] = None) -> nnx.Module:
  """The network of ``config.model`` (registry :data:`phipd_jax.models.MODELS`) for inputs of
  ``image_size`` (default ``config.data.image_size``; the latent side of a latent run)."""
  name = config.model.name
  if name in models.SIZES and config.model.size not in models.SIZES[name]:
    _fail('model.size', config.model.size,
          f'must be one of {sorted(models.SIZES[name])} for model.name={name!r}')
  with field('model', None):
    return models.build(name, rngs=rngs, in_channels=in_channels,
                        image_size=image_size or config.data.image_size, **model_kwargs(config))


CODEC_DIR = 'codec'  # <workdir>/codec: the run's copy of its autoencoder (a loadable run dir).


def codec_dir(workdir: str) -> str:
  """Where a latent run keeps its copy of the autoencoder run."""
  return os.path.join(workdir, CODEC_DIR)


def _codec_experiment(config: ml_collections.ConfigDict, source: str) -> 'Experiment':
  """The autoencoder experiment a latent run encodes with (built from ``source/config.json``).

  Raises:
    ValueError: ``source`` has no config.json, is not an autoencoder run, or its downsampling
      factor does not divide ``data.image_size``.
  """
  from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  try:
    codec_config = defaults.config_from_saved(checkpoint.load_config_dict(source))
  except FileNotFoundError:
    _fail('codec.workdir', config.codec.workdir,
          f'{source!r} has no config.json: train an autoencoder first (python train.py '
          '--config configs/autoencoder_lwd.py:cpu,f=4 --workdir ...)')
  if codec_config.model.name != 'autoencoder':
    _fail('codec.workdir', config.codec.workdir,
          f'{source!r} is a model.name={codec_config.model.name!r} run, not an autoencoder')
  with field('codec.workdir', config.codec.workdir):
    codec_exp = build(codec_config)
  factor = codec_config.model.downsample
  if config.data.image_size % factor:
    _fail('data.image_size', config.data.image_size,
          f'must be a multiple of the codec\'s downsampling factor {factor} ({source})')
  return codec_exp


def validate_lwd(settings: ml_collections.ConfigDict, process: processes.Process):
  """Checks ``config.diffusion.lwd`` against the process (the mask's time units).

  Raises:
    ValueError: a field out of range, or ``enabled`` with a process whose time is not the flow
      noise level in ``[0, 1]`` (DDPM steps and EDM sigmas would be masked in the wrong units).
  """
  if not isinstance(settings.enabled, bool):
    _fail('diffusion.lwd.enabled', settings.enabled, 'must be True or False')
  if not isinstance(settings.ell, (int, float)) or not math.isfinite(settings.ell) or (
      settings.ell < 0):
    _fail('diffusion.lwd.ell', settings.ell, 'must be a finite number >= 0 (the paper uses 0.3)')
  if settings.normalize not in lwd.NORMALIZATIONS:
    _fail('diffusion.lwd.normalize', settings.normalize,
          f"must be one of {lwd.NORMALIZATIONS} ('all' = released code; 'mask' = deviation)")
  if not isinstance(settings.log_bins, int) or settings.log_bins < 0:
    _fail('diffusion.lwd.log_bins', settings.log_bins, 'must be an integer >= 0')
  if settings.enabled and not process.flow_noise_level_time:
    _fail('diffusion.lwd.enabled', settings.enabled,
          f"LWD's mask compares the flow-matching noise level t in [0, 1]; it needs "
          f"diffusion.process='flow' (got {type(process).__name__})")


# ---------------------------------------------------------------------------------------------
# The whole experiment.


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Every object a run needs, built once from its config.

  Attributes:
    config: the validated config (the builder's own; written as ``config.json``). Code below the
      builder reads :attr:`spec` instead.
    spec: the typed specs of the run's sections (:class:`phipd_jax.specs.RunSpec`).
    graphdef: the model's ``nnx.GraphDef`` (parameters live in the train state).
    process: the forward process.
    noise_fn: ``noise_fn(key, x0, radius=None) -> eps`` of the run (training and sampling).
    prediction: the network's prediction type.
    optimizer: the optax transformation; ``learning_rate`` its schedule.
    image_shape: ``(H, W, C)`` of the space the diffusion runs in (of the images, for an
      autoencoder run).
    objective: what trains the model, declared by its registry entry
      (:data:`phipd_jax.models.OBJECTIVES`): ``'diffusion'`` or ``'autoencoder'``.
    model_shape: ``(h, w, c)`` of the space the network sees: ``image_shape`` in pixel space,
      the latent ``(H / f, W / f, latent_channels)`` with a codec.
    codec_source: the autoencoder run a latent run encodes with (``''`` in pixel space).
    codec_experiment: that autoencoder's experiment, built once (None in pixel space).
    codec: the loaded :class:`~phipd_jax.latent.Codec` (:meth:`with_codec`; None until
      loaded, which :func:`load_run` and the trainer do). The loss, the sampler and the
      benchmark read it; unloaded means the identity (pixels).
  """

  config: ml_collections.ConfigDict
  spec: specs.RunSpec
  graphdef: nnx.GraphDef
  process: processes.Process
  noise_fn: Callable
  prediction: str
  optimizer: optax.GradientTransformation
  learning_rate: optax.Schedule
  image_shape: tuple[int, int, int]
  objective: str = 'diffusion'
  model_shape: Optional[tuple[int, int, int]] = None
  codec_source: str = ''
  codec_experiment: Any = dataclasses.field(default=None, compare=False)
  codec: Optional[latent.Codec] = dataclasses.field(default=None, compare=False)

  @property
  def is_latent(self) -> bool:
    """True when the diffusion runs in an autoencoder's latent space."""
    return bool(self.codec_source)

  def load_codec(self, scale: Optional[float] = None) -> latent.Codec:
    """The run's codec: the identity in pixel space, else the autoencoder of
    :attr:`codec_source` (its EMA parameters, latest readable checkpoint) at ``scale``
    (default ``config.codec.scale``; 0 = unscaled, for measuring the scale).

    Raises:
      FileNotFoundError: the autoencoder run has no readable checkpoint.
    """
    if not self.is_latent:
      return latent.identity_codec(self.image_shape[-1])
    from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
    if not checkpoint.has_checkpoint(self.codec_source):
      raise FileNotFoundError(f'config.codec.workdir: no checkpoint in {self.codec_source}')
    codec_exp = self.codec_experiment
    template = training.abstract_train_state(codec_exp.init_params, codec_exp.optimizer,
                                             sharding_lib.make_mesh(-1, 1), 0)
    params = checkpoint.restore_items(self.codec_source, template, ('ema_params',))
    scale = self.config.codec.scale if scale is None else scale
    return latent.autoencoder_codec(codec_exp.graphdef, params['ema_params'],
                                    scale=float(scale) or 1.0)

  def with_codec(self, codec: latent.Codec) -> 'Experiment':
    """This experiment with its codec loaded (see :attr:`codec`).

    Raises:
      ValueError: the codec does not map ``image_shape`` to ``model_shape``.
    """
    if tuple(codec.latent_shape(self.image_shape)) != tuple(self.model_shape):
      raise ValueError(f'codec maps {self.image_shape} to {codec.latent_shape(self.image_shape)}, '
                       f'the model takes {self.model_shape}')
    return dataclasses.replace(self, codec=codec)

  def with_codec_source(self, source: str) -> 'Experiment':
    """This latent run reading its autoencoder from ``source`` (the run's own copy, identical
    to ``config.codec.workdir``: the built codec experiment is kept)."""
    return dataclasses.replace(self, codec_source=source)

  def with_codec_scale(self, scale: float) -> 'Experiment':
    """This experiment with ``config.codec.scale = scale`` (the scale measured at the start,
    stored in the run's config.json)."""
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.codec.scale = float(scale)
    return dataclasses.replace(self, config=config,
                               spec=dataclasses.replace(self.spec, codec=dataclasses.replace(
                                   self.spec.codec, scale=float(scale))))

  def saved_config(self) -> dict:
    """The run's config as a JSON-ready dict: what ``config.json`` holds."""
    return self.config.to_dict()

  def measure_codec_scale(self, codec: latent.Codec) -> float:
    """``1 / std`` of the unscaled latents of ``config.codec.scale_images`` training images
    (:func:`phipd_jax.latent.measure_latent_scale`; the first images of the train split)."""
    from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    data = self.config.data
    images = pipeline.eval_images(data, data.train_split, data.image_key,
                                  self.config.codec.scale_images)
    unscaled = dataclasses.replace(codec, scale=1.0, shift=0.0)
    return latent.measure_latent_scale(jax.jit(unscaled.encode), images)

  @property
  def num_classes(self) -> int:
    return self.config.model.num_classes

  def init_params(self, key: Array):
    """Fresh model parameters (``nnx.State`` of ``nnx.Param``) from ``key``."""
    return nnx.state(build_model(self.config, nnx.Rngs(key), self.model_shape[-1],
                                 self.model_shape[0]), nnx.Param)

  @property
  def rng_impl(self) -> str:
    """The PRNG of the run's key (``config.rng_impl``; runs saved before it: threefry)."""
    return self.config.get('rng_impl', 'threefry2x32')

  def apply_fn(self, params) -> Callable:
    """``(x_in, t_in, y) -> output`` of the model with ``params`` (merged inside the trace)."""
    return models.apply_model(self.graphdef, params)

  def loss_fn(self, mesh=None) -> Callable:
    """``loss_fn(params, batch, key, constants=None) -> (loss, metrics)`` of the run's objective:
    the model's registry entry (:attr:`objective`) picks :func:`phipd_jax.losses.diffusion_loss_fn`
    or :func:`phipd_jax.losses.autoencoder_loss_fn`. ``constants`` is :meth:`loss_constants`
    (frozen arrays the loss reads, passed through the jitted step as an argument); None uses
    cached copies. With a mesh, activations are kept split over its batch axes."""
    if self.objective == 'autoencoder':
      ae = self.spec.autoencoder
      return losses.autoencoder_loss_fn(self.graphdef, alpha=ae.alpha, beta=ae.beta, lam=ae.lam,
                                        scales=ae.scales, mesh=mesh)
    diffusion, lwd_settings = self.spec.diffusion, None
    if diffusion['lwd']['enabled']:
      lwd_settings = losses.LwdSettings(diffusion['lwd']['ell'], diffusion['lwd']['normalize'],
                                        diffusion['lwd']['log_bins'])
    return losses.diffusion_loss_fn(
        self.graphdef, self.process, self.noise_fn, self.prediction,
        loss_space=diffusion['loss_space'], num_classes=self.num_classes,
        label_dropout=self.spec.train.label_dropout, lwd_settings=lwd_settings,
        codec=self._loaded_codec() if self.is_latent else None, mesh=mesh)

  def loss_constants(self):
    """Frozen arrays the loss reads (a pytree or None): the LPIPS-VGG weights of an autoencoder
    run with ``autoencoder.lam > 0`` (59 MB: an argument of the step, not compiled in)."""
    if self.objective == 'autoencoder' and self.config.autoencoder.lam > 0:
      return {'lpips': latent.lpips_vgg_weights()}
    if self.is_latent:
      return {'codec': self._loaded_codec().params}
    return None

  def _loaded_codec(self) -> latent.Codec:
    if self.is_latent and self.codec is None:
      raise ValueError('a latent run needs its codec loaded first: '
                       'experiment.with_codec(experiment.load_codec())')
    return self.codec or latent.identity_codec(self.image_shape[-1])

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
        ovg=sample.ovg.to_dict() if 'ovg' in sample else None,
        codec=self._loaded_codec() if self.is_latent else None)

  def create_train_state(self, mesh) -> training.TrainState:
    """A train state at step 0, born sharded on ``mesh`` (see
    :func:`phipd_jax.training.create_train_state`)."""
    return training.create_train_state(self.init_params, self.optimizer, mesh, self.config.seed,
                                       self.config.mesh.fsdp_min_size, self.rng_impl)

  def train_step(self, mesh, state: training.TrainState) -> Callable:
    """The jitted, sharded, state-donating ``train_step(state, batch) -> (state, metrics)``."""
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return training.make_train_step(self.loss_fn(mesh), self.optimizer, shardings,
                                    sharding_lib.batch_sharding(mesh),
                                    ema_decay=self.config.optim.ema_decay,
                                    learning_rate=self.learning_rate,
                                    constants=self.loss_constants(), rng_impl=self.rng_impl)


def _validate_across_sections(config, spec: specs.RunSpec, data_parallel_size: int):
  """What no single section's spec can check: fields that constrain each other."""
  if spec.train.batch_size % data_parallel_size:
    _fail('train.batch_size', spec.train.batch_size,
          f'must be a positive multiple of the data-parallel size {data_parallel_size}')
  num_classes = config.model.num_classes
  if num_classes < 0:
    _fail('model.num_classes', num_classes, 'must be >= 0')
  domains = spec.data.domains
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  for domain in domains:
    with field('data.domains', domains):
      pipeline.parse_domain(domain)
  if domains and num_classes < len(domains):
    _fail('model.num_classes', num_classes,
          f'must be >= len(data.domains) = {len(domains)} (one class per domain)')
  classes = spec.sample.inversion_classes
  if classes and (len(classes) != 2 or not all(0 <= c < num_classes for c in classes)):
    _fail('sample.inversion_classes', classes,
          f'() or (source, target) with classes in [0, model.num_classes={num_classes})')


def build(config: ml_collections.ConfigDict, data_parallel_size: Optional[int] = None,
          codec_source: Optional[str] = None) -> Experiment:
  """Validates ``config`` by building every part of the run; cheap (no arrays are allocated).

  Args:
    config: a run config (:func:`phipd_jax.defaults.get_base_config` and its experiment
      overrides).
    data_parallel_size: the mesh's data-parallel size (the batch must divide over it;
      default: that of ``config.mesh`` on this process's devices).
    codec_source: where a latent run's autoencoder is read (default ``config.codec.workdir``;
      a saved run's own copy, :func:`codec_dir`, when it has one).

  Raises:
    ValueError: a field out of range, naming ``config.<field>``, its value and what is allowed.
  """
  spec = specs.from_config_dict(config.to_dict())
  if data_parallel_size is None:
    data_parallel_size = sharding_lib.data_parallel_size(
        sharding_lib.make_mesh(spec.mesh.data, spec.mesh.fsdp))
  _validate_across_sections(config, spec, data_parallel_size)
  training.check_rng_impl(config.get('rng_impl', 'threefry2x32'))
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
  validate_lwd(config.diffusion.lwd, process)
  noise_fn = build_noise_fn(config.noise)
  optimizer, schedule = build_optimizer(config.optim, config.train.num_steps)
  channels = 3
  image_shape = (config.data.image_size, config.data.image_size, channels)
  model_shape, codec_exp = image_shape, None
  objective = models.objective(config.model.name)
  codec_source = codec_source or (config.codec.workdir if 'codec' in config else '')
  if codec_source:
    if objective != 'diffusion':
      _fail('codec.workdir', config.codec.workdir, f'a codec needs a diffusion model, not '
            f'model.name={config.model.name!r}')
    if config.codec.cache and config.data.resize != config.data.image_size:
      _fail('codec.cache', config.codec.cache,
            f'caching latents needs data.resize == data.image_size (no random crops; got '
            f'{config.data.resize} and {config.data.image_size}); set it False to encode in '
            'the train step')
    codec_exp = _codec_experiment(config, codec_source)
    factor = codec_exp.config.model.downsample
    model_shape = (image_shape[0] // factor, image_shape[1] // factor,
                   codec_exp.config.model.latent_channels)
  model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0), model_shape[-1],
                                             model_shape[0]))
  if objective == 'autoencoder' and spec.autoencoder is None:
    _fail('autoencoder', None, "model.name='autoencoder' needs the config.autoencoder section "
          '(phipd_jax.defaults.set_autoencoder_recipe)')
  if objective == 'autoencoder':  # After the model: its builder checks the downsampling first.
    side = spec.data.image_size // config.model.downsample
    if spec.autoencoder.alpha > 0 and any(side % s for s in spec.autoencoder.scales):
      _fail('autoencoder.scales', spec.autoencoder.scales,
            f'every scale must divide the latent side data.image_size / model.downsample = '
            f'{side} (or set autoencoder.alpha = 0)')
  graphdef, _ = nnx.split(model)
  return Experiment(config=config, spec=spec, graphdef=graphdef, process=process, noise_fn=noise_fn,
                    prediction=prediction, optimizer=optimizer, learning_rate=schedule,
                    image_shape=image_shape, objective=objective, model_shape=model_shape,
                    codec_source=codec_source, codec_experiment=codec_exp)
