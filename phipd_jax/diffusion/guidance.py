"""Wrappers of the sampler's seams: Denoiser -> Denoiser (classifier-free guidance, x0 clipping)
and Step -> Step (Orthogonal Variance Guidance for inversion).

A denoiser is ``denoise(x_t, t) -> (x0_hat, eps_hat)``; a conditional denoiser takes the labels
too, ``denoise(x_t, t, y)``. Both denoiser wrappers keep ``x_t = alpha x0_hat + sigma eps_hat``
whenever the wrapped denoiser does, so every integrator step stays consistent. A step is
``step(x, t, t_next) -> x_next``; :func:`ovg_step` adds OVG's gradient corrections to the
first-order inversion step (Bourriez et al., "Spectral Collapse in Diffusion Inversion",
arXiv:2602.13303).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax.diffusion import processes as processes_lib

Array = jax.Array


def guide(cond: Array, uncond: Array, scale: float | Array, channels: int = 0) -> Array:
  """Classifier-free guidance of one output: ``uncond + w (cond - uncond)``, ``[B, ..., C]``.

  ``channels > 0`` guides only the first ``channels`` channels and keeps the conditional
  output's others (DiT's ``forward_with_cfg`` guides 3 of its 4 latent channels,
  facebookresearch/DiT ``models.py``); 0 guides all. ``scale`` broadcasts against ``cond``.
  """
  guided = uncond + scale * (cond - uncond)
  if channels and channels < cond.shape[-1]:
    guided = jnp.concatenate([guided[..., :channels], cond[..., channels:]], -1)
  return guided


def classifier_free_guidance(denoise_y: Callable, y: Array, scale: float | Array,
                             null_label: Optional[int],
                             interval: Optional[tuple[float, float]] = None,
                             normalized_time: Optional[Callable] = None,
                             channels: int = 0) -> Callable:
  """Classifier-free guidance (Ho & Salimans 2022): ``out = out(null) + w (out(y) - out(null))``.

  Computed on ``(x0_hat, eps_hat)``, which are affine in the network output for fixed
  ``(x_t, t)``: identical to guiding the raw output, for every prediction type. One call of
  ``denoise_y`` on the doubled batch.

  Args:
    denoise_y: ``(x_t [B, ...], t, y [B]) -> (x0_hat, eps_hat)``.
    y: int32 labels ``[B]``.
    scale: ``w`` (traced; 1 = conditional only).
    null_label: the label meaning "no label" (the model's ``num_classes``).
    interval: ``(low, high)`` in ``normalized_time(t)`` (0 = data end): guidance only where
      ``low < t < high``, scale 1 elsewhere (Kynkaanniemi et al. 2024). None = everywhere.
    normalized_time: the process's ``normalized_time`` (needed with ``interval``).
    channels: guide only the first ``channels`` channels, the rest from the conditional pass
      (0 = all; :func:`guide`); converted DiT runs set 3 to sample as DiT does.

  Raises:
    ValueError: no ``null_label``, or an interval without ``normalized_time``.
  """
  if null_label is None:
    raise ValueError('classifier-free guidance needs null_label (the model\'s num_classes)')
  if interval is not None and normalized_time is None:
    raise ValueError('classifier-free guidance: an interval needs normalized_time')

  def denoise(x_t: Array, t: Array) -> tuple[Array, Array]:
    batch = x_t.shape[0]
    labels = jnp.concatenate([y, jnp.full_like(y, null_label)])
    t_both = jnp.broadcast_to(jnp.asarray(t), (batch,)) if jnp.ndim(t) else t
    t_both = jnp.concatenate([t_both, t_both]) if jnp.ndim(t_both) else t_both
    x0_both, eps_both = denoise_y(jnp.concatenate([x_t, x_t]), t_both, labels)
    w = jnp.asarray(scale, jnp.float32)
    if interval is not None:
      low, high = interval
      u = jnp.broadcast_to(normalized_time(t), (batch,))
      w = jnp.where((u > low) & (u < high), w, 1.0).reshape((batch,) + (1,) * (x_t.ndim - 1))
    combine = lambda both: guide(both[:batch], both[batch:], w, channels)
    return combine(x0_both), combine(eps_both)

  return denoise


def clip_denoised(process, denoise: Callable, bound: float) -> Callable:
  """Clips ``x0_hat`` to ``[-bound, bound]`` and recomputes ``eps_hat`` from ``x_t``.

  The standard remedy for eps-prediction at the noisy end (Ho et al. 2020; Song et al. 2021):
  on the cosine DDPM schedule ``alpha_bar[K-1] = 2.4e-9``, so ``x0_hat = (x - sigma eps_hat) /
  alpha`` amplifies an eps error about 2e4x; clipping to the data range bounds it.
  ``bound <= 0`` returns ``denoise`` unchanged.
  """
  if not bound > 0:
    return denoise

  def clipped(x_t: Array, t: Array) -> tuple[Array, Array]:
    x0_hat, _ = denoise(x_t, t)
    x0_hat = jnp.clip(x0_hat, -bound, bound)
    return process.to_x0_eps(x0_hat, x_t, t, 'x')

  return clipped


# -- Orthogonal Variance Guidance (OVG): Step -> Step ------------------------------------------

Step = Callable[[Array, Array, Array], Array]
OVG_BRANCHES = ('edm', 'ddim')

OVG_PRESETS = {
    'edges2shoes': dict(eta_n=1e9, eta_c=7.08e-5, kappa=1.0, forward_fraction=0.02),
    'bbbc021': dict(eta_n=1e3, eta_c=1e-4, kappa=1.0, forward_fraction=0.04),
}
"""The Edges2Shoes and BBBC021 x16 test configurations released in ``nicoboou/ovg`` (its
``cgd_eta`` = ``eta_n``, ``scp_eta`` = ``eta_c``, ``clip_frac`` = ``kappa``; 50 steps, DDIM
scheduler with the scaled-linear schedule).

Each config runs OVG twice, without and with ``forward_fraction``; the preset holds the second. The
forward fraction exists only in the DDIM branch: for ``branch='edm'`` pass
``{**OVG_PRESETS[name], 'forward_fraction': 0.0}``. The released class's constructor defaults
differ (``eta_n = 1``, ``eta_c = 0.5``, and ``invert_step``'s ``clip_frac = 0.2``, which
``invert`` overrides with 1.0); these presets hold the config values, not those defaults.
"""


class OVGTerms(NamedTuple):
  """Everything one OVG step computes (see :func:`ovg_terms`); ``[B, ...]`` unless noted.

  Attributes:
    x_next: ``stop_gradient(x_euler + u_n + u_c)``, float32.
    x_euler: the plain first-order inversion step ``process.step(x, x0_hat, eps_hat, t, t_next)``.
    x0_hat, eps_hat: the denoiser's outputs at ``(x, t)``.
    g_n: ``grad_x L_n``, the variance (Gaussian-norm) gradient.
    g_c: ``grad_x L_c``, the structure gradient.
    u_n, u_c: the final corrections (projected, scaled by ``delta``, clipped).
    cos: float32 ``[B]``, the per-sample cosine of ``g_n`` and ``g_c`` (conflict: ``cos < 0``).
    drift_norm: float32 ``[B]``, ``R = ||x_euler - x||`` per sample.
    delta: float32 scalar or ``[B]``, the step's scale ``Delta``.
  """

  x_next: Array
  x_euler: Array
  x0_hat: Array
  eps_hat: Array
  g_n: Array
  g_c: Array
  u_n: Array
  u_c: Array
  cos: Array
  drift_norm: Array
  delta: Array


def _sample_sum(v: Array) -> Array:
  """Per-sample sum over all non-batch axes, kept as ``[B, 1, ..., 1]``."""
  return jnp.sum(v, axis=tuple(range(1, v.ndim)), keepdims=True)


def _is_concrete(value) -> bool:
  return not isinstance(value, jax.core.Tracer)


def check_ovg_args(process, branch: str, eta_n, eta_c, kappa) -> None:
  """Validates the OVG arguments that are concrete (traced ones are not checked).

  Raises:
    ValueError: ``branch`` not in ``('edm', 'ddim')``; ``'edm'`` without an EDM process or
      ``'ddim'`` without a DDPM process; ``eta_n < 0``, ``eta_c < 0`` or ``kappa <= 0``.
  """
  if branch not in OVG_BRANCHES:
    raise ValueError(f'OVG: branch={branch!r} must be one of {OVG_BRANCHES}')
  wanted = processes_lib.EDM if branch == 'edm' else processes_lib.DDPM
  if not isinstance(process, wanted):
    raise ValueError(f'OVG: branch={branch!r} needs a {wanted.__name__} process, got '
                     f'{type(process).__name__}')
  for name, value in (('eta_n', eta_n), ('eta_c', eta_c)):
    if _is_concrete(value) and not float(np.asarray(value)) >= 0:
      raise ValueError(f'OVG: {name}={value} must be >= 0')
  if _is_concrete(kappa) and not float(np.asarray(kappa)) > 0:
    raise ValueError(f'OVG: kappa={kappa} must be > 0')


def ovg_corrections(g_n: Array, g_c: Array, eta_n: float | Array, eta_c: float | Array,
                    eps: float = 1e-6) -> tuple[Array, Array]:
  """OVG's two raw corrections with PCGrad-style mutual projection on conflict.

  Per sample (reductions over all non-batch axes): ``a = ||g_n||^2 + eps``,
  ``b = ||g_c||^2 + eps``, ``p = <g_n, g_c>``, ``cos = p / (sqrt(a) sqrt(b) + eps)``; if
  ``cos < 0``: ``u_n = -eta_n (g_n - (p / b) g_c)``, ``u_c = -eta_c (g_c - (p / a) g_n)``, else
  ``u_n = -eta_n g_n``, ``u_c = -eta_c g_c``. A term whose ``eta`` is 0 is exactly 0 (the released
  code skips it), so non-finite gradients cannot leak into a switched-off term. Source:
  "Spectral Collapse in Diffusion Inversion", arXiv:2602.13303, as released in ``nicoboou/ovg``
  (``ControlledGaussianizationInversion.invert_step``).

  Args:
    g_n: float ``[B, ...]``, the variance gradient.
    g_c: float ``[B, ...]``, the structure gradient (same shape).
    eta_n, eta_c: step sizes ``>= 0`` (scalars, may be traced).
    eps: the released code's ``epsilon``.

  Returns:
    ``(u_n, u_c)``, each the shape of ``g_n``, before the ``Delta`` scaling and the clip.
  """
  a = _sample_sum(g_n * g_n) + eps
  b = _sample_sum(g_c * g_c) + eps
  p = _sample_sum(g_n * g_c)
  conflict = p / (jnp.sqrt(a) * jnp.sqrt(b) + eps) < 0
  eta_n = jnp.asarray(eta_n, g_n.dtype)
  eta_c = jnp.asarray(eta_c, g_c.dtype)
  u_n = -eta_n * jnp.where(conflict, g_n - (p / b) * g_c, g_n)
  u_c = -eta_c * jnp.where(conflict, g_c - (p / a) * g_n, g_c)
  return jnp.where(eta_n > 0, u_n, 0.0), jnp.where(eta_c > 0, u_c, 0.0)


def _clip(u: Array, max_norm: Array, eps: float) -> Array:
  """``u min(1, max_norm / (||u|| + eps))`` per sample (``max_norm`` ``[B, 1, ..., 1]``)."""
  norm = jnp.sqrt(_sample_sum(u * u))
  return u * jnp.minimum(1.0, max_norm / (norm + eps))


def ovg_terms(process, denoise: Callable, x: Array, t: Array, t_next: Array, x_src: Array, *,
              eta_n: float | Array, eta_c: float | Array, kappa: float | Array = 1.0,
              branch: str = 'edm', eps: float = 1e-6) -> OVGTerms:
  """One OVG inversion step from ``t`` to ``t_next``, with every intermediate.

  Orthogonal Variance Guidance (Bourriez, Verine, Genovesio, "Spectral Collapse in Diffusion
  Inversion", arXiv:2602.13303; the update exactly as released in ``nicoboou/ovg``,
  ``ControlledGaussianizationInversion.invert_step``). With ``d = C H W`` and per-sample norms:

  * ``x_E = process.step(x, x0_hat, eps_hat, t, t_next)``, the plain inversion step (EDM Euler,
    DDIM), from the denoiser's own outputs, so ``eta_n = eta_c = 0`` is plain inversion;
  * ``L_n = (||eps_ovg||^2 - d)^2`` (implied noise pushed to the Gaussian norm ``sqrt(d)``) and
    ``L_c = ||x0_ovg - x_src||^2`` (stay able to reconstruct the source), ``g = grad_x L``
    through the denoiser;
  * ``(u_n, u_c) = ovg_corrections(g_n, g_c, eta_n, eta_c)``, each scaled by ``Delta`` and clipped
    separately to norm ``kappa (R + eps)``, ``R = ||x_E - x||`` (their sum can reach ``2 kappa R``);
  * ``x_next = stop_gradient(x_E + u_n + u_c)``.

  One denoiser forward per step: ``jax.vjp`` of ``x -> denoiser output`` and two pullbacks.

  * ``branch='edm'`` (an :class:`~phipd_jax.diffusion.processes.EDM` process, ``t`` is sigma):
    the vjp is of ``x -> D(x; sigma) = x0_hat``. ``x0_ovg = D`` and, as released,
    ``eps_ovg = (x - D) / (sigma + eps)`` (not the denoiser's ``eps_hat``, which divides by
    ``max(sigma, 1e-6)``). With ``k = 4 (||eps_ovg||^2 - d) eps_ovg / (sigma + eps)``:
    ``g_n = k + vjp(-k)`` (the direct path of ``x`` in ``eps_ovg``, plus the path through ``D``),
    ``g_c = vjp(2 (D - x_src))``. ``Delta = log(sigma_next / (sigma + eps))``.
  * ``branch='ddim'`` (a :class:`~phipd_jax.diffusion.processes.DDPM` process, integer ``t``):
    the network's noise is primary, as released: the vjp is of ``x -> eps_hat``, ``eps_ovg =
    eps_hat`` (``L_n`` has no direct path) and ``x0_ovg = (x - sigma eps_hat) / alpha``. Then
    ``g_n = vjp(4 (||eps_hat||^2 - d) eps_hat)`` and, with ``r = 2 (x0_ovg - x_src)``,
    ``g_c = r / alpha + vjp(-sigma r / alpha)`` (the direct ``1 / alpha`` path plus the path
    through ``eps_hat``). ``Delta = t_next - t`` in integer steps (the released ``dt``). Any
    consistent denoiser works: for x- or v-predicting networks ``eps_hat`` is the converted one,
    as the released ``_convert_model_output``.

  The denoiser is called on the whole batch; the gradients are per sample (and so is every
  norm) as long as the denoiser treats samples independently (no batch statistics). The
  released code always starts EDM inversion from ``x_src + sigma_min n`` and never applies OVG
  while sampling; see :func:`phipd_jax.diffusion.inversion.ovg_invert`.

  Args:
    process: an ``EDM`` (branch ``'edm'``) or ``DDPM`` (branch ``'ddim'``) process.
    denoise: ``(x_t, t) -> (x0_hat, eps_hat)`` with the *source* condition bound (a
      :data:`~phipd_jax.diffusion.samplers.Denoiser`); must be differentiable in ``x_t``.
    x: float32 ``[B, ...]``, the state at ``t``.
    t, t_next: scalar (or ``[B]``) times, ``t_next`` noisier (sigma for EDM, steps for DDPM).
    x_src: the clean source, model space, shape of ``x``.
    eta_n: variance step size ``>= 0`` (the released ``cgd_eta``; may be traced).
    eta_c: structure step size ``>= 0`` (the released ``scp_eta``; may be traced).
    kappa: clip fraction ``> 0`` of the drift norm (the released ``clip_frac``; 1.0 as released).
    branch: ``'edm'`` or ``'ddim'``.
    eps: the released ``epsilon`` (``1e-6``).

  Returns:
    :class:`OVGTerms`.

  Raises:
    ValueError: see :func:`check_ovg_args`.
  """
  check_ovg_args(process, branch, eta_n, eta_c, kappa)
  x = x.astype(jnp.float32)
  x_src = x_src.astype(jnp.float32)
  d = math.prod(x.shape[1:])
  expand = processes_lib.expand
  sigma = expand(process.sigma(t), x)
  if branch == 'edm':
    x0_hat, pullback, eps_hat = jax.vjp(lambda z: denoise(z, t), x, has_aux=True)
    eps_ovg = (x - x0_hat) / (sigma + eps)
    k = 4.0 * (_sample_sum(eps_ovg * eps_ovg) - d) * eps_ovg / (sigma + eps)
    g_n = k + pullback(-k)[0]
    g_c = pullback(2.0 * (x0_hat - x_src))[0]
    delta = jnp.log(process.sigma(t_next) / (process.sigma(t) + eps))
  else:
    def eps_first(z):  # The network's noise is the differentiated output; x0_hat rides along.
      x0, eps_z = denoise(z, t)
      return eps_z, x0

    eps_hat, pullback, x0_hat = jax.vjp(eps_first, x, has_aux=True)
    alpha = expand(process.alpha(t), x)
    g_n = pullback(4.0 * (_sample_sum(eps_hat * eps_hat) - d) * eps_hat)[0]
    r = 2.0 * ((x - sigma * eps_hat) / alpha - x_src)
    g_c = r / alpha + pullback(-sigma * r / alpha)[0]
    delta = (jnp.asarray(t_next, jnp.int32) - jnp.asarray(t, jnp.int32)).astype(jnp.float32)
  x_euler = process.step(x, x0_hat, eps_hat, t, t_next).astype(jnp.float32)
  u_n, u_c = ovg_corrections(g_n, g_c, eta_n, eta_c, eps)
  delta_b = expand(delta, x)
  drift_norm = jnp.sqrt(_sample_sum((x_euler - x) ** 2))
  max_norm = jnp.asarray(kappa, jnp.float32) * (drift_norm + eps)
  u_n = _clip(u_n * delta_b, max_norm, eps)
  u_c = _clip(u_c * delta_b, max_norm, eps)
  a = _sample_sum(g_n * g_n) + eps
  b = _sample_sum(g_c * g_c) + eps
  cos = _sample_sum(g_n * g_c) / (jnp.sqrt(a) * jnp.sqrt(b) + eps)
  x_next = jax.lax.stop_gradient(x_euler + u_n + u_c)
  flat = lambda v: jnp.reshape(v, (v.shape[0],))
  return OVGTerms(x_next=x_next, x_euler=x_euler, x0_hat=x0_hat, eps_hat=eps_hat, g_n=g_n,
                  g_c=g_c, u_n=u_n, u_c=u_c, cos=flat(cos), drift_norm=flat(drift_norm),
                  delta=delta)


def ovg_step(process, denoise: Callable, x_src: Array, *, eta_n: float | Array,
             eta_c: float | Array, kappa: float | Array = 1.0, branch: str = 'edm',
             eps: float = 1e-6) -> Step:
  """Orthogonal Variance Guidance as a :data:`~phipd_jax.diffusion.samplers.Step`.

  The first-order inversion step (``euler_step``: ``process.step`` on the denoiser's outputs)
  plus OVG's two clipped corrections; ``step(x, t, t_next) = ovg_terms(...).x_next`` (see
  :func:`ovg_terms` for the update, the branches and the source: arXiv:2602.13303 as released
  in ``nicoboou/ovg``). The output has its gradient stopped, so an integrator never
  differentiates through earlier steps. For inversion only (increasing grids): OVG is not
  applied while sampling. Named settings: :data:`OVG_PRESETS`.

  Args:
    process, denoise, eta_n, eta_c, kappa, branch, eps: see :func:`ovg_terms`.
    x_src: the clean source ``[B, ...]`` in model space.

  Returns:
    ``step(x, t, t_next) -> x_next`` (float32, shape of ``x``).

  Raises:
    ValueError: see :func:`check_ovg_args`.
  """
  check_ovg_args(process, branch, eta_n, eta_c, kappa)

  def step(x: Array, t: Array, t_next: Array) -> Array:
    return ovg_terms(process, denoise, x, t, t_next, x_src, eta_n=eta_n, eta_c=eta_c,
                     kappa=kappa, branch=branch, eps=eps).x_next

  return step
