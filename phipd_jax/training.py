"""Train state, optimizer, EMA and the jitted train step.

The model is split once into ``(graphdef, params)``; the train step is a pure function of a
:class:`TrainState` pytree and a batch, merged with the graphdef inside ``jax.jit`` and sharded
over the mesh with the state donated. Randomness: ``fold_in(key, step)`` split per purpose, so a
resumed run continues the same stream.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from phipd_jax import diffusion, models, noise as noise_lib, sharding as sharding_lib

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: int32 scalar, the number of optimizer steps taken.
    params: model parameters (``nnx.State`` of ``nnx.Param``).
    opt_state: optax state.
    ema_params: exponential moving average of ``params`` (used for sampling).
    rng: uint32 key data of the run's base key (``jax.random.key_data``).
  """

  step: Array
  params: Any
  opt_state: Any
  ema_params: Any
  rng: Array


def build_model(config, rngs: nnx.Rngs) -> nnx.Module:
  """The network of ``config.model`` (``'dit'`` or ``'jit'``) for images of ``config.data``.

  Raises:
    ValueError: the image size is not a multiple of the patch size, or an unknown model.
  """
  model_config = config.model
  if config.data.image_size % model_config.patch_size:
    raise ValueError(f'data.image_size={config.data.image_size} must be divisible by '
                     f'model.patch_size={model_config.patch_size}')
  dtype = jnp.dtype(model_config.dtype)
  if model_config.name == 'dit':
    return models.dit(model_config.size, in_channels=3, patch_size=model_config.patch_size,
                      num_classes=model_config.num_classes, dtype=dtype, rngs=rngs)
  if model_config.name == 'jit':
    return models.jit_model(model_config.size, in_channels=3, patch_size=model_config.patch_size,
                            num_classes=model_config.num_classes,
                            in_context_len=model_config.in_context_len,
                            spectral_forcing=spectral_forcing_from_config(model_config),
                            dtype=dtype, rngs=rngs)
  raise ValueError(f"model.name={model_config.name!r} must be 'dit' or 'jit'")


def spectral_forcing_from_config(model_config):
  """``models.SpectralForcing`` of ``model.spectral_forcing`` (None when its schedule is '')."""
  settings = model_config.spectral_forcing
  if not settings.schedule:
    return None
  return models.SpectralForcing(schedule=settings.schedule, kappa=settings.kappa,
                                c_min=settings.c_min, c_max=settings.c_max,
                                alpha=settings.alpha, window=settings.window or None)


def make_optimizer_schedule(optim_config, num_steps: int) -> optax.Schedule:
  """The learning-rate schedule of :func:`make_optimizer` (for logging)."""
  if optim_config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, optim_config.learning_rate, optim_config.warmup_steps, max(num_steps, 1),
        end_value=optim_config.learning_rate * optim_config.final_lr_fraction)
  if optim_config.schedule == 'constant':
    return optax.join_schedules([
        optax.linear_schedule(0.0, optim_config.learning_rate, optim_config.warmup_steps),
        optax.constant_schedule(optim_config.learning_rate)], [optim_config.warmup_steps])
  raise ValueError(f"optim.schedule={optim_config.schedule!r} must be 'cosine' or 'constant'")


def make_optimizer(optim_config, num_steps: int) -> optax.GradientTransformation:
  """AdamW with linear warmup then cosine (or constant) decay, after global-norm clipping."""
  schedule = make_optimizer_schedule(optim_config, num_steps)
  return optax.chain(
      optax.clip_by_global_norm(optim_config.grad_clip),
      optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                  weight_decay=optim_config.weight_decay))


def create_train_state(config, mesh):
  """Builds the model and a state whose arrays are born replicated on ``mesh``.

  Initialisation runs inside ``jax.jit`` with ``out_shardings`` from
  :func:`phipd_jax.sharding.state_shardings` (large arrays split over ``fsdp``, the rest
  replicated), so no device ever holds an unsharded copy of a sharded array.

  Returns:
    ``(graphdef, state, optimizer)``: the model's ``nnx.GraphDef``, a :class:`TrainState` at
    step 0 and the ``optax.GradientTransformation``.

  Raises:
    ValueError: an invalid model or optimizer config.
  """
  optimizer = make_optimizer(config.optim, config.train.num_steps)
  graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))
  del abstract_params

  def init(seed_key):
    model_key, run_key = jax.random.split(seed_key)
    params = nnx.state(build_model(config, nnx.Rngs(model_key)), nnx.Param)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), ema_params=params,
                      rng=jax.random.key_data(run_key))

  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  shardings = sharding_lib.state_shardings(abstract, mesh, config.mesh.fsdp_min_size)
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(config.seed))
  return graphdef, state, optimizer


def apply_model(graphdef: nnx.GraphDef, params) -> Callable:
  """``(x_t, t, y) -> prediction`` for parameters ``params`` (merged inside the trace)."""
  model = nnx.merge(graphdef, params)
  return lambda x_t, t, y: model(x_t, t, y)


def ema_decay_at(step: Array, decay: float) -> Array:
  """EMA decay with warmup ``min(decay, (1 + step) / (10 + step))`` (tracks early params)."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def make_train_step(config, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation,
                    mesh, state: TrainState) -> Callable:
  """The jitted, sharded, state-donating ``train_step(state, batch) -> (state, metrics)``.

  ``batch`` is ``{'image': float32 [B, H, W, 3] in [-1, 1], 'label': int32 [B]}`` sharded over
  the batch axis. ``metrics`` holds the scalars ``loss``, ``grad_norm`` and ``learning_rate``
  (the rate used by this step).
  """
  process = diffusion.process_from_config(config.diffusion)
  noise_config = config.noise
  noise_fn = noise_lib.training_noise_fn(
      noise_config.kind, r0=noise_config.r0, rate=noise_config.rate,
      edge_width=noise_config.edge_width, mode=noise_config.mode,
      magnitude=noise_config.magnitude, scale=noise_config.scale)
  prediction = config.diffusion.prediction
  loss_space = config.diffusion.loss_space
  num_classes = config.model.num_classes
  label_dropout = config.train.label_dropout
  ema_decay = config.optim.ema_decay
  learning_rate = make_optimizer_schedule(config.optim, config.train.num_steps)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  constrain = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)

  def train_step(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    label_key, loss_key = jax.random.split(key)
    labels = None
    if num_classes:
      drop = jax.random.uniform(label_key, batch['label'].shape) < label_dropout
      labels = jnp.where(drop, num_classes, batch['label'])

    def loss_fn(params):
      model = apply_model(graphdef, params)
      # Keep activations split over the batch (GSPMD may otherwise follow the fsdp weights).
      apply_fn = lambda x, t, y: constrain(model(constrain(x), t, y))
      return diffusion.diffusion_loss(process, apply_fn, constrain(batch['image']), loss_key,
                                      noise_fn, prediction, labels, loss_space)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay_at(state.step, ema_decay)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads),
               'learning_rate': learning_rate(state.step)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params)
    return new_state, metrics

  shardings = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(train_step, in_shardings=(shardings, batch_sharding),
                 out_shardings=(shardings, sharding_lib.replicated(mesh)), donate_argnums=0)


def validate_config(config, data_parallel_size: int = 1):
  """Checks a run config at start-up; raises ``ValueError`` naming the field, value and range."""

  def fail(field, value, allowed):
    raise ValueError(f'config.{field}={value!r} is invalid: {allowed}')

  if config.data.image_size <= 0 or config.data.image_size % config.model.patch_size:
    fail('data.image_size', config.data.image_size,
         f'must be a positive multiple of model.patch_size={config.model.patch_size}')
  if config.data.resize < config.data.image_size:
    fail('data.resize', config.data.resize, f'must be >= data.image_size={config.data.image_size}')
  if config.train.batch_size <= 0 or config.train.batch_size % data_parallel_size:
    fail('train.batch_size', config.train.batch_size,
         f'must be a positive multiple of the data-parallel size {data_parallel_size}')
  if config.train.num_steps <= 0:
    fail('train.num_steps', config.train.num_steps, 'must be > 0')
  if config.train.checkpoint_every <= 0 or config.train.log_every <= 0:
    fail('train.checkpoint_every/log_every', (config.train.checkpoint_every,
                                              config.train.log_every), 'must be > 0')
  if not 0 <= config.optim.warmup_steps < config.train.num_steps:
    fail('optim.warmup_steps', config.optim.warmup_steps,
         f'must be in [0, train.num_steps={config.train.num_steps})')
  if config.noise.kind not in noise_lib.NOISE_KINDS:
    fail('noise.kind', config.noise.kind, f'must be one of {noise_lib.NOISE_KINDS}')
  if config.noise.r0 < 0:
    fail('noise.r0', config.noise.r0, 'must be >= 0 (frequency-index units)')
  if config.noise.rate <= 0:
    fail('noise.rate', config.noise.rate, 'must be > 0')
  if config.noise.edge_width <= 0:
    fail('noise.edge_width', config.noise.edge_width, 'must be > 0')
  if config.noise.mode not in noise_lib.MODES:
    fail('noise.mode', config.noise.mode, f'must be one of {noise_lib.MODES}')
  if config.diffusion.prediction not in diffusion.PREDICTIONS:
    fail('diffusion.prediction', config.diffusion.prediction, f'one of {diffusion.PREDICTIONS}')
  samplers = {'flow': ('euler', 'heun'), 'ddpm': ('ddim',)}
  if config.diffusion.process not in samplers:
    fail('diffusion.process', config.diffusion.process, "must be 'flow' or 'ddpm'")
  if config.sample.sampler not in samplers[config.diffusion.process]:
    fail('sample.sampler', config.sample.sampler,
         f'must be one of {samplers[config.diffusion.process]} for {config.diffusion.process}')
  for strength in tuple(config.sample.sdedit_strengths) + (config.sample.phipd_strength,):
    if not 0 < strength <= 1:
      fail('sample.sdedit_strengths/phipd_strength', strength, 'must be in (0, 1]')
  if config.sample.num_steps <= 0:
    fail('sample.num_steps', config.sample.num_steps, 'must be > 0')
  if not 0 <= config.optim.ema_decay < 1:
    fail('optim.ema_decay', config.optim.ema_decay, 'must be in [0, 1)')
  sizes = {'dit': models.DIT_SIZES, 'jit': models.JIT_SIZES}
  if config.model.name not in sizes:
    fail('model.name', config.model.name, f'must be one of {sorted(sizes)}')
  if config.model.size not in sizes[config.model.name]:
    fail('model.size', config.model.size,
         f'must be one of {sorted(sizes[config.model.name])} for {config.model.name}')
  forcing = config.model.spectral_forcing
  if forcing.schedule:
    if config.model.name != 'jit':
      fail('model.spectral_forcing.schedule', forcing.schedule, "needs model.name='jit'")
    if forcing.window and config.data.image_size % forcing.window:
      fail('model.spectral_forcing.window', forcing.window,
           f'must divide data.image_size={config.data.image_size}')
    try:
      spectral_forcing_from_config(config.model)
    except ValueError as error:
      fail('model.spectral_forcing', dict(forcing), str(error))
  if config.diffusion.loss_space not in diffusion.LOSS_SPACES:
    fail('diffusion.loss_space', config.diffusion.loss_space, f'one of {diffusion.LOSS_SPACES}')
  if config.diffusion.loss_space == 'v' and config.diffusion.process != 'flow':
    fail('diffusion.loss_space', 'v', "needs diffusion.process='flow'")
  if not 0 < config.diffusion.t_clamp < 0.5:
    fail('diffusion.t_clamp', config.diffusion.t_clamp, 'must be in (0, 0.5)')
  if not config.noise.scale > 0:
    fail('noise.scale', config.noise.scale, 'must be > 0')
  interval = tuple(config.sample.guidance_interval)
  if interval and (len(interval) != 2 or not 0 <= interval[0] < interval[1] <= 1):
    fail('sample.guidance_interval', interval, '() or (low, high) with 0 <= low < high <= 1')
