"""Train state, EMA and the jitted train step over any loss.

The model is split once into ``(graphdef, params)``; the train step is a pure function of a
:class:`TrainState` pytree and a batch, sharded over the mesh with the state donated. It knows
nothing of diffusion: it differentiates ``loss_fn(params, batch, key) -> (loss, metrics)``.
Randomness: ``fold_in(key, step)``, so a resumed run continues the same stream.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from phipd_jax import sharding as sharding_lib, specs

Array = jax.Array
LossFn = Callable[[Any, dict, Array], tuple[Array, dict]]


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds (saved as the items params, ema_params, opt_state, meta).

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


RNG_IMPLS = ('threefry2x32', 'rbg', 'unsafe_rbg')


def build_optimizer(optim: specs.OptimSpec,
                    num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warmup then cosine (or constant) decay, after global-norm clipping.

  Args:
    optim: the run's optimizer spec (its fields validated); num_steps: ``train.num_steps``.

  Returns:
    ``(optimizer, learning-rate schedule)``; the schedule maps the step to the learning rate.

  Raises:
    ValueError: ``optim.warmup_steps >= num_steps``.
  """
  if not optim.warmup_steps < num_steps:
    specs.fail('optim.warmup_steps', optim.warmup_steps,
               f'must be in [0, train.num_steps={num_steps})')
  rate, warmup = optim.learning_rate, optim.warmup_steps
  if optim.schedule == 'cosine':
    schedule = optax.warmup_cosine_decay_schedule(0.0, rate, warmup, max(num_steps, 1),
                                                  end_value=rate * optim.final_lr_fraction)
  else:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, rate, warmup),
                                     optax.constant_schedule(rate)], [warmup])
  optimizer = optax.chain(
      optax.clip_by_global_norm(optim.grad_clip),
      optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay))
  return optimizer, schedule


def check_rng_impl(rng_impl: str) -> None:
  """Raises ``ValueError`` unless ``rng_impl`` is in :data:`RNG_IMPLS`."""
  if rng_impl not in RNG_IMPLS:
    raise ValueError(f'rng_impl={rng_impl!r} must be one of {list(RNG_IMPLS)}')


def _init_fn(init_params: Callable[[Array], Any], optimizer: optax.GradientTransformation,
             rng_impl: str = 'threefry2x32'):

  def init(seed_key):
    model_key, run_key = jax.random.split(seed_key)
    if rng_impl != 'threefry2x32':  # The run's stream (noise, times, dropout) in another PRNG.
      run_key = jax.random.key(jax.random.bits(run_key, dtype=jnp.uint32), impl=rng_impl)
    params = init_params(model_key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), ema_params=params,
                      rng=jax.random.key_data(run_key))

  return init


def state_shardings(init_params, optimizer, mesh, seed: int, fsdp_min_size: int = 2**14,
                    rng_impl: str = 'threefry2x32'):
  """``(abstract state, shardings)`` of the train state on ``mesh`` (no arrays allocated)."""
  abstract = jax.eval_shape(_init_fn(init_params, optimizer, rng_impl), jax.random.key(seed))
  return abstract, sharding_lib.state_shardings(abstract, mesh, fsdp_min_size)


def create_train_state(init_params: Callable[[Array], Any], optimizer: optax.GradientTransformation,
                       mesh, seed: int, fsdp_min_size: int = 2**14,
                       rng_impl: str = 'threefry2x32') -> TrainState:
  """A state at step 0 whose arrays are born sharded on ``mesh``.

  Initialisation runs inside ``jax.jit`` with ``out_shardings`` from
  :func:`phipd_jax.sharding.state_shardings` (large arrays split over ``fsdp``, the rest
  replicated), so no device ever holds an unsharded copy of a sharded array.

  Args:
    init_params: ``key -> params`` (fresh model parameters).
    optimizer: the optax transformation (its state is initialised from the params).
    mesh: the device mesh.
    seed: the run's seed; ``key(seed)`` splits into the model key and the run key.
    fsdp_min_size: arrays with fewer elements stay replicated.
    rng_impl: PRNG of the run key (:data:`RNG_IMPLS`): ``'threefry2x32'`` (JAX's default),
      ``'rbg'`` or ``'unsafe_rbg'`` (XLA's RngBitGenerator, what large TPU runs use; faster
      draws). The model is initialised from the same threefry key either way.
  """
  _, shardings = state_shardings(init_params, optimizer, mesh, seed, fsdp_min_size, rng_impl)
  return jax.jit(_init_fn(init_params, optimizer, rng_impl),
                 out_shardings=shardings)(jax.random.key(seed))


def abstract_train_state(init_params, optimizer, mesh, seed: int,
                         fsdp_min_size: int = 2**14,
                         rng_impl: str = 'threefry2x32') -> TrainState:
  """The state's ``jax.ShapeDtypeStruct`` leaves with their shardings: a restore target."""
  abstract, shardings = state_shardings(init_params, optimizer, mesh, seed, fsdp_min_size,
                                        rng_impl)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
                      shardings)


def ema_decay_at(step: Array, decay: float) -> Array:
  """EMA decay with warmup ``min(decay, (1 + step) / (10 + step))`` (tracks early params)."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, shardings,
                    batch_sharding, *, ema_decay: float,
                    learning_rate: Optional[optax.Schedule] = None,
                    constants: Any = None, constant_shardings: Any = None,
                    rng_impl: str = 'threefry2x32') -> Callable:
  """The jitted, sharded, state-donating ``train_step(state, batch) -> (state, metrics)``.

  Args:
    loss_fn: ``(params, batch, key) -> (loss, metrics)``, or
      ``(params, batch, key, constants)`` when ``constants`` is given; ``key`` is
      ``fold_in(run key, step)``. Its metrics (scalars) are returned with the step's.
    optimizer: the optax transformation.
    shardings: the state's shardings (a :class:`TrainState` of ``Sharding``).
    batch_sharding: the batch's sharding.
    ema_decay: EMA decay (with :func:`ema_decay_at`'s warmup).
    learning_rate: the schedule, logged as ``learning_rate`` (the rate this step used).
    constants: optional pytree of frozen arrays the loss reads (e.g. LPIPS weights), placed
      replicated on the mesh once and passed to the jitted step as an argument, so they are
      device buffers rather than constants compiled into the program; never differentiated.
    constant_shardings: a pytree of ``NamedSharding`` like ``constants`` (e.g. a frozen LoRA
      base split over ``fsdp`` like the parameters it stands for); None replicates them.
    rng_impl: the PRNG of ``state.rng`` (see :func:`create_train_state`).

  Returns:
    The step; ``metrics`` holds ``loss``, ``grad_norm``, ``learning_rate`` and the loss's own.
  """

  def train_step(state: TrainState, batch, constants=None):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng, impl=rng_impl), state.step)
    extra = () if constants is None else (jax.lax.stop_gradient(constants),)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key,
                                                                   *extra)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay_at(state.step, ema_decay)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), **aux}
    if learning_rate is not None:
      metrics['learning_rate'] = learning_rate(state.step)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params)
    return new_state, metrics

  replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
  if constants is None:
    return jax.jit(train_step, in_shardings=(shardings, batch_sharding),
                   out_shardings=(shardings, replicated), donate_argnums=0)
  if constant_shardings is None:
    constant_shardings = jax.tree.map(lambda _: replicated, constants)
  constants = jax.device_put(constants, constant_shardings)
  step = jax.jit(train_step, in_shardings=(shardings, batch_sharding, constant_shardings),
                 out_shardings=(shardings, replicated), donate_argnums=0)
  bound = lambda state, batch: step(state, batch, constants)
  bound.jitted, bound.constants = step, constants  # For benchmarks: constants as arguments.
  return bound
