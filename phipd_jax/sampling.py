"""Jit-compiled samplers over a model's parameters: generation, SDEdit and phi-PD translation.

Each sampler compiles once per (input shape, number of steps); strength, radius and guidance
scale are traced arguments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax import diffusion, training

Array = jax.Array


class Sampler:
  """Samplers of one model (graphdef) under ``config.diffusion`` and ``config.sample``.

  Args:
    config: the run config (fields ``diffusion``, ``noise``, ``sample``, ``model``).
    graphdef: the model's ``nnx.GraphDef``.
  """

  def __init__(self, config, graphdef: nnx.GraphDef):
    self.process = diffusion.process_from_config(config.diffusion)
    self.prediction = config.diffusion.prediction
    self.method = config.sample.sampler
    self.num_steps = config.sample.num_steps
    self.noise_config = config.noise
    self.graphdef = graphdef
    self.null_label = config.model.num_classes or None
    self.noise_scale = config.noise.scale
    self.guidance_interval = tuple(config.sample.guidance_interval) or None
    self.generate = jax.jit(self._generate, static_argnames=('image_shape', 'num'))
    self.sdedit = jax.jit(self._sdedit)
    self.phipd = jax.jit(self._phipd)

  def _denoiser(self, params, labels=None, guidance_scale=1.0):
    apply_fn = training.apply_model(self.graphdef, params)
    return diffusion.denoiser(self.process, apply_fn, self.prediction, labels, guidance_scale,
                              self.null_label, self.guidance_interval)

  def _generate(self, params, key: Array, image_shape, num: int, labels=None,
                guidance_scale=1.0) -> Array:
    """``num`` samples ``[num, *image_shape]`` from Gaussian noise."""
    return diffusion.generate(self.process, self._denoiser(params, labels, guidance_scale), key,
                              (num,) + tuple(image_shape), self.num_steps, self.method,
                              self.noise_scale)

  def _sdedit(self, params, x_input: Array, key: Array, strength) -> Array:
    """SDEdit of ``x_input`` ``[B, H, W, 3]`` at ``strength`` in (0, 1]."""
    return diffusion.sdedit(self.process, self._denoiser(params), key, x_input, strength,
                            self.num_steps, self.method, self.noise_scale)

  def _phipd(self, params, x_input: Array, key: Array, radius, strength=1.0) -> Array:
    """phi-PD translation of ``x_input`` at cutoff ``radius`` (unpadded frequency-index units)."""
    return diffusion.phipd_translate(
        self.process, self._denoiser(params), key, x_input, radius, self.num_steps, self.method,
        strength=strength, noise_scale=self.noise_scale, edge_width=self.noise_config.edge_width,
        mode=self.noise_config.mode)


def load_run(workdir: str, defaults, num_steps: int | None = None):
  """``(config, sampler, ema_params)`` of the latest checkpoint of a ``train.py`` run.

  Args:
    workdir: the run directory.
    defaults: a full ``ConfigDict`` (``configs.common.get_base_config()``) updated with
      ``<workdir>/config.json``, so fields added to the library since the run was saved take
      their defaults.
    num_steps: sampler steps (default: the run's ``sample.num_steps``).

  Raises:
    FileNotFoundError: no config.json or no readable checkpoint in ``workdir``.
  """
  from phipd_jax import checkpoint, sharding  # pylint: disable=g-import-not-at-top
  config = defaults
  config.update(checkpoint.load_config_dict(workdir))
  if num_steps is not None:
    config.sample.num_steps = num_steps
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  graphdef, template, _ = training.create_train_state(config, mesh)
  state = checkpoint.restore_latest(workdir, template)
  return config, Sampler(config, graphdef), state.ema_params


def translation_inputs(config):
  """Fixed translation batch of a run: ``(inputs, references or None)``, float32 ``[N, S, S, 3]``.

  ``config.sample.translate_source``: ``'photo'`` (the trained feature of the eval split),
  ``'flat_shaded'`` (those photos rendered flat-shaded) or another feature name (``'edges'``).
  ``config.sample.translate_reference``: a feature shown beside the outputs, or ``''``.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  data, sample = config.data, config.sample
  count = sample.num_translate
  source = sample.translate_source
  reference = None
  if sample.translate_reference:
    reference = pipeline.eval_images(data, data.eval_split, sample.translate_reference, count)
  if source == 'flat_shaded':
    photos = pipeline.eval_images(data, data.eval_split, data.image_key, count)
    return pipeline.flat_shaded(photos, sample.flat_shade_segments), reference
  key = data.image_key if source == 'photo' else source
  return pipeline.eval_images(data, data.eval_split, key, count), reference


def translation_columns(sampler: Sampler, params, inputs: Array, key: Array, radii,
                        phipd_strength: float, sdedit_strengths) -> list[tuple[str, Array]]:
  """phi-PD at each radius and SDEdit at each strength, the same key for every column."""
  columns = []
  for radius in radii:
    columns.append((f'phi-PD r={radius:g}',
                    sampler.phipd(params, inputs, key, jnp.float32(radius),
                                  jnp.float32(phipd_strength))))
  for strength in sdedit_strengths:
    columns.append((f'SDEdit s={strength:g}',
                    sampler.sdedit(params, inputs, key, jnp.float32(strength))))
  return columns
