"""Jit-compiled sampling over a model's parameters: generate, translate, invert.

A :class:`Sampler` is built from objects (by :meth:`phipd_jax.experiment.Experiment.sampler`),
never from a config. Its compiled functions take the start noise ``eps`` explicitly (the
library's one noise factory, :func:`phipd_jax.noise.noise_fn`, makes it: :meth:`Sampler.noise`),
so every noise setting of the run reaches sampling and one key gives SDEdit and phi-PD the same
base Gaussian draw. Each compiles once per (input shape, number of steps); strength, radius and
guidance scale are traced.

Latent runs: the public methods take and return images; a :class:`~phipd_jax.latent.Codec`
encodes the inputs first and decodes the outputs last (each a separate compiled call), so the
noise (FSS / phi-PD from the latent of the input, as the released phi-PD models build it), the
network, inversion and OVG all run on latents. Inverted noise is returned in the latent space.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax import latent as latent_lib
from phipd_jax import models
from phipd_jax.diffusion import guidance, inversion, processes, samplers

Array = jax.Array

TRANSLATION_METHODS = ('phipd', 'sdedit')
INVERSION_METHODS = ('invert', 'ovg')  # Translation by inversion (multi-domain models).


class Sampler:
  """Samplers of one model under one process.

  Args:
    process: the forward process.
    graphdef: the model's ``nnx.GraphDef``.
    prediction: the network's prediction type.
    method: integrator (``'euler'``, ``'heun'``, ``'ddim'``).
    num_steps: grid intervals.
    noise_fn: the run's structured noise, ``(key, x0, radius) -> eps`` (FSS settings of the run).
    gaussian_fn: the run's Gaussian noise, ``(key, x0) -> eps`` (same scale).
    null_label: the model's "no label" index (``num_classes``), or None (unconditional model).
    guidance_interval: ``(low, high)`` in normalised time, or None.
    clip_x0: clip ``x0_hat`` to ``[-clip_x0, clip_x0]`` at every step (0 = off).
    ovg: Orthogonal Variance Guidance settings of :meth:`translate_by_inversion` with
      ``method='ovg'``: ``eta_n``, ``eta_c``, ``kappa`` and (DDPM only) ``forward_fraction``
      (see :func:`phipd_jax.diffusion.inversion.ovg_invert`); None = the released Edges2Shoes
      values (:data:`phipd_jax.diffusion.guidance.OVG_PRESETS`).
    codec: the latent run's :class:`~phipd_jax.latent.Codec` (None: pixel space).
  """

  def __init__(self, *, process: processes.Process, graphdef: nnx.GraphDef, prediction: str,
               method: str, num_steps: int, noise_fn: Callable, gaussian_fn: Callable,
               null_label: Optional[int] = None,
               guidance_interval: Optional[tuple[float, float]] = None, clip_x0: float = 0.0,
               ovg: Optional[dict] = None, codec: Optional[latent_lib.Codec] = None):
    process.check_sampler(method)
    process.check_prediction(prediction)
    if num_steps < 1:
      raise ValueError(f'sampler: num_steps={num_steps} must be >= 1')
    self.process, self.graphdef, self.prediction = process, graphdef, prediction
    self.method, self.num_steps = method, num_steps
    self.noise_fn, self.gaussian_fn = noise_fn, gaussian_fn
    self.null_label, self.guidance_interval, self.clip_x0 = null_label, guidance_interval, clip_x0
    if ovg is None:
      ovg = dict(guidance.OVG_PRESETS['edges2shoes'])
      if process.ovg_branch != 'ddim':
        ovg['forward_fraction'] = 0.0
    self.ovg = dict(ovg)
    self.codec = codec
    self._encode = jax.jit(lambda codec, x: codec.encode(x))
    self._decode = jax.jit(lambda codec, z: codec.decode(z))
    self.sample_from = jax.jit(self._sample_from)
    self._invert_jit = jax.jit(self._invert)
    self._by_inversion = jax.jit(self._translate_by_inversion, static_argnames=('method',))
    self._inverted = jax.jit(self._invert_source, static_argnames=('method',))
    self.noise = jax.jit(self._noise, static_argnames=('method',))

  def encode(self, x: Array) -> Array:
    """Images ``[B, H, W, C]`` in ``[-1, 1]`` -> the model space (the identity for pixels)."""
    return x if self.codec is None else self._encode(self.codec, x)

  def decode(self, z: Array) -> Array:
    """The model space -> images ``[B, H, W, C]`` (the identity for pixels)."""
    return z if self.codec is None else self._decode(self.codec, z)

  def model_shape(self, image_shape) -> tuple[int, ...]:
    """The model-space shape of images of ``image_shape`` (``[..., H, W, C]``)."""
    shape = tuple(int(d) for d in image_shape)
    return shape if self.codec is None else self.codec.latent_shape(shape)

  def invert(self, params, x: Array, labels=None, start_noise=None) -> Array:
    """Deterministic inversion of images ``x`` ``[B, H, W, C]`` to the noise end (model
    space) on the reversed sampling grid; ``labels``: the source condition, unguided."""
    return self._invert_jit(params, self.encode(x), labels, start_noise)

  @property
  def evaluations(self) -> int:
    """Network evaluations of one run (x2 batch under guidance)."""
    return samplers.network_evaluations(self.process, self.method, self.num_steps)

  def denoiser(self, params, labels: Optional[Array] = None,
               guidance_scale: float | Array = 1.0) -> samplers.Denoiser:
    """``denoise(x_t, t)`` of ``params``: labels bound, guidance (a traced ``guidance_scale``
    always runs the doubled batch for a conditional model), then the x0 clip."""
    apply_fn = models.apply_model(self.graphdef, params)
    if self.null_label is None:  # An unconditional model: labels, if any, are not guidance.
      guidance_scale = 1.0
    denoise = samplers.denoiser(self.process, apply_fn, self.prediction, labels, guidance_scale,
                                self.null_label, self.guidance_interval)
    return guidance.clip_denoised(self.process, denoise, self.clip_x0)

  def _noise(self, x: Array, key: Array, radius=None, method: str = 'phipd') -> Array:
    """The start noise of ``x`` ``[B, H, W, C]``: FSS at ``radius`` (``'phipd'``) or Gaussian
    (``'sdedit'``, ``'generate'``), from the same base draw of ``key``."""
    if method == 'phipd':
      return self.noise_fn(key, x, radius)
    return self.gaussian_fn(key, x)

  def _sample_from(self, params, x: Array, eps: Array, strength=1.0, labels=None,
                   guidance_scale=1.0) -> Array:
    """Noises ``x`` to ``strength`` with ``eps`` and samples to data (phi-PD, SDEdit,
    structured SDEdit; generation is ``x = 0``, strength 1). Model space: ``x``, ``eps`` and
    the result are latents in a latent run (see :meth:`encode`, :meth:`decode`)."""
    denoise = self.denoiser(params, labels, guidance_scale)
    return samplers.sample_from(self.process, denoise, x, eps, strength, self.num_steps,
                                self.method)

  def generate(self, params, key: Array, shape, labels=None, guidance_scale=1.0) -> Array:
    """Samples images ``[N, H, W, C]`` (``shape``, image space) from Gaussian noise of ``key``
    (drawn in the model space, decoded at the end)."""
    zeros = jnp.zeros(self.model_shape(shape), jnp.float32)
    eps = self.noise(zeros, key, method='generate')
    return self.decode(self.sample_from(
        params, zeros, eps, jnp.float32(1.0), labels,
        jnp.float32(guidance_scale) if labels is not None else 1.0))

  def translate(self, params, x: Array, key: Array, method: str, radius=None,
                strength=1.0, label: Optional[int] = None, guidance_scale=1.0) -> Array:
    """phi-PD (FSS noise at ``radius``; strength 1 = from noise, < 1 = structured SDEdit) or
    SDEdit (Gaussian noise at ``strength``) of ``x`` ``[B, H, W, C]`` in ``[-1, 1]``; a
    class-conditional model samples class ``label`` at ``guidance_scale`` (None: the null class).

    Raises:
      ValueError: unknown method, a radius below 0, a strength outside (0, 1].
    """
    if method not in TRANSLATION_METHODS:
      raise ValueError(f'translate: method={method!r} must be one of {TRANSLATION_METHODS}')
    if not 0 < float(strength) <= 1:
      raise ValueError(f'translate: strength={strength} must be in (0, 1]')
    if method == 'phipd':
      if radius is None or not float(radius) >= 0:
        raise ValueError(f'translate: radius={radius} must be >= 0 (frequency-index units)')
      radius = jnp.float32(radius)
    z = self.encode(x)
    eps = self.noise(z, key, radius, method=method)
    if label is None or self.null_label is None:
      return self.decode(self.sample_from(params, z, eps, jnp.float32(strength)))
    labels = jnp.full((x.shape[0],), label, jnp.int32)
    return self.decode(self.sample_from(params, z, eps, jnp.float32(strength), labels,
                                        jnp.float32(guidance_scale)))

  def _invert(self, params, x: Array, labels=None, start_noise=None) -> Array:
    """Deterministic inversion of ``x`` to the noise end on the reversed sampling grid
    (labels: the source condition; no guidance)."""
    denoise = self.denoiser(params, labels)
    return inversion.invert(self.process, denoise, x, self.num_steps,
                            method=self.method if self.method != 'heun' else 'euler',
                            start_noise=start_noise)


  def translate_by_inversion(self, params, x: Array, key: Array, method: str, source_label: int,
                             target_label: int, guidance_scale: float = 1.0
                             ) -> tuple[Array, Array]:
    """Translation by deterministic inversion (Bourriez et al., "Spectral Collapse in Diffusion
    Inversion", arXiv:2602.13303, Sec. 2): invert ``x`` with the *source* class, then sample
    from the inverted noise with the *target* class under classifier-free guidance.

    ``method='invert'``: plain inversion (DDIM for DDPM, Euler for flow and EDM) on the reversed
    sampling grid; ``'ovg'``: inversion with Orthogonal Variance Guidance at every step
    (``self.ovg``; EDM and DDPM only). EDM starts at ``x + sigma_min n`` with ``n`` from ``key``
    (as the OVG code does); the DDIM branch's forward-noised first steps draw from ``key`` too.
    Sampling is plain (no OVG), with this sampler's method and steps (Heun inverts with Euler).

    Args:
      params: the model's parameters (a class-conditional model).
      x: input images ``[B, H, W, C]`` in ``[-1, 1]`` (encoded first in a latent run).
      key: PRNG key.
      method: ``'invert'`` or ``'ovg'``.
      source_label, target_label: class indices in ``[0, num_classes)``.
      guidance_scale: target-side classifier-free guidance (1 = none); inversion is unguided.

    Returns:
      ``(outputs, inverted)``: float32 ``[B, H, W, C]`` samples (unclipped, decoded) and the
      inverted noise ``x_T`` in the model space (at the prior's scale: std ``sigma_max`` for
      EDM, 1 for DDPM).

    Raises:
      ValueError: an unconditional model, a class out of range, an unknown method, or OVG on a
        process without an OVG branch (flow matching).
    """
    self._check_inversion(method, source_label, target_label)
    labels = lambda label: jnp.full((x.shape[0],), label, jnp.int32)
    outputs, inverted = self._by_inversion(params, self.encode(x), key, labels(source_label),
                                           labels(target_label), jnp.float32(guidance_scale),
                                           method=method)
    return self.decode(outputs), inverted

  def invert_source(self, params, x: Array, key: Array, method: str,
                    source_label: int) -> Array:
    """The inverted noise of :meth:`translate_by_inversion` alone (same arguments)."""
    self._check_inversion(method, source_label, source_label)
    return self._inverted(params, self.encode(x), key, jnp.full((x.shape[0],), source_label, jnp.int32),
                          method=method)

  def _check_inversion(self, method: str, source_label: int, target_label: int):
    if method not in INVERSION_METHODS:
      raise ValueError(f'translate: method={method!r} must be one of {INVERSION_METHODS}')
    if self.null_label is None:
      raise ValueError('translate: inversion methods need a class-conditional model (source '
                       'and target classes); this run has model.num_classes=0')
    for name, label in (('source', source_label), ('target', target_label)):
      if not 0 <= int(label) < self.null_label:
        raise ValueError(f'translate: {name} class {label} must be in [0, {self.null_label})')
    if method == 'ovg' and self.process.ovg_branch is None:
      raise ValueError(f'translate: OVG needs an EDM or DDPM process, not '
                       f'{type(self.process).__name__}')

  def _translate_by_inversion(self, params, x, key, source_labels, target_labels,
                              guidance_scale, method):
    inverted = self._invert_source(params, x, key, source_labels, method)
    target = self.denoiser(params, target_labels, guidance_scale)
    grid = self.process.time_grid(self.num_steps)
    return samplers.solve(self.process, target, inverted, grid, self.method), inverted

  def _invert_source(self, params, x, key, source_labels, method):
    source = self.denoiser(params, source_labels)
    n = jax.random.normal(jax.random.fold_in(key, 0), x.shape, jnp.float32)
    inverse_method = 'ddim' if self.method == 'ddim' else 'euler'
    if method == 'ovg':
      settings = dict(self.ovg)
      forward_fraction = float(settings.pop('forward_fraction', 0.0))
      return inversion.ovg_invert(
          self.process, source, x, self.num_steps, branch=self.process.ovg_branch,
          forward_fraction=forward_fraction, start_noise=n, key=jax.random.fold_in(key, 1),
          **settings)
    return inversion.invert(self.process, source, x, self.num_steps, method=inverse_method,
                            start_noise=n)


def translation_columns(sampler: Sampler, params, inputs: Array, key: Array, radii,
                        phipd_strength: float, sdedit_strengths, inversion_classes=(),
                        guidance_scale: float = 1.0) -> list[tuple[str, Array]]:
  """phi-PD at each radius and SDEdit at each strength, the same key for every column; with
  ``inversion_classes = (source, target)`` also plain inversion and OVG, and SDEdit samples the
  target class at ``guidance_scale``."""
  label = inversion_classes[1] if inversion_classes else None
  columns = []
  for radius in radii:
    columns.append((f'phi-PD r={radius:g}', sampler.translate(
        params, inputs, key, 'phipd', radius, phipd_strength, label, guidance_scale)))
  for strength in sdedit_strengths:
    columns.append((f'SDEdit s={strength:g}', sampler.translate(
        params, inputs, key, 'sdedit', strength=strength, label=label,
        guidance_scale=guidance_scale)))
  if inversion_classes:
    methods = (('invert', 'inversion'), ('ovg', 'OVG'))
    for method, title in methods[:2 if sampler.process.ovg_branch else 1]:
      outputs, _ = sampler.translate_by_inversion(params, inputs, key, method,
                                                  *inversion_classes, guidance_scale)
      columns.append((title, outputs))
  return columns
