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

The translation methods are one table, :data:`METHODS` (``'phipd'``, ``'sdedit'``, ``'invert'``,
``'ovg'``, ``'generate'``): each is ``method(sampler, params, inputs, key, setting) -> (outputs,
inverted noise or None)`` over a :class:`Setting`, with its grid title; :func:`check` validates a
method and setting against a sampler (or a run's :class:`Capabilities`, before its checkpoint
loads), :func:`map_batches` runs one over padded batches, :func:`translation_columns` builds the
checkpoint grids from it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
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
    method: integrator (``'euler'``, ``'heun'``, ``'ddim'``) or ``'ddpm'`` (ancestral DDPM
      sampling, with a learned-variance head's variance when the network has one:
      :func:`phipd_jax.diffusion.samplers.ddpm_ancestral`; inversion then runs DDIM).
    num_steps: grid intervals.
    noise_fn: the run's structured noise, ``(key, x0, radius) -> eps`` (FSS settings of the run).
    gaussian_fn: the run's Gaussian noise, ``(key, x0) -> eps`` (same scale).
    null_label: the model's "no label" index (``num_classes``), or None (unconditional model).
    guidance_interval: ``(low, high)`` in normalised time, or None.
    clip_x0: clip ``x0_hat`` to ``[-clip_x0, clip_x0]`` at every step (0 = off).
    guidance_channels: classifier-free guidance on the first channels only (0 = all; DiT's own
      sampling guides 3 of its 4 latent channels).
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
               ovg: Optional[dict] = None, codec: Optional[latent_lib.Codec] = None,
               guidance_channels: int = 0):
    process.check_sampler(method)
    process.check_prediction(prediction)
    if num_steps < 1:
      raise ValueError(f'sampler: num_steps={num_steps} must be >= 1')
    self.process, self.graphdef, self.prediction = process, graphdef, prediction
    self.method, self.num_steps = method, num_steps
    self.noise_fn, self.gaussian_fn = noise_fn, gaussian_fn
    self.null_label, self.guidance_interval, self.clip_x0 = null_label, guidance_interval, clip_x0
    self.guidance_channels = int(guidance_channels)
    # The deterministic method of inversion and of sampling from inverted noise.
    self.ode_method = {'heun': 'euler', 'ddpm': 'ddim'}.get(method, method)
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
  def prior_std(self) -> float:
    """The prior's std at the noise end of the sampling grid (EDM: ``sigma_max``; DDPM, flow:
    1): the scale of inverted noise."""
    return float(self.process.sigma(self.process.time_grid(1)[0]))

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
                                self.null_label, self.guidance_interval, self.guidance_channels)
    return guidance.clip_denoised(self.process, denoise, self.clip_x0)

  def _noise(self, x: Array, key: Array, radius=None, method: str = 'phipd',
             flow: Optional[Array] = None) -> Array:
    """The start noise of ``x`` ``[B, H, W, C]``: FSS at ``radius`` (``'phipd'``) or Gaussian
    (``'sdedit'``, ``'generate'``), from the same base draw of ``key``. Clips ``[B, T, H, W,
    C]`` may pass their forward ``flow`` ``[B, T - 1, H, W, 2]`` (a clip run's noise factory,
    :func:`phipd_jax.video_noise.video_noise_fn`, reads it)."""
    extra = {} if flow is None else {'flow': flow}
    if method == 'phipd':
      return self.noise_fn(key, x, radius, **extra)
    return self.gaussian_fn(key, x, **extra)

  def _sample_from(self, params, x: Array, eps: Array, strength=1.0, labels=None,
                   guidance_scale=1.0, key=None) -> Array:
    """Noises ``x`` to ``strength`` with ``eps`` and samples to data (phi-PD, SDEdit,
    structured SDEdit; generation is ``x = 0``, strength 1). Model space: ``x``, ``eps`` and
    the result are latents in a latent run (see :meth:`encode`, :meth:`decode`). ``key``: the
    per-step noise of ancestral sampling (``method='ddpm'`` only, where it is required)."""
    if self.method == 'ddpm':
      if key is None:
        raise ValueError("sampler: method='ddpm' (ancestral) needs a key for its per-step noise")
      if self.null_label is None:
        labels, guidance_scale = None, 1.0
      denoise_v = samplers.variance_denoiser(
          self.process, models.apply_model(self.graphdef, params), self.prediction, labels,
          guidance_scale, self.null_label, self.guidance_channels, self.clip_x0)
      return samplers.ancestral_sample_from(self.process, denoise_v, x, eps, strength,
                                            self.num_steps, key)
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
        jnp.float32(guidance_scale) if labels is not None else 1.0, self._step_key(key)))

  def translate(self, params, x: Array, key: Array, method: str, radius=None,
                strength=1.0, label: Optional[int] = None, guidance_scale=1.0,
                flow: Optional[Array] = None) -> Array:
    """phi-PD (FSS noise at ``radius``; strength 1 = from noise, < 1 = structured SDEdit) or
    SDEdit (Gaussian noise at ``strength``) of ``x`` ``[B, H, W, C]`` in ``[-1, 1]``; a
    class-conditional model samples class ``label`` at ``guidance_scale`` (None: the null class).
    Clips ``[B, T, H, W, C]`` of a clip run pass their forward ``flow`` ``[B, T - 1, H, W, 2]``
    (pixels) for ``noise.video='flow_warped'``.

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
    eps = self.noise(z, key, radius, method=method, flow=flow)
    if label is None or self.null_label is None:
      return self.decode(self.sample_from(params, z, eps, jnp.float32(strength), None, 1.0,
                                          self._step_key(key)))
    labels = jnp.full((x.shape[0],), label, jnp.int32)
    return self.decode(self.sample_from(params, z, eps, jnp.float32(strength), labels,
                                        jnp.float32(guidance_scale), self._step_key(key)))

  def _step_key(self, key: Array) -> Optional[Array]:
    """The key of ancestral sampling's per-step noise (None for the deterministic methods, so
    their compiled functions take no key)."""
    return jax.random.fold_in(key, 1) if self.method == 'ddpm' else None

  def _invert(self, params, x: Array, labels=None, start_noise=None) -> Array:
    """Deterministic inversion of ``x`` to the noise end on the reversed sampling grid
    (labels: the source condition; no guidance)."""
    denoise = self.denoiser(params, labels)
    return inversion.invert(self.process, denoise, x, self.num_steps,
                            method=self.ode_method,
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
    return samplers.solve(self.process, target, inverted, grid, self.ode_method), inverted

  def _invert_source(self, params, x, key, source_labels, method):
    source = self.denoiser(params, source_labels)
    n = jax.random.normal(jax.random.fold_in(key, 0), x.shape, jnp.float32)
    inverse_method = 'ddim' if self.ode_method == 'ddim' else 'euler'
    if method == 'ovg':
      settings = dict(self.ovg)
      forward_fraction = float(settings.pop('forward_fraction', 0.0))
      return inversion.ovg_invert(
          self.process, source, x, self.num_steps, branch=self.process.ovg_branch,
          forward_fraction=forward_fraction, start_noise=n, key=jax.random.fold_in(key, 1),
          **settings)
    return inversion.invert(self.process, source, x, self.num_steps, method=inverse_method,
                            start_noise=n)


# ---------------------------------------------------------------------------------------------
# The translation methods: one table, one setting, one check.


@dataclasses.dataclass(frozen=True)
class Setting:
  """The knobs of a translation method; each :class:`Method` reads the fields it names.

  Attributes:
    radius: phi-PD cutoff radius >= 0 in frequency-index units of the model space (distance
      from DC in cycles per image; ``inf`` keeps the whole phase); None = unset.
    strength: start time in (0, 1] (t = 0 data, 1 = from noise).
    source: the inputs' class (translation by inversion), in ``[0, num_classes)``; None = unset.
    target: the class to sample (class-conditional models), or None (the null class).
    guidance_scale: classifier-free guidance of ``target`` (1 = none), >= 0.
  """
  radius: Optional[float] = None
  strength: float = 1.0
  source: Optional[int] = None
  target: Optional[int] = None
  guidance_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Method:
  """One translation method of :data:`METHODS`, callable as
  ``method(sampler, params, inputs, key, setting) -> (outputs, inverted noise or None)``:
  ``inputs`` and ``outputs`` float32 images ``[B, H, W, C]`` in ``[-1, 1]`` (outputs
  unclipped), the inverted noise in the model space (translation by inversion only).

  Attributes:
    name: its key in :data:`METHODS`.
    run: the function over :class:`Sampler` that the call runs.
    fields: the :class:`Setting` fields it reads (the others are ignored).
    required: the fields that must not be None.
    title: ``setting -> `` a grid column title (``'phi-PD r=4'``, ``'SDEdit s=0.5'``, ...).
    header: ``setting -> `` a one-line description with every field the method reads.
    conditional: needs a class-conditional model (translation between its classes).
    needs_ovg: needs a process with an OVG branch (EDM, DDPM).
    paper: where the method comes from.
  """
  name: str
  run: Callable[..., tuple[Array, Optional[Array]]]
  fields: tuple[str, ...]
  title: Callable[[Setting], str]
  header: Callable[[Setting], str]
  required: tuple[str, ...] = ()
  conditional: bool = False
  needs_ovg: bool = False
  paper: str = ''

  def __call__(self, sampler: Sampler, params, inputs: Array, key: Array,
               setting: Setting, flow: Optional[Array] = None) -> tuple[Array, Optional[Array]]:
    """``flow``: clips' forward flow ``[B, T - 1, H, W, 2]`` (phi-PD and SDEdit noise of a clip
    run; the other methods ignore it)."""
    return self.run(sampler, params, inputs, key, setting, flow)


def _phipd(sampler, params, inputs, key, setting, flow=None):
  return sampler.translate(params, inputs, key, 'phipd', setting.radius, setting.strength,
                           setting.target, setting.guidance_scale, flow), None


def _sdedit(sampler, params, inputs, key, setting, flow=None):
  return sampler.translate(params, inputs, key, 'sdedit', None, setting.strength,
                           setting.target, setting.guidance_scale, flow), None


def _by_inversion(method):
  def run(sampler, params, inputs, key, setting, flow=None):
    del flow  # Deterministic inversion: no start noise to warp.
    return sampler.translate_by_inversion(params, inputs, key, method, setting.source,
                                          setting.target, setting.guidance_scale)
  return run


def _generate(sampler, params, inputs, key, setting, flow=None):
  del flow
  labels = None
  if setting.target is not None and sampler.null_label is not None:
    labels = jnp.full((inputs.shape[0],), setting.target, jnp.int32)
  return sampler.generate(params, key, inputs.shape, labels, setting.guidance_scale), None


def _inversion_header(name):
  return lambda s: f'{name} class {s.source}->{s.target} w={s.guidance_scale:g}'


_CLASS_FIELDS = ('target', 'guidance_scale')
METHODS: dict[str, Method] = {m.name: m for m in (
    Method('phipd', _phipd, ('radius', 'strength') + _CLASS_FIELDS,
           title=lambda s: f'phi-PD r={s.radius:g}',
           header=lambda s: f'phi-PD r={s.radius:g} s={s.strength:g}', required=('radius',),
           paper='phi-PD, arXiv:2512.05106: FSS noise at the radius; strength 1 = from noise, '
           '< 1 = structured SDEdit'),
    Method('sdedit', _sdedit, ('strength',) + _CLASS_FIELDS,
           title=lambda s: f'SDEdit s={s.strength:g}',
           header=lambda s: f'SDEdit s={s.strength:g}',
           paper='SDEdit, Meng et al., ICLR 2022: Gaussian noise at the strength'),
    Method('invert', _by_inversion('invert'), ('source',) + _CLASS_FIELDS,
           title=lambda s: 'inversion', header=_inversion_header('inversion'),
           required=('source', 'target'), conditional=True,
           paper='translation by deterministic inversion, arXiv:2602.13303 Sec. 2'),
    Method('ovg', _by_inversion('ovg'), ('source',) + _CLASS_FIELDS,
           title=lambda s: 'OVG', header=_inversion_header('OVG'),
           required=('source', 'target'), conditional=True, needs_ovg=True,
           paper='Orthogonal Variance Guidance, arXiv:2602.13303'),
    Method('generate', _generate, _CLASS_FIELDS, title=lambda s: 'generate',
           header=lambda s: 'generate',
           paper='unconditional baseline: sampling from Gaussian noise, the inputs\' shape only'),
)}


def check(method: Optional[str], setting: Setting, sampler,
          names: Optional[dict[str, str]] = None):
  """Raises if ``sampler`` cannot run ``method`` at ``setting``; compiles and loads nothing.

  Every field that is set is checked, read by the method or not; the method's own requirements
  only when ``method`` is given.

  Args:
    method: a key of :data:`METHODS`, or None (check the setting's values alone).
    setting: the setting to run it at.
    sampler: a :class:`Sampler`, or (before a checkpoint loads) a :class:`Capabilities`: only
      its ``null_label`` and ``process`` are read.
    names: how the caller spells ``'method'`` and the setting's fields in messages (e.g.
      ``{'radius': '--radius'}``); the field's own name otherwise.

  Raises:
    ValueError: an unknown method, radius < 0 or NaN, strength outside (0, 1], guidance
      scale < 0, a class outside ``[0, num_classes)`` (any class on an unconditional model),
      a required field unset, a method between classes on an unconditional model, or OVG on a
      process without an OVG branch (flow matching).
  """
  name = lambda field: (names or {}).get(field, field)
  num_classes = sampler.null_label or 0
  if setting.radius is not None and not setting.radius >= 0:
    raise ValueError(f'{name("radius")}={setting.radius} must be >= 0 (frequency-index units; '
                     'inf keeps the whole phase)')
  if not 0 < setting.strength <= 1:
    raise ValueError(f'{name("strength")}={setting.strength} must be in (0, 1]')
  if not setting.guidance_scale >= 0:
    raise ValueError(f'{name("guidance_scale")}={setting.guidance_scale} must be >= 0')
  for field in ('source', 'target'):
    label = getattr(setting, field)
    if label is not None and not 0 <= label < num_classes:
      raise ValueError(f'{name(field)}={label} must be in [0, {num_classes}) (model.num_classes'
                       f'{"=0: an unconditional model" if not num_classes else ""})')
  if method is None:
    return
  if method not in METHODS:
    raise ValueError(f'{name("method")}={method!r} must be one of {tuple(METHODS)}')
  spec = METHODS[method]
  if spec.conditional and not num_classes:
    raise ValueError(f'{name("method")} {method} translates between classes of one model, but '
                     'this run is unconditional (model.num_classes=0); use phipd or sdedit, or '
                     'train a multi-domain run (configs/edges2shoes_two_domain.py)')
  if spec.needs_ovg and sampler.process.ovg_branch is None:
    raise ValueError(f'{name("method")} {method} needs an EDM or DDPM process, not '
                     f'{type(sampler.process).__name__}')
  unset = [name(field) for field in spec.required if getattr(setting, field) is None]
  if unset:
    raise ValueError(f'{name("method")} {method}: pass {" and ".join(unset)}')


@dataclasses.dataclass(frozen=True)
class Capabilities:
  """What :func:`check` reads of a sampler, known from a run's config before its checkpoint
  loads: ``null_label`` (``num_classes``, or None for an unconditional model) and ``process``
  (the forward process)."""
  null_label: Optional[int]
  process: processes.Process


def inverted_noise(sampler: Sampler, params, inputs: Array, key: Array, method: str,
                   setting: Setting) -> Array:
  """The noise ``inputs`` ``[B, H, W, C]`` invert to, model space.

  A method by inversion (``'invert'``, ``'ovg'``) with ``setting.source`` set: its own inversion
  (:meth:`Sampler.invert_source`; ``key`` draws EDM's start noise and the DDIM branch's forward
  steps). Any other method: plain deterministic inversion (:meth:`Sampler.invert`) conditioned
  on ``setting.source`` (None: unconditioned), ``key`` unused.
  """
  if METHODS[method].conditional and setting.source is not None:
    return sampler.invert_source(params, inputs, key, method, setting.source)
  labels = None
  if setting.source is not None:
    labels = jnp.full((inputs.shape[0],), setting.source, jnp.int32)
  return sampler.invert(params, inputs, labels)


def map_batches(fn: Callable[[Array, Array], object], batches: Iterable,
                key: Array) -> Iterator[tuple[list, object]]:
  """Runs ``fn(batch, batch_key)`` over ``(paths, batch [N, H, W, C], index)`` batches (as
  :func:`phipd_jax.inputs.batches` yields them: padded to a fixed ``N``, so one compilation per
  shape), e.g. a :data:`METHODS` entry with its sampler, parameters and setting bound.

  Batch ``index`` gets the key ``jax.random.fold_in(key, index)``: image i and image i + N get
  different noise.

  Yields:
    ``(paths, result)``: ``fn``'s result (arrays, tuples of arrays and None) as numpy arrays
    with the padding rows dropped (``len(paths)`` rows each).
  """
  for paths, batch, index in batches:
    result = fn(jnp.asarray(batch), jax.random.fold_in(key, index))
    yield paths, jax.tree.map(lambda a, n=len(paths): np.asarray(a)[:n], result)


def translation_columns(sampler: Sampler, params, inputs: Array, key: Array, radii,
                        phipd_strength: float, sdedit_strengths, inversion_classes=(),
                        guidance_scale: float = 1.0,
                        flow: Optional[Array] = None) -> list[tuple[str, Array]]:
  """phi-PD at each radius and SDEdit at each strength, the same key for every column; with
  ``inversion_classes = (source, target)`` also plain inversion and OVG (OVG on EDM and DDPM
  only), and phi-PD and SDEdit sample the target class at ``guidance_scale``.

  Returns:
    ``[(title, outputs [N, H, W, C])]``, titles of :attr:`Method.title`.
  """
  source, target = tuple(inversion_classes) or (None, None)
  settings = [('phipd', Setting(radius=r, strength=phipd_strength, target=target,
                                guidance_scale=guidance_scale)) for r in radii]
  settings += [('sdedit', Setting(strength=s, target=target, guidance_scale=guidance_scale))
               for s in sdedit_strengths]
  if inversion_classes:
    by_inversion = Setting(source=source, target=target, guidance_scale=guidance_scale)
    settings += [(m, by_inversion) for m in ('invert', 'ovg')
                 if m == 'invert' or sampler.process.ovg_branch is not None]
  return [(METHODS[m].title(s), METHODS[m](sampler, params, inputs, key, s, flow)[0])
          for m, s in settings]
