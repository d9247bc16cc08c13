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
from typing import Any, Callable, Optional

import jax
import ml_collections
import optax
from flax import nnx

from phipd_jax import defaults, latent, lora as lora_lib, losses, models, noise as noise_lib
from phipd_jax import sampling
from phipd_jax import sharding as sharding_lib, specs, training, video_noise
from phipd_jax.diffusion import objectives, processes

Array = jax.Array


@contextlib.contextmanager
def field(name: str, value: Any = None):
  """Re-raises a builder's ``ValueError``/``TypeError`` as one naming ``config.<name>``."""
  try:
    yield
  except (ValueError, TypeError) as error:
    message = str(error).split('\n-----')[0]  # Without JAX's traceback-filtering note.
    if f'config.{name}' in message or message.startswith(name.split('.')[0] + '.'):
      raise ValueError(message if message.startswith('config.') else f'config.{message}') from None
    raise ValueError(f'config.{name}={value!r} is invalid: {message}') from None


_fail = specs.fail


def build_process(diffusion: ml_collections.ConfigDict) -> processes.Process:
  """The forward process of ``config.diffusion``."""
  kind = diffusion.process
  if kind not in processes.PROCESSES:
    _fail('diffusion.process', kind, f'must be one of {sorted(processes.PROCESSES)}')
  with field(f'diffusion.{kind}', None):
    return processes.build(kind, diffusion[kind].to_dict())


def build_noise_fn(noise: specs.NoiseSpec, kind: Optional[str] = None,
                   clips: bool = False) -> Callable:
  """``noise_fn(key, x0, radius=None)`` of the noise spec (``kind`` overrides its kind); for
  clips (``data.frames > 0``) ``noise_fn(key, x0, radius=None, flow=None)`` of the
  ``noise.video`` option (:func:`phipd_jax.video_noise.video_noise_fn`)."""
  kind = kind or noise.kind
  if kind not in noise_lib.NOISE_KINDS:
    _fail('noise.kind', kind, f'must be one of {noise_lib.NOISE_KINDS}')
  if noise.video not in video_noise.VIDEO_OPTIONS:
    _fail('noise.video', noise.video, f'must be one of {video_noise.VIDEO_OPTIONS}')
  with field('noise', noise):
    if clips:
      return video_noise.video_noise_fn(kind, noise.video, **noise.settings())
    return noise_lib.noise_fn(kind, **noise.settings())


def build_model(model: dict, rngs: nnx.Rngs, in_channels: int, image_size: int) -> nnx.Module:
  """The network of the ``config.model`` section (its ``name`` in the registry
  :data:`phipd_jax.models.MODELS`, the rest its keyword arguments) for ``[B, image_size,
  image_size, in_channels]`` inputs (the latent side and channels of a latent run)."""
  kwargs = dict(model)
  name = kwargs.pop('name')
  if name in models.SIZES and kwargs.get('size') not in models.size_names(name):
    _fail('model.size', kwargs.get('size'),
          f'must be one of {models.size_names(name)} for model.name={name!r}')
  with field('model', None):
    return models.build(name, rngs=rngs, in_channels=in_channels, image_size=image_size, **kwargs)


def _codec_experiment(spec: specs.RunSpec, objective: str, source: str) -> 'Experiment':
  """The autoencoder experiment a latent run encodes with (built from ``source/config.json``).

  Raises:
    ValueError: the run is not a diffusion run, caches latents of random crops, or ``source``
      has no config.json, is not an autoencoder run, or its downsampling factor does not divide
      ``data.image_size``.
  """
  from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  workdir, data = spec.codec.workdir, spec.data
  if objective != 'diffusion':
    _fail('codec.workdir', workdir,
          f"a codec needs a diffusion model, not model.name={spec.model['name']!r}")
  if spec.codec.cache and data.resize != data.image_size:
    _fail('codec.cache', True, f'caching latents needs data.resize == data.image_size (no '
          f'random crops; got {data.resize} and {data.image_size}); set it False to encode in '
          'the train step')
  try:
    codec_config = defaults.config_from_saved(checkpoint.load_config_dict(source))
  except FileNotFoundError:
    _fail('codec.workdir', workdir, f'{source!r} has no config.json: train an autoencoder first '
          '(python train.py --config configs/autoencoder_lwd.py:cpu,f=4 --workdir ...)')
  if models.objective(codec_config.model.name) != 'autoencoder':
    _fail('codec.workdir', workdir,
          f'{source!r} is a model.name={codec_config.model.name!r} run, not an autoencoder')
  with field('codec.workdir', workdir):
    codec_exp = build(codec_config)
  factor = models.downsample_factor(codec_config.model.to_dict())
  if data.image_size % factor:
    _fail('data.image_size', data.image_size,
          f'must be a multiple of the codec\'s downsampling factor {factor} ({source})')
  return codec_exp


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
      autoencoder run); ``(T, H, W, C)`` for a clip run (``data.frames = T``).
    objective: what trains the model, declared by its registry entry
      (:data:`phipd_jax.models.OBJECTIVES`): ``'diffusion'`` or ``'autoencoder'``.
    model_shape: ``(h, w, c)`` of the space the network sees: ``image_shape`` in pixel space,
      the latent ``(H / f, W / f, latent_channels)`` with a codec.
    codec_source: the autoencoder run a latent run encodes with (``''`` in pixel space).
    codec_experiment: that autoencoder's experiment, built once (None in pixel space).
    codec: the loaded :class:`~phipd_jax.latent.Codec` (:meth:`with_codec`; None until
      loaded, which :func:`phipd_jax.saved_run.load_codec` does for the trainer and
      :func:`~phipd_jax.saved_run.load_run`). The loss, the sampler and the
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
  lora_base: Any = dataclasses.field(default=None, compare=False)

  @property
  def is_clip(self) -> bool:
    """True for a clip run (``data.frames > 0``): arrays ``[B, T, H, W, C]``."""
    return bool(self.spec.data.frames)

  @property
  def is_latent(self) -> bool:
    """True when the diffusion runs in an autoencoder's latent space."""
    return bool(self.codec_source)

  def with_codec(self, codec: latent.Codec) -> 'Experiment':
    """This experiment with its codec loaded (see :attr:`codec`).

    Raises:
      ValueError: the codec does not map ``image_shape`` to ``model_shape``.
    """
    if tuple(codec.latent_shape(self.image_shape)) != tuple(self.model_shape):
      raise ValueError(f'codec maps {self.image_shape} to {codec.latent_shape(self.image_shape)}, '
                       f'the model takes {self.model_shape}')
    return dataclasses.replace(self, codec=codec)

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

  @property
  def num_classes(self) -> int:
    return self.spec.model['num_classes']

  @property
  def lora(self) -> Optional[lora_lib.LoraSpec]:
    """The run's LoRA settings (``config.lora``), or None when ``lora.rank`` is 0."""
    section = self.spec.lora
    if section is None or not section.rank:
      return None
    return lora_lib.LoraSpec(section.rank, section.alpha, tuple(section.targets),
                             float(section.dropout))

  def with_lora_base(self, base_params) -> 'Experiment':
    """This LoRA experiment with its frozen base parameters loaded (the ``init_from`` run's EMA
    parameters; :func:`phipd_jax.saved_run.load_lora_base`)."""
    return dataclasses.replace(self, lora_base=base_params)

  def model_init_params(self, key: Array):
    """Fresh parameters of the network (``nnx.State`` of ``nnx.Param``) from ``key``."""
    return nnx.state(build_model(self.spec.model, nnx.Rngs(key), self.model_shape[-1],
                                 self.model_shape[-3]), nnx.Param)

  def init_params(self, key: Array):
    """Fresh trainable parameters from ``key``: the network's (:meth:`model_init_params`), or
    for a LoRA run the adapters (:func:`phipd_jax.lora.init_adapters`, ``B = 0``)."""
    if self.lora is None:
      return self.model_init_params(key)
    abstract = jax.eval_shape(self.model_init_params, key)
    return lora_lib.init_adapters(key, abstract, self.lora)

  def model_params(self, params):
    """The network's parameters for trainable ``params``: ``params`` itself, or for a LoRA run
    the base merged with the adapters ``params``.

    Raises:
      ValueError: a LoRA run whose base is not loaded (:meth:`with_lora_base`).
    """
    if self.lora is None:
      return params
    if self.lora_base is None:
      raise ValueError('a LoRA run needs its base loaded first: '
                       'exp.with_lora_base(saved_run.load_lora_base(exp))')
    return lora_lib.merge(self.lora_base, params, self.lora)

  @property
  def rng_impl(self) -> str:
    """The PRNG of the run's key (``config.rng_impl``)."""
    return self.spec.top.rng_impl

  def apply_fn(self, params) -> Callable:
    """``(x_in, t_in, y) -> output`` of the model with ``params`` (merged inside the trace)."""
    return models.apply_model(self.graphdef, params)

  def loss_fn(self, mesh=None) -> Callable:
    """``loss_fn(params, batch, key, constants=None) -> (loss, metrics)`` of the run's objective:
    the model's registry entry (:attr:`objective`) picks :func:`phipd_jax.losses.diffusion_loss_fn`
    or :func:`phipd_jax.losses.autoencoder_loss_fn`. ``constants`` is :meth:`loss_constants`
    (frozen arrays the loss reads, passed through the jitted step as an argument); None uses
    cached copies. With a mesh, activations are kept split over its batch axes."""
    if self.lora is not None:  # d loss / d adapters through the low-rank path; the base constant.
      base_loss, spec = self._model_loss_fn(mesh), self.lora

      def lora_loss(adapters, batch, key, constants=None):
        constants = dict(constants)
        base = constants.pop('lora_base')
        dropout_key = None
        if spec.dropout:
          key, dropout_key = jax.random.split(key)
        params = lora_lib.low_rank(base, adapters, spec, dropout_key)
        return base_loss(params, batch, key, constants or None)

      return lora_loss
    return self._model_loss_fn(mesh)

  def _model_loss_fn(self, mesh=None) -> Callable:
    if self.objective == 'autoencoder':
      ae = self.spec.autoencoder
      return losses.autoencoder_loss_fn(self.graphdef, alpha=ae.alpha, beta=ae.beta, lam=ae.lam,
                                        scales=ae.scales, mesh=mesh)
    diffusion = self.spec.diffusion
    return losses.diffusion_loss_fn(
        self.graphdef, self.process, self.noise_fn, self.prediction,
        loss_space=diffusion['loss_space'], num_classes=self.num_classes,
        label_dropout=self.spec.train.label_dropout,
        lwd_settings=losses.lwd_settings(diffusion['lwd'], self.process),
        codec=self._loaded_codec() if self.is_latent else None, mesh=mesh)

  def loss_constants(self):
    """Frozen arrays the loss reads (a pytree or None): the LPIPS-VGG weights of an autoencoder
    run with ``autoencoder.lam > 0`` (59 MB: an argument of the step, not compiled in), a
    latent run's codec parameters, a LoRA run's base parameters (``lora_base``)."""
    constants = None
    if self.objective == 'autoencoder' and self.spec.autoencoder.lam > 0:
      constants = {'lpips': latent.lpips_vgg_weights()}
    elif self.is_latent:
      constants = {'codec': self._loaded_codec().params}
    if self.lora is not None:
      if self.lora_base is None:
        raise ValueError('a LoRA run needs its base loaded first (exp.with_lora_base)')
      constants = dict(constants or {}, lora_base=self.lora_base)
    return constants

  def _loaded_codec(self) -> latent.Codec:
    if self.is_latent and self.codec is None:
      raise ValueError('a latent run needs its codec loaded first: '
                       'exp.with_codec(saved_run.load_codec(exp))')
    return self.codec or latent.identity_codec(self.image_shape[-1])

  def sampler(self, num_steps: Optional[int] = None, method: Optional[str] = None,
              video: Optional[str] = None) -> sampling.Sampler:
    """The :class:`~phipd_jax.sampling.Sampler` of the run's ``config.sample`` settings
    (``num_steps`` and ``method`` override the config's; ``video`` the clip noise option
    ``config.noise.video`` of a clip run, one of :data:`phipd_jax.video_noise.VIDEO_OPTIONS`).

    Raises:
      ValueError: ``video`` on an image run, or not a video option.
    """
    noise = self.spec.noise
    if video is not None:
      if not self.is_clip:
        raise ValueError(f'sampler: video={video!r} is a clip option; this run has images')
      if video not in video_noise.VIDEO_OPTIONS:
        raise ValueError(f'sampler: video={video!r} must be one of {video_noise.VIDEO_OPTIONS}')
      noise = dataclasses.replace(noise, video=video)
    sample = self.spec.sample
    return sampling.Sampler(
        process=self.process, graphdef=self.graphdef, prediction=self.prediction,
        method=method or sample.sampler, num_steps=num_steps or sample.num_steps,
        noise_fn=build_noise_fn(noise, 'fss', self.is_clip),
        gaussian_fn=build_noise_fn(noise, 'gaussian', self.is_clip),
        null_label=self.num_classes or None,
        guidance_interval=tuple(sample.guidance_interval) or None, clip_x0=sample.clip_x0,
        guidance_channels=sample.guidance_channels,
        ovg=sample.ovg,
        codec=self._loaded_codec() if self.is_latent else None)

  def create_train_state(self, mesh) -> training.TrainState:
    """A train state at step 0, born sharded on ``mesh`` (see
    :func:`phipd_jax.training.create_train_state`)."""
    return training.create_train_state(self.init_params, self.optimizer, mesh, self.spec.seed,
                                       self.spec.mesh.fsdp_min_size, self.rng_impl)

  def train_step(self, mesh, state: training.TrainState) -> Callable:
    """The jitted, sharded, state-donating ``train_step(state, batch) -> (state, metrics)``."""
    shardings = jax.tree.map(lambda x: x.sharding, state)
    constants = self.loss_constants()
    constant_shardings = None
    if constants is not None:  # Replicated, except a LoRA base: split like the parameters.
      replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
      constant_shardings = {
          name: (sharding_lib.state_shardings(value, mesh, self.spec.mesh.fsdp_min_size)
                 if name == 'lora_base' else jax.tree.map(lambda _: replicated, value))
          for name, value in constants.items()}
    return training.make_train_step(self.loss_fn(mesh), self.optimizer, shardings,
                                    sharding_lib.batch_sharding(mesh),
                                    ema_decay=self.spec.optim.ema_decay,
                                    learning_rate=self.learning_rate, constants=constants,
                                    constant_shardings=constant_shardings,
                                    rng_impl=self.rng_impl)


def _validate_across_sections(spec: specs.RunSpec, data_parallel_size: int):
  """What no single section's spec can check: fields that constrain each other."""
  if spec.train.batch_size % data_parallel_size:
    _fail('train.batch_size', spec.train.batch_size,
          f'must be a positive multiple of the data-parallel size {data_parallel_size}')
  num_classes = spec.model['num_classes']
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


def _check_lora(spec: specs.RunSpec, objective: str, abstract_params):
  """A LoRA run: a diffusion model, a base run to adapt, targets that match its layers."""
  if objective != 'diffusion':
    _fail('lora.rank', spec.lora.rank, f"LoRA adapts the transformers (dit, jit), not "
          f"model.name={spec.model['name']!r}")
  if not spec.top.init_from:
    _fail('lora.rank', spec.lora.rank, 'a LoRA run adapts a base run: set config.init_from')
  with field('lora', None):
    lora_lib.target_kernels(abstract_params, lora_lib.LoraSpec(
        spec.lora.rank, spec.lora.alpha, tuple(spec.lora.targets)))


def _check_autoencoder(spec: specs.RunSpec):
  """An autoencoder run's section, and its multi-scale loss's scales against the latent side."""
  if spec.autoencoder is None:
    _fail('autoencoder', None, "model.name='autoencoder' needs the config.autoencoder section "
          '(phipd_jax.defaults.set_autoencoder_recipe)')
  side = spec.data.image_size // models.downsample_factor(spec.model)
  if spec.autoencoder.alpha > 0 and any(side % s for s in spec.autoencoder.scales):
    _fail('autoencoder.scales', spec.autoencoder.scales,
          f'every scale must divide the latent side data.image_size / model.downsample = '
          f'{side} (or set autoencoder.alpha = 0)')


CLIP_MODELS = ('video_dit',)


def _check_clips(spec: specs.RunSpec, frames: int):
  """A clip run (``data.frames > 0``) needs a clip model in pixel space, a clip length its
  temporal patches divide, and no image-only section; an image run, an image model."""
  name = spec.model['name']
  if not frames:
    if name in CLIP_MODELS:
      _fail('data.frames', 0, f"model.name={name!r} trains on clips: set data.frames to the clip "
            "length (and data.name to a clip dataset, e.g. 'camera_motion_clips')")
    if spec.noise.video != 'per_frame':
      _fail('noise.video', spec.noise.video, "is a clip setting: needs data.frames > 0 "
            "(leave it 'per_frame' for images)")
    return
  if name not in CLIP_MODELS:
    _fail('model.name', name, f'data.frames={frames} gives clips [B, T, H, W, C]: the model '
          f'must be one of {CLIP_MODELS}')
  temporal = spec.model.get('temporal_patch_size', 1)
  if isinstance(temporal, int) and temporal >= 1 and frames % temporal:
    _fail('data.frames', frames, f'must be a multiple of model.temporal_patch_size={temporal}')
  if spec.codec.workdir:
    _fail('codec.workdir', spec.codec.workdir, 'clip runs are pixel-space only (no codec yet)')
  if spec.diffusion['lwd']['enabled']:
    _fail('diffusion.lwd.enabled', True, 'the LWD mask is defined on images, not clips')
  if spec.data.domains:
    _fail('data.domains', spec.data.domains, 'multi-domain data is image-only')
  if spec.noise.video != 'per_frame' and spec.noise.mode != 'paper':
    _fail('noise.mode', spec.noise.mode, f"noise.video={spec.noise.video!r} implements "
          "mode='paper' only")


def build(config: ml_collections.ConfigDict, data_parallel_size: Optional[int] = None,
          codec_source: Optional[str] = None) -> Experiment:
  """Validates ``config`` by building every part of the run; cheap (no arrays are allocated).

  Args:
    config: a run config (:func:`phipd_jax.defaults.get_base_config` and its experiment
      overrides).
    data_parallel_size: the mesh's data-parallel size (the batch must divide over it;
      default: that of ``config.mesh`` on this process's devices).
    codec_source: where a latent run's autoencoder is read (default ``config.codec.workdir``;
      a saved run's own copy, :func:`phipd_jax.saved_run.codec_dir`, when it has one).

  Raises:
    ValueError: a field out of range, naming ``config.<field>``, its value and what is allowed.
  """
  spec = specs.from_config_dict(config.to_dict())
  if data_parallel_size is None:
    data_parallel_size = sharding_lib.data_parallel_size(
        sharding_lib.make_mesh(spec.mesh.data, spec.mesh.fsdp))
  _validate_across_sections(spec, data_parallel_size)
  training.check_rng_impl(spec.top.rng_impl)
  process = build_process(config.diffusion)
  prediction, loss_space = spec.diffusion['prediction'], spec.diffusion['loss_space']
  with field('diffusion.prediction', prediction):
    process.check_prediction(prediction)
  with field('sample.sampler', spec.sample.sampler):
    process.check_sampler(spec.sample.sampler)
  if spec.sample.ovg and spec.sample.ovg['forward_fraction'] and process.ovg_branch != 'ddim':
    _fail('sample.ovg.forward_fraction', spec.sample.ovg['forward_fraction'],
          "must be 0 unless diffusion.process='ddpm' (it exists only in OVG's DDIM branch)")
  if loss_space not in objectives.LOSS_SPACES:
    _fail('diffusion.loss_space', loss_space, f'must be one of {objectives.LOSS_SPACES}')
  if loss_space == 'v' and not process.velocity_loss:
    _fail('diffusion.loss_space', loss_space, "'v' needs diffusion.process='flow'")
  losses.lwd_settings(spec.diffusion['lwd'], process)
  objective = models.objective(spec.model['name'])
  frames = spec.data.frames
  _check_clips(spec, frames)
  noise_fn = build_noise_fn(spec.noise, clips=bool(frames))
  optimizer, schedule = training.build_optimizer(spec.optim, spec.train.num_steps)
  image_shape = (spec.data.image_size, spec.data.image_size, 3)
  if frames:
    image_shape = (frames,) + image_shape
  model_shape, codec_exp = image_shape, None
  codec_source = codec_source or spec.codec.workdir
  if codec_source:
    codec_exp = _codec_experiment(spec, objective, codec_source)
    factor = models.downsample_factor(codec_exp.spec.model)
    model_shape = (image_shape[0] // factor, image_shape[1] // factor,
                   codec_exp.spec.model['latent_channels'])
  model = nnx.eval_shape(lambda: build_model(spec.model, nnx.Rngs(0), model_shape[-1],
                                             model_shape[-3]))
  if spec.lora is not None and spec.lora.rank:
    _check_lora(spec, objective, nnx.state(model, nnx.Param))
  if objective == 'autoencoder':  # After the model: its builder checks the downsampling first.
    _check_autoencoder(spec)
  return Experiment(config=config, spec=spec, graphdef=nnx.split(model)[0], process=process,
                    noise_fn=noise_fn, prediction=prediction, optimizer=optimizer,
                    learning_rate=schedule, image_shape=image_shape, objective=objective,
                    model_shape=model_shape, codec_source=codec_source,
                    codec_experiment=codec_exp)
