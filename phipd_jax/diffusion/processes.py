"""Forward processes: flow matching and DDPM, with prediction-type conversions.

Conventions (DESIGN.md): flow matching uses continuous ``t`` in ``[0, 1]`` with **t = 0 data,
t = 1 noise**: ``x_t = (1 - t) x0 + t eps`` and velocity ``v = eps - x0`` (Lipman et al. 2023;
phi-PD paper Eq. 12). DDPM uses integer steps ``k`` in ``[0, K)`` with ``alpha_bar[k]``:
``x_k = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` (Ho et al. 2020; phi-PD Eq. 18).

The noise ``eps`` may be Gaussian or structured: nothing here depends on which (phi-PD Sec. 3.3:
no change to the network or the loss). Both processes expose the same small interface used by
the objective and the samplers:

* ``sample_time(key, batch)``: training times ``[B]``.
* ``noisy(x0, eps, t)``: ``x_t``.
* ``model_time(t)``: the float32 time the network sees, in ``[0, 1]``, 0 = data end.
* ``target(x0, eps, t, prediction)``: the regression target of a prediction type.
* ``to_x0_eps(prediction_value, x_t, t, prediction)``: ``(x0_hat, eps_hat)``.

Prediction types: ``'v'`` (flow: ``eps - x0``; DDPM: ``sqrt(ab) eps - sqrt(1 - ab) x0``,
Salimans & Ho 2022), ``'x'`` (``x0``), ``'eps'``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

PREDICTIONS = ('v', 'x', 'eps')
TIME_SAMPLERS = ('uniform', 'logit_normal')
SCHEDULES = ('cosine', 'linear')


def _check_prediction(prediction: str):
  if prediction not in PREDICTIONS:
    raise ValueError(f'diffusion: prediction={prediction!r} must be one of {PREDICTIONS}')


def _expand(t: Array, x: Array) -> Array:
  """``[B]`` or scalar -> broadcastable against ``x`` ``[B, ...]``."""
  t = jnp.asarray(t, jnp.float32)
  return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim))


@dataclasses.dataclass(frozen=True)
class FlowMatching:
  """Rectified-flow / flow-matching process, t = 0 data, t = 1 noise.

  Attributes:
    time_sampler: ``'uniform'`` on ``[0, 1]`` or ``'logit_normal'``: ``t = sigmoid(n)``,
      ``n ~ N(logit_mean, logit_std^2)`` (Esser et al. 2024, SD3). Positive ``logit_mean``
      favours the noise end in this convention.
    logit_mean: mean of the logit-normal.
    logit_std: std of the logit-normal (> 0).
    t_clamp: smallest ``t`` (resp. ``1 - t``) divided by when converting x- (resp. eps-)
      predictions to a velocity, avoiding division by zero at the ends. JiT uses 0.05 (its
      ``max(1 - t_data, 0.05)``, spec Sec. 2), which also applies during sampling.
  """

  time_sampler: str = 'logit_normal'
  logit_mean: float = 0.0
  logit_std: float = 1.0
  t_clamp: float = 1e-3

  def __post_init__(self):
    if self.time_sampler not in TIME_SAMPLERS:
      raise ValueError(f'FlowMatching: time_sampler={self.time_sampler!r} not in {TIME_SAMPLERS}')
    if not self.logit_std > 0:
      raise ValueError(f'FlowMatching: logit_std={self.logit_std} must be > 0')
    if not 0 < self.t_clamp < 0.5:
      raise ValueError(f'FlowMatching: t_clamp={self.t_clamp} must be in (0, 0.5)')

  def sample_time(self, key: Array, batch: int) -> Array:
    """Training times, float32 ``[batch]`` in ``[0, 1]``."""
    if self.time_sampler == 'uniform':
      return jax.random.uniform(key, (batch,), jnp.float32)
    normal = jax.random.normal(key, (batch,), jnp.float32)
    return jax.nn.sigmoid(self.logit_mean + self.logit_std * normal)

  def noisy(self, x0: Array, eps: Array, t: Array) -> Array:
    """``x_t = (1 - t) x0 + t eps``; ``t`` scalar or ``[B]``."""
    t = _expand(t, x0)
    return ((1.0 - t) * x0 + t * eps).astype(x0.dtype)

  def model_time(self, t: Array) -> Array:
    """The network's time input: ``t`` itself, float32 in ``[0, 1]``."""
    return jnp.asarray(t, jnp.float32)

  def target(self, x0: Array, eps: Array, t: Array, prediction: str) -> Array:
    """Regression target: ``eps - x0`` (v), ``x0`` (x) or ``eps``; shape of ``x0``."""
    _check_prediction(prediction)
    return {'v': eps - x0, 'x': x0, 'eps': eps}[prediction]

  def to_x0_eps(self, value: Array, x_t: Array, t: Array, prediction: str) -> tuple[Array, Array]:
    """``(x0_hat, eps_hat)`` from a network output of type ``prediction`` at ``(x_t, t)``."""
    _check_prediction(prediction)
    t = _expand(t, x_t)
    if prediction == 'v':  # x_t = x0 + t v.
      return x_t - t * value, x_t + (1.0 - t) * value
    if prediction == 'x':
      # eps - x0 = (x_t - x0) / max(t, clamp): the JiT velocity, equal to the exact
      # (x_t - (1 - t) x0) / t wherever t >= t_clamp.
      return value, value + (x_t - value) / jnp.maximum(t, self.t_clamp)
    return (x_t - t * value) / jnp.maximum(1.0 - t, self.t_clamp), value


def alpha_bar_schedule(schedule: str, num_steps: int, beta_start: float = 1e-4,
                       beta_end: float = 0.02, cosine_offset: float = 0.008) -> Array:
  """Cumulative signal level ``alpha_bar[k]``, ``k = 0 .. K-1`` (k = 0 is the least noisy).

  ``'linear'``: betas linear in ``[beta_start, beta_end]`` (Ho et al. 2020, Sec. 4).
  ``'cosine'``: ``f(k) = cos^2(((k + 1) / K + s) / (1 + s) * pi / 2)``, ``alpha_bar = f / f(-1)``
  with betas clipped at 0.999 (Nichol & Dhariwal 2021, Eq. 17).

  Returns:
    float32 ``[K]``, strictly decreasing in ``(0, 1)``.

  Raises:
    ValueError: unknown schedule or ``num_steps < 2``.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'DDPM: schedule={schedule!r} must be one of {SCHEDULES}')
  if num_steps < 2:
    raise ValueError(f'DDPM: num_steps={num_steps} must be >= 2')
  if schedule == 'linear':
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  else:
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((steps + cosine_offset) / (1 + cosine_offset) * math.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
  return jnp.asarray(np.cumprod(1.0 - betas), jnp.float32)  # float64 on the host, then cast.


@dataclasses.dataclass(frozen=True)
class DDPM:
  """Discrete-time DDPM with integer steps ``k in [0, K)``; ``k = K - 1`` is (almost) pure noise.

  Attributes:
    schedule: ``'cosine'`` or ``'linear'`` ``alpha_bar`` (see :func:`alpha_bar_schedule`).
    num_steps: ``K``, the number of training steps (1000 in DDPM / SD1.5).
    beta_start, beta_end: linear schedule endpoints.
  """

  schedule: str = 'cosine'
  num_steps: int = 1000
  beta_start: float = 1e-4
  beta_end: float = 0.02

  def __post_init__(self):
    alpha_bar_schedule(self.schedule, self.num_steps)  # Validates.

  @property
  def alpha_bar(self) -> Array:
    """float32 ``[K]`` cumulative signal levels (see :func:`alpha_bar_schedule`)."""
    return alpha_bar_schedule(self.schedule, self.num_steps, self.beta_start, self.beta_end)

  def _coefficients(self, k: Array, x: Array) -> tuple[Array, Array]:
    alpha_bar = self.alpha_bar[jnp.asarray(k, jnp.int32)]
    alpha_bar = _expand(alpha_bar, x)
    return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)

  def sample_time(self, key: Array, batch: int) -> Array:
    """Uniform integer steps, int32 ``[batch]`` in ``[0, K)``."""
    return jax.random.randint(key, (batch,), 0, self.num_steps)

  def noisy(self, x0: Array, eps: Array, k: Array) -> Array:
    """``x_k = sqrt(alpha_bar[k]) x0 + sqrt(1 - alpha_bar[k]) eps``; ``k`` scalar or ``[B]``."""
    signal, noise = self._coefficients(k, x0)
    return (signal * x0 + noise * eps).astype(x0.dtype)

  def model_time(self, k: Array) -> Array:
    """``k / K`` in ``[0, 1)``, float32."""
    return jnp.asarray(k, jnp.float32) / self.num_steps

  def target(self, x0: Array, eps: Array, k: Array, prediction: str) -> Array:
    """``eps``, ``x0`` or ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022, Eq. 8)."""
    _check_prediction(prediction)
    if prediction == 'v':
      signal, noise = self._coefficients(k, x0)
      return signal * eps - noise * x0
    return {'x': x0, 'eps': eps}[prediction]

  def to_x0_eps(self, value: Array, x_k: Array, k: Array, prediction: str) -> tuple[Array, Array]:
    """``(x0_hat, eps_hat)`` from a network output of type ``prediction`` at ``(x_k, k)``."""
    _check_prediction(prediction)
    signal, noise = self._coefficients(k, x_k)
    if prediction == 'v':  # signal^2 + noise^2 = 1.
      return signal * x_k - noise * value, noise * x_k + signal * value
    if prediction == 'x':
      return value, (x_k - signal * value) / jnp.maximum(noise, 1e-4)
    return (x_k - noise * value) / signal, value

  def step_from_strength(self, strength: Array) -> Array:
    """Integer step for a translation strength in ``[0, 1]`` (1 = the noisiest step)."""
    return jnp.round(jnp.asarray(strength, jnp.float32) * (self.num_steps - 1)).astype(jnp.int32)


Process = FlowMatching | DDPM


def process_from_config(config) -> Process:
  """Builds the process from ``config.diffusion`` (fields ``process`` and its parameters)."""
  kind = config.process
  if kind == 'flow':
    return FlowMatching(time_sampler=config.time_sampler, logit_mean=config.logit_mean,
                        logit_std=config.logit_std, t_clamp=config.get('t_clamp', 1e-3))
  if kind == 'ddpm':
    return DDPM(schedule=config.schedule, num_steps=config.num_train_steps)
  raise ValueError(f"diffusion.process={kind!r} must be 'flow' or 'ddpm'")
