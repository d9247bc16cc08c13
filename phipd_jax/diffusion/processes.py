"""Forward processes on one interface: ``x_t = alpha(t) x0 + sigma(t) eps``.

Three processes share the :class:`Process` interface (noisy / target / to_x0_eps are written
once, in :class:`Process`, on ``alpha(t)`` and ``sigma(t)``):

* :class:`FlowMatching` (rectified flow; Lipman et al. 2023, phi-PD paper Eq. 12): continuous
  ``t`` in ``[0, 1]``, **t = 0 data, t = 1 noise**, ``alpha = 1 - t``, ``sigma = t``, velocity
  ``v = eps - x0``.
* :class:`DDPM` (Ho et al. 2020; phi-PD Eq. 18): integer steps ``k`` in ``[0, K)``,
  ``alpha = sqrt(alpha_bar[k])``, ``sigma = sqrt(1 - alpha_bar[k])``. The step ``k = -1`` is the
  clean data (``alpha_bar = 1``): it closes every sampling grid, so the last DDIM update lands on
  ``x0_hat`` exactly as Song et al. (2021) Eq. 12 with ``alpha_bar_prev = 1``.
* :class:`EDM` (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
  Models", arXiv:2206.00364): the time *is* sigma, ``alpha = 1``, ``x = x0 + sigma n``; noise
  grows with sigma; Karras preconditioning ``c_in``, ``c_skip``, ``c_out`` (Table 1) and the
  grid of Eq. 5 (``rho = 7``, N + 1 points, no trailing zero, as in the OVG code of Bourriez et
  al., "Spectral Collapse in Diffusion Inversion", arXiv:2602.13303, Sec. 2).

Every process also gives:

* ``model_input(x_t, t) -> (x_in, t_in)``: what the network sees (EDM: ``c_in x_t`` and
  ``ln(sigma) / 4`` or raw sigma; flow: ``x_t, t``; DDPM: ``x_k, k / K``);
* ``to_x0_eps(output, x_t, t, prediction)``: the denoised estimate and the implied noise;
* ``loss_weight(t, prediction)``: the per-sample weight of the squared error in prediction space;
* ``sample_time(key, batch)``: training times;
* ``time_grid(num_steps, start)``: a decreasing sampling grid from ``start`` to the data end
  (its reverse is the inversion grid);
* ``time_from_strength(strength)``: a translation strength in ``(0, 1]`` as a time;
* ``normalized_time(t)``: ``t`` mapped to ``[0, 1]`` (0 = data end), used by guidance intervals.

Prediction types: ``'v'`` (flow: ``eps - x0``; DDPM: ``alpha eps - sigma x0``, Salimans & Ho
2022), ``'x'`` (``x0``), ``'eps'``, and ``'edm'`` (EDM only: the raw network output ``F`` of
``D = c_skip x + c_out F``). The noise ``eps`` may be Gaussian or structured (phi-PD Sec. 3.3):
nothing here depends on which.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

PREDICTIONS = ('v', 'x', 'eps', 'edm')
TIME_SAMPLERS = ('uniform', 'logit_normal')
SCHEDULES = ('cosine', 'linear', 'scaled_linear')
SPACINGS = ('linspace', 'trailing', 'leading')
CONDITIONINGS = ('log_sigma', 'sigma')


def expand(t: Array, x: Array) -> Array:
  """``[B]`` or scalar -> broadcastable against ``x`` ``[B, ...]`` (float32)."""
  t = jnp.asarray(t, jnp.float32)
  return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim))


class Process:
  """Shared implementation over ``alpha(t)`` / ``sigma(t)``; subclasses set the schedule.

  Subclass contract: ``alpha``, ``sigma``, ``sample_time``, ``time_grid``, ``time_from_strength``,
  ``normalized_time``, ``predictions`` (allowed prediction types), ``samplers`` (allowed
  integrators) and optionally ``model_input``/``alpha_derivative``/``sigma_derivative``.
  """

  predictions: tuple[str, ...] = ('v', 'x', 'eps')
  samplers: tuple[str, ...] = ('euler', 'heun')
  min_alpha: float = 0.0  # Floors of the divisions in to_x0_eps (0 = none).
  min_sigma: float = 0.0
  # Heun's last interval is Euler when the grid ends at sigma = 0 (never evaluate there).
  heun_final_euler: bool = False
  velocity_loss: bool = False
  # True when ``t`` itself is the flow-matching noise level in [0, 1] (t = 0 data, 1 noise):
  # what Latent Wavelet Diffusion's mask compares against ``A + ell`` (diffusion/lwd.py).
  flow_noise_level_time: bool = False
  # Orthogonal Variance Guidance branch of this process (guidance.ovg_step), None = no OVG.
  ovg_branch: Optional[str] = None

  def check_prediction(self, prediction: str):
    if prediction not in self.predictions:
      raise ValueError(f'{type(self).__name__}: prediction={prediction!r} must be one of '
                       f'{self.predictions}')

  def check_sampler(self, method: str):
    if method not in self.samplers:
      raise ValueError(f'{type(self).__name__}: sampler={method!r} must be one of '
                       f'{self.samplers}')

  # -- written once -------------------------------------------------------------------------
  def noisy(self, x0: Array, eps: Array, t: Array) -> Array:
    """``x_t = alpha(t) x0 + sigma(t) eps``; ``t`` scalar or ``[B]``; dtype of ``x0``."""
    alpha, sigma = expand(self.alpha(t), x0), expand(self.sigma(t), x0)
    return (alpha * x0 + sigma * eps).astype(x0.dtype)

  def target(self, x0: Array, eps: Array, t: Array, prediction: str) -> Array:
    """Regression target of ``prediction`` at ``(x0, eps, t)``; shape of ``x0``."""
    self.check_prediction(prediction)
    if prediction == 'x':
      return x0
    if prediction == 'eps':
      return eps
    if prediction == 'v':
      return self._velocity(x0, eps, t)
    # 'edm': F such that c_skip x_t + c_out F = x0.
    x_t = self.noisy(x0, eps, t)
    c_skip, c_out = expand(self.c_skip(t), x0), expand(self.c_out(t), x0)
    return (x0 - c_skip * x_t) / c_out

  def to_x0_eps(self, value: Array, x_t: Array, t: Array, prediction: str) -> tuple[Array, Array]:
    """``(x0_hat, eps_hat)`` from a network output of type ``prediction`` at ``(x_t, t)``.

    Exact inverses of :meth:`target` wherever ``alpha >= min_alpha`` and ``sigma >= min_sigma``
    (the floors keep the ends finite: flow's ``t_clamp``).
    """
    self.check_prediction(prediction)
    alpha, sigma = expand(self.alpha(t), x_t), expand(self.sigma(t), x_t)
    if prediction == 'x':
      return value, self._eps_from_x0(value, x_t, t, alpha, sigma)
    if prediction == 'eps':
      return (x_t - sigma * value) / jnp.maximum(alpha, self.min_alpha), value
    if prediction == 'v':
      return self._from_velocity(value, x_t, t)
    c_skip, c_out = expand(self.c_skip(t), x_t), expand(self.c_out(t), x_t)
    x0 = c_skip * x_t + c_out * value
    return x0, (x_t - x0) / jnp.maximum(sigma, self.min_sigma)

  def _eps_from_x0(self, x0, x_t, t, alpha, sigma):
    del t
    return (x_t - alpha * x0) / jnp.maximum(sigma, self.min_sigma)

  def loss_weight(self, t: Array, prediction: str) -> Array:
    """Per-sample weight ``[B]`` of the squared error in prediction space (1: plain MSE)."""
    del prediction
    return jnp.ones_like(jnp.asarray(t, jnp.float32))

  def model_input(self, x_t: Array, t: Array) -> tuple[Array, Array]:
    """``(network input, network time [B] float32)``; default ``(x_t, normalized_time(t))``."""
    return x_t, jnp.asarray(self.normalized_time(t), jnp.float32)

  def step(self, x: Array, x0_hat: Array, eps_hat: Array, t: Array, t_next: Array) -> Array:
    """The first-order step from ``t`` to ``t_next`` (either direction).

    Continuous processes: the Euler step of the probability-flow ODE,
    ``x + (t_next - t) (alpha'(t) x0_hat + sigma'(t) eps_hat)``; this equals
    ``noisy(x0_hat, eps_hat, t_next)`` whenever ``x = noisy(x0_hat, eps_hat, t)``, i.e. outside
    the conversion floors (flow: ``t >= t_clamp``; below it the drift form keeps JiT's
    clamped-velocity sampler exactly). DDPM overrides it with DDIM.
    """
    return x + (t_next - t) * self.derivative(x0_hat, eps_hat, t)

  def derivative(self, x0: Array, eps: Array, t: Array) -> Array:
    """``d x_t / dt = alpha'(t) x0 + sigma'(t) eps`` (the probability-flow ODE's drift)."""
    return (expand(self.alpha_derivative(t), x0) * x0
            + expand(self.sigma_derivative(t), x0) * eps)


@dataclasses.dataclass(frozen=True)
class FlowMatching(Process):
  """Rectified-flow / flow-matching process, t = 0 data, t = 1 noise.

  Attributes:
    time_sampler: ``'uniform'`` on ``[0, 1]`` or ``'logit_normal'``: ``t = sigmoid(n)``,
      ``n ~ N(logit_mean, logit_std^2)`` (Esser et al. 2024, SD3). Positive ``logit_mean``
      favours the noise end in this convention.
    logit_mean: mean of the logit-normal.
    logit_std: std of the logit-normal (> 0).
    t_clamp: smallest ``t`` (resp. ``1 - t``) divided by when converting x- (resp. eps-)
      predictions, avoiding division by zero at the ends. JiT uses 0.05 (its
      ``max(1 - t_data, 0.05)``), which also applies during sampling.
  """

  time_sampler: str = 'logit_normal'
  logit_mean: float = 0.0
  logit_std: float = 1.0
  t_clamp: float = 1e-3

  predictions = ('v', 'x', 'eps')
  samplers = ('euler', 'heun')
  heun_final_euler = True
  velocity_loss = True  # loss_space='v' regresses eps_hat - x0_hat, this process's velocity.
  flow_noise_level_time = True  # t = sigma in [0, 1]: the LWD mask's units.

  def __post_init__(self):
    if self.time_sampler not in TIME_SAMPLERS:
      raise ValueError(f'FlowMatching: time_sampler={self.time_sampler!r} not in {TIME_SAMPLERS}')
    if not self.logit_std > 0:
      raise ValueError(f'FlowMatching: logit_std={self.logit_std} must be > 0')
    if not 0 < self.t_clamp < 0.5:
      raise ValueError(f'FlowMatching: t_clamp={self.t_clamp} must be in (0, 0.5)')

  @property
  def min_alpha(self):
    return self.t_clamp

  @property
  def min_sigma(self):
    return self.t_clamp

  def alpha(self, t):
    return 1.0 - jnp.asarray(t, jnp.float32)

  def sigma(self, t):
    return jnp.asarray(t, jnp.float32)

  def alpha_derivative(self, t):
    return -jnp.ones_like(jnp.asarray(t, jnp.float32))

  def sigma_derivative(self, t):
    return jnp.ones_like(jnp.asarray(t, jnp.float32))

  def _velocity(self, x0, eps, t):
    del t
    return eps - x0

  def _from_velocity(self, value, x_t, t):
    t = expand(t, x_t)  # x_t = x0 + t v.
    return x_t - t * value, x_t + (1.0 - t) * value

  def _eps_from_x0(self, x0, x_t, t, alpha, sigma):
    # eps - x0 = (x_t - x0) / max(t, clamp): the JiT velocity, equal to the exact
    # (x_t - (1 - t) x0) / t wherever t >= t_clamp.
    del alpha, sigma
    return x0 + (x_t - x0) / jnp.maximum(expand(t, x_t), self.t_clamp)

  def sample_time(self, key: Array, batch: int) -> Array:
    """Training times, float32 ``[batch]`` in ``[0, 1]``."""
    if self.time_sampler == 'uniform':
      return jax.random.uniform(key, (batch,), jnp.float32)
    normal = jax.random.normal(key, (batch,), jnp.float32)
    return jax.nn.sigmoid(self.logit_mean + self.logit_std * normal)

  def normalized_time(self, t):
    return jnp.asarray(t, jnp.float32)

  def time_from_strength(self, strength):
    """``t = strength``."""
    return jnp.asarray(strength, jnp.float32)

  def time_grid(self, num_steps: int, start=None) -> Array:
    """``num_steps + 1`` uniform points from ``start`` (default 1) down to 0 (data), float32."""
    _check_steps(num_steps)
    start = 1.0 if start is None else start
    return jnp.linspace(jnp.asarray(start, jnp.float32), 0.0, num_steps + 1)

  @property
  def data_time(self) -> float:
    return 0.0


def alpha_bar_schedule(schedule: str, num_steps: int, beta_start: float = 1e-4,
                       beta_end: float = 0.02, cosine_offset: float = 0.008) -> Array:
  """Cumulative signal level ``alpha_bar[k]``, ``k = 0 .. K-1`` (k = 0 is the least noisy).

  ``'linear'``: betas linear in ``[beta_start, beta_end]`` (Ho et al. 2020, Sec. 4).
  ``'scaled_linear'``: betas linear in sqrt, ``(linspace(sqrt(b0), sqrt(b1)))^2`` (Stable
  Diffusion; the OVG DDIM models use 0.00085-0.012).
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
  elif schedule == 'scaled_linear':
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=np.float64) ** 2
  else:
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((steps + cosine_offset) / (1 + cosine_offset) * math.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
  return jnp.asarray(np.cumprod(1.0 - betas), jnp.float32)  # float64 on the host, then cast.


@dataclasses.dataclass(frozen=True)
class DDPM(Process):
  """Discrete-time DDPM with integer steps ``k in [0, K)``; ``k = -1`` is the clean data.

  Attributes:
    schedule: ``'cosine'``, ``'linear'`` or ``'scaled_linear'`` (see :func:`alpha_bar_schedule`).
    num_steps: ``K``, the number of training steps (1000 in DDPM / SD1.5).
    beta_start, beta_end: linear schedule endpoints.
    spacing: sampling-grid spacing. ``'linspace'``: ``round(linspace(k_start, 0, N))``.
      ``'trailing'`` (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
      Flawed", Table 2): ``round(k_start + 1 - i (k_start + 1) / N) - 1``, which spaces the steps
      evenly from the start and leaves the data end to the final update.
      ``'leading'`` with offset 1 (diffusers' ``DDIMScheduler(timestep_spacing='leading',
      steps_offset=1)``, the released OVG code's DDIM grid): ``floor((N - 1 - i) (k_start + 1) /
      N) + 1``, ending at **k = 0** instead of the data end -1, so that the source of an
      inversion is taken as ``x`` at step 0 (``alpha_bar[0]``) as the released code takes it:
      ``0 -> 1 -> 21 -> ... -> 981`` for N = 50.

  On the cosine schedule ``alpha_bar[K-1] = 2.4e-9``: an eps error of 1% is amplified ~600x in
  the first ``x0_hat`` of DDIM. The remedy is a sampler setting, not a process one: clip
  ``x0_hat`` to the data range (:func:`phipd_jax.diffusion.guidance.clip_denoised`).
  """

  ovg_branch = 'ddim'

  schedule: str = 'cosine'
  num_steps: int = 1000
  beta_start: float = 1e-4
  beta_end: float = 0.02
  spacing: str = 'linspace'

  predictions = ('v', 'x', 'eps')
  samplers = ('ddim', 'ddpm')  # 'ddpm': ancestral (samplers.ddpm_ancestral).
  min_sigma = 1e-4

  def __post_init__(self):
    alpha_bar_schedule(self.schedule, self.num_steps)  # Validates.
    if self.spacing not in SPACINGS:
      raise ValueError(f'DDPM: spacing={self.spacing!r} must be one of {SPACINGS}')

  @property
  def alpha_bar(self) -> Array:
    """float32 ``[K]`` cumulative signal levels (see :func:`alpha_bar_schedule`)."""
    return alpha_bar_schedule(self.schedule, self.num_steps, self.beta_start, self.beta_end)

  def alpha_bar_at(self, k: Array) -> Array:
    """``alpha_bar[k]``, and 1 at ``k = -1`` (the data end of every grid)."""
    k = jnp.asarray(k, jnp.int32)
    return jnp.where(k < 0, 1.0, self.alpha_bar[jnp.clip(k, 0, self.num_steps - 1)])

  def alpha(self, k):
    return jnp.sqrt(self.alpha_bar_at(k))

  def sigma(self, k):
    return jnp.sqrt(1.0 - self.alpha_bar_at(k))

  def step(self, x, x0_hat, eps_hat, k, k_next):
    """DDIM (Song et al. 2021, Eq. 12, eta = 0): ``noisy(x0_hat, eps_hat, k_next)``."""
    del x, k
    return self.noisy(x0_hat, eps_hat, k_next)

  def _velocity(self, x0, eps, k):
    alpha, sigma = expand(self.alpha(k), x0), expand(self.sigma(k), x0)
    return alpha * eps - sigma * x0

  def _from_velocity(self, value, x_t, k):  # alpha^2 + sigma^2 = 1.
    alpha, sigma = expand(self.alpha(k), x_t), expand(self.sigma(k), x_t)
    return alpha * x_t - sigma * value, sigma * x_t + alpha * value

  def sample_time(self, key: Array, batch: int) -> Array:
    """Uniform integer steps, int32 ``[batch]`` in ``[0, K)``."""
    return jax.random.randint(key, (batch,), 0, self.num_steps)

  def normalized_time(self, k):
    """``max(k, 0) / K`` in ``[0, 1)``, float32 (the network's time input)."""
    return jnp.maximum(jnp.asarray(k, jnp.float32), 0.0) / self.num_steps

  def time_from_strength(self, strength):
    """Integer step ``round(strength (K - 1))`` (1 = the noisiest step)."""
    return jnp.round(jnp.asarray(strength, jnp.float32) * (self.num_steps - 1)).astype(jnp.int32)

  step_from_strength = time_from_strength

  def time_grid(self, num_steps: int, start=None) -> Array:
    """int32 ``[num_steps + 1]``: ``num_steps`` evaluation steps from ``start`` (default
    ``K - 1``) down, then ``-1`` (the data end; ``0`` for ``'leading'``, see ``spacing``)."""
    _check_steps(num_steps)
    start = self.num_steps - 1 if start is None else start
    start = jnp.asarray(start, jnp.float32)
    if self.spacing == 'linspace':
      steps = jnp.round(jnp.linspace(start, 0.0, num_steps))
    elif self.spacing == 'leading':
      steps = jnp.floor((num_steps - 1 - jnp.arange(num_steps)) * (start + 1) / num_steps) + 1
      return jnp.concatenate([steps.astype(jnp.int32), jnp.zeros((1,), jnp.int32)])
    else:
      steps = jnp.round(start + 1 - jnp.arange(num_steps) * (start + 1) / num_steps) - 1
    return jnp.concatenate([steps.astype(jnp.int32), jnp.full((1,), -1, jnp.int32)])

  @property
  def data_time(self) -> int:
    return -1


@dataclasses.dataclass(frozen=True)
class EDM(Process):
  """EDM (variance exploding, Karras et al. 2022): ``x = x0 + sigma n``, the time is sigma.

  Attributes:
    sigma_data: ``sigma_d`` of the preconditioning (0.5 for images in [-1, 1]).
    sigma_min, sigma_max: ends of the Karras grid (0.002, 80).
    rho: Karras grid exponent (7).
    p_mean, p_std: training ``ln(sigma) ~ N(p_mean, p_std^2)`` (-1.2, 1.2).
    conditioning: the network's noise input: ``'log_sigma'`` is EDM's ``c_noise = ln(sigma)/4``;
      ``'sigma'`` is raw sigma, as the OVG code trains and inverts (arXiv:2602.13303, code
      ``nicoboou/ovg``). A model must be sampled with the conditioning it was trained with.
  """

  ovg_branch = 'edm'

  sigma_data: float = 0.5
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  p_mean: float = -1.2
  p_std: float = 1.2
  conditioning: str = 'log_sigma'

  predictions = ('edm', 'x', 'eps')
  samplers = ('euler', 'heun')

  def __post_init__(self):
    if not self.sigma_data > 0:
      raise ValueError(f'EDM: sigma_data={self.sigma_data} must be > 0')
    if not 0 < self.sigma_min < self.sigma_max:
      raise ValueError(f'EDM: need 0 < sigma_min={self.sigma_min} < sigma_max={self.sigma_max}')
    if not self.rho > 0:
      raise ValueError(f'EDM: rho={self.rho} must be > 0')
    if not self.p_std > 0:
      raise ValueError(f'EDM: p_std={self.p_std} must be > 0')
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f'EDM: conditioning={self.conditioning!r} must be one of {CONDITIONINGS}')

  min_sigma = 1e-6

  def alpha(self, sigma):
    return jnp.ones_like(jnp.asarray(sigma, jnp.float32))

  def sigma(self, sigma):
    return jnp.asarray(sigma, jnp.float32)

  def alpha_derivative(self, sigma):
    return jnp.zeros_like(jnp.asarray(sigma, jnp.float32))

  def sigma_derivative(self, sigma):
    return jnp.ones_like(jnp.asarray(sigma, jnp.float32))

  # Karras et al. 2022, Table 1 (EDM column).
  def c_skip(self, sigma):
    sigma = jnp.asarray(sigma, jnp.float32)
    return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

  def c_out(self, sigma):
    sigma = jnp.asarray(sigma, jnp.float32)
    return sigma * self.sigma_data / jnp.sqrt(sigma**2 + self.sigma_data**2)

  def c_in(self, sigma):
    sigma = jnp.asarray(sigma, jnp.float32)
    return 1.0 / jnp.sqrt(sigma**2 + self.sigma_data**2)

  def c_noise(self, sigma):
    sigma = jnp.asarray(sigma, jnp.float32)
    return jnp.log(sigma) / 4.0 if self.conditioning == 'log_sigma' else sigma

  def edm_weight(self, sigma):
    """``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2`` (Karras Table 1)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

  def loss_weight(self, sigma, prediction):
    """Weight in prediction space such that the loss is ``lambda(sigma) |D - x0|^2``.

    ``'edm'``: ``lambda c_out^2 = 1`` (the reason for the preconditioning); ``'x'``:
    ``lambda``; ``'eps'``: ``lambda sigma^2`` (``D - x0 = -sigma (eps_hat - eps)``).
    """
    self.check_prediction(prediction)
    lam = self.edm_weight(sigma)
    if prediction == 'edm':
      return lam * self.c_out(sigma) ** 2
    if prediction == 'x':
      return lam
    return lam * jnp.asarray(sigma, jnp.float32) ** 2

  def model_input(self, x_t, sigma):
    return expand(self.c_in(sigma), x_t) * x_t, self.c_noise(sigma)

  def sample_time(self, key: Array, batch: int) -> Array:
    """``sigma = exp(p_mean + p_std n)``, float32 ``[batch]``."""
    return jnp.exp(self.p_mean + self.p_std * jax.random.normal(key, (batch,), jnp.float32))

  def _ramp(self, fraction):
    """Karras Eq. 5 at ``fraction`` in [0, 1]: sigma_min at 0, sigma_max at 1."""
    lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
    return (lo + jnp.asarray(fraction, jnp.float32) * (hi - lo)) ** self.rho

  def normalized_time(self, sigma):
    """Position on the Karras ramp, 0 at sigma_min, 1 at sigma_max (clipped to [0, 1])."""
    lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
    sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-12)
    return jnp.clip((sigma ** (1 / self.rho) - lo) / (hi - lo), 0.0, 1.0)

  def time_from_strength(self, strength):
    """sigma at ``strength`` along the Karras ramp (1 = sigma_max, 0 = sigma_min)."""
    return self._ramp(strength)

  def time_grid(self, num_steps: int, start=None) -> Array:
    """Karras grid (Eq. 5), float32 ``[num_steps + 1]`` from ``start`` (default sigma_max) down
    to sigma_min, no trailing zero. With ``start``, the same ramp from ``start``."""
    _check_steps(num_steps)
    hi = self.sigma_max if start is None else start
    hi = jnp.asarray(hi, jnp.float32) ** (1 / self.rho)
    lo = self.sigma_min ** (1 / self.rho)
    fractions = jnp.arange(num_steps + 1, dtype=jnp.float32) / num_steps
    return (hi + fractions * (lo - hi)) ** self.rho

  @property
  def data_time(self) -> float:
    return self.sigma_min

  def _velocity(self, x0, eps, t):
    raise ValueError("EDM: prediction='v' is not defined; use 'edm', 'x' or 'eps'")


def _check_steps(num_steps):
  if num_steps < 1:
    raise ValueError(f'time_grid: num_steps={num_steps} must be >= 1')


PROCESSES = {'flow': FlowMatching, 'ddpm': DDPM, 'edm': EDM}


def build(kind: str, settings: dict) -> Process:
  """``PROCESSES[kind](**settings)``: the process named ``kind`` with its section's settings.

  Raises:
    ValueError: an unknown kind, or settings the process does not take or rejects.
  """
  if kind not in PROCESSES:
    raise ValueError(f'process {kind!r} must be one of {sorted(PROCESSES)}')
  try:
    return PROCESSES[kind](**settings)
  except TypeError as error:
    raise ValueError(f'{kind}: {error}') from None
