"""The Python face of a run directory, trained (``train.py``) or converted (``convert.py``):

    import phipd_jax
    run = phipd_jax.load('runs/dit_xl2_256')
    images = run.sample(8, labels=[207] * 8, seed=0)            # [8, 256, 256, 3] in [-1, 1]
    out = run.translate(photos, method='phipd', radius=8, seed=0)  # layout of photos kept
    out = run.apply(x_t, t, y)                                    # the network itself

Everything is NHWC float32; images are in ``[-1, 1]``; time is the library's normalised time
``t`` in ``[0, 1]`` with ``t = 0`` the data end (a DDPM step ``k`` of ``K`` is ``t = k / K``:
DiT's step 999 is ``t = 0.999``). The sampling methods are those of ``sample.py``
(:data:`phipd_jax.sampling.METHODS`) with the run's ``config.sample`` settings unless overridden.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from phipd_jax import experiment as experiment_lib, sampling, saved_run

Array = jax.Array


@dataclasses.dataclass
class Run:
  """A loaded run: its config, experiment, EMA parameters and samplers.

  Attributes:
    workdir: the run directory.
    config: the run's config (migrated onto today's defaults).
    experiment: the built :class:`~phipd_jax.experiment.Experiment` (codec loaded).
    params: the EMA parameters of the latest checkpoint (``nnx.State``).
  """
  workdir: str
  config: ml_collections.ConfigDict
  experiment: experiment_lib.Experiment
  params: object
  _samplers: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def image_shape(self) -> tuple[int, ...]:
    """``(H, W, C)`` of the run's images (pixels); ``(T, H, W, C)`` of a clip run's clips."""
    return tuple(self.experiment.image_shape)

  @property
  def model_shape(self) -> tuple[int, ...]:
    """``(h, w, c)`` the network sees (the latent shape of a latent run; ``(T, H, W, C)`` for
    a clip run)."""
    return tuple(self.experiment.model_shape)

  @property
  def num_classes(self) -> int:
    """Classes of a class-conditional model (0: unconditional); the null label is this value."""
    return self.experiment.num_classes

  @functools.cached_property
  def _apply(self):
    return jax.jit(lambda params, x, t, y: self.experiment.apply_fn(params)(x, t, y))

  def apply(self, x_t: Array, t: Array | float, y: Optional[Array] = None) -> Array:
    """The network's raw output.

    Args:
      x_t: ``[B, h, w, c]`` in the model space (latents of a latent run; clips ``[B, T, h, w,
        c]`` of a clip run), float32.
      t: normalised time, scalar or ``[B]``, in ``[0, 1]`` (0 = data; DDPM step ``k`` of ``K``
        is ``k / K``; EDM runs take the network's conditioning input ``c_noise``).
      y: int32 labels ``[B]`` of a class-conditional model (``num_classes`` = the null label);
        None = the null label.

    Returns:
      float32 ``[B, h, w, c_out]``: the prediction (``config.diffusion.prediction``), plus DiT's
      learned-variance channels ``v`` when the model has them (``c_out = 2 c``).

    Raises:
      ValueError: ``x_t`` not ``[B, h, w, c]`` with sides the model accepts.
    """
    x_t = jnp.asarray(x_t, jnp.float32)
    if x_t.ndim != 1 + len(self.model_shape) or x_t.shape[-1] != self.model_shape[-1]:
      dims = 'B, T, h, w' if len(self.model_shape) == 4 else 'B, h, w'
      raise ValueError(f'apply: x_t {x_t.shape} must be [{dims}, {self.model_shape[-1]}]')
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x_t.shape[0],))
    if y is None and self.num_classes:
      y = jnp.full((x_t.shape[0],), self.num_classes, jnp.int32)
    return self._apply(self.params, x_t, t, None if y is None else jnp.asarray(y, jnp.int32))

  def encode(self, images: Array) -> Array:
    """Images ``[B, H, W, C]`` in ``[-1, 1]`` -> the model space ``[B, h, w, c]`` (the codec's
    ``(mean - shift) * scale``; the identity for pixel runs).

    Raises:
      ValueError: sides not multiples of the codec's factor.
    """
    images = jnp.asarray(images, jnp.float32)
    self.sampler().model_shape(images.shape)  # Checks the sides.
    return self.sampler().encode(images)

  def decode(self, latents: Array) -> Array:
    """The model space ``[B, h, w, c]`` -> images ``[B, H, W, C]`` (about ``[-1, 1]``,
    unclipped; the identity for pixel runs)."""
    return self.sampler().decode(jnp.asarray(latents, jnp.float32))

  def sampler(self, num_steps: Optional[int] = None, method: Optional[str] = None,
              video: Optional[str] = None) -> sampling.Sampler:
    """The run's :class:`~phipd_jax.sampling.Sampler` (``config.sample`` unless overridden;
    ``video``: a clip run's noise option, default ``config.noise.video``), built once per
    ``(num_steps, method, video)`` (its compiled functions are kept with it).

    Raises:
      ValueError: a method the run's process does not have, ``num_steps < 1``, ``video`` on an
        image run or not a video option.
    """
    if (num_steps, method, video) not in self._samplers:
      self._samplers[num_steps, method, video] = self.experiment.sampler(num_steps, method, video)
    return self._samplers[num_steps, method, video]

  def _labels(self, labels, count: int) -> Optional[Array]:
    if labels is None:
      return None
    labels = np.broadcast_to(np.asarray(labels, np.int32), (count,))
    if not self.num_classes or labels.min() < 0 or labels.max() >= self.num_classes:
      raise ValueError(f'labels {sorted(set(labels.tolist()))[:8]} must be in [0, '
                       f'{self.num_classes}) (model.num_classes={self.num_classes})')
    return jnp.asarray(labels)

  def sample(self, num: int, labels=None, seed: int = 0, guidance_scale: Optional[float] = None,
             num_steps: Optional[int] = None, method: Optional[str] = None) -> np.ndarray:
    """Generates ``num`` images.

    Args:
      num: number of images (>= 1).
      labels: an int or ``[num]`` ints in ``[0, num_classes)`` (class-conditional runs), or None
        (the null class / an unconditional run).
      seed: the noise seed.
      guidance_scale: classifier-free guidance (default ``config.sample.guidance_scale``).
      num_steps, method: sampler overrides (e.g. ``method='ddim'``, ``num_steps=50``).

    Returns:
      float32 numpy ``[num, H, W, C]``, about ``[-1, 1]`` (unclipped; ``writers.to_uint8``
      clips).

    Raises:
      ValueError: ``num < 1``, labels out of range, an unknown method.
    """
    if num < 1:
      raise ValueError(f'sample: num={num} must be >= 1')
    sampler = self.sampler(num_steps, method)
    scale = self.config.sample.guidance_scale if guidance_scale is None else guidance_scale
    out = sampler.generate(self.params, jax.random.key(seed), (num,) + self.image_shape,
                           self._labels(labels, num), scale)
    return np.asarray(out)

  def translate(self, images, method: str = 'phipd', *, radius: Optional[float] = None,
                strength: float = 1.0, source: Optional[int] = None,
                target: Optional[int] = None, guidance_scale: float = 1.0, seed: int = 0,
                num_steps: Optional[int] = None, sampler: Optional[str] = None,
                video: Optional[str] = None, flow=None) -> np.ndarray:
    """Structure-aligned translation of ``images`` (as ``sample.py --mode translate``).

    Args:
      images: ``[B, H, W, C]`` in ``[-1, 1]`` (sides the model / codec accepts); a clip run's
        clips ``[B, T, H, W, C]``.
      method: ``'phipd'`` (FSS noise at ``radius``, frequency-index units of the model space),
        ``'sdedit'`` (Gaussian noise at ``strength``), ``'invert'`` or ``'ovg'`` (deterministic
        inversion with class ``source``, sampling class ``target``; class-conditional runs).
      radius, strength, source, target, guidance_scale: the method's
        :class:`~phipd_jax.sampling.Setting`.
      seed: the noise seed.
      num_steps, sampler: sampler overrides.
      video: a clip run's noise option (:data:`phipd_jax.video_noise.VIDEO_OPTIONS`; default
        ``config.noise.video``).
      flow: the clips' forward flow ``[B, T - 1, H, W, 2]`` (pixels, ``(dx, dy)``), needed by
        ``'flow_warped'`` (:func:`phipd_jax.data.optical_flow.estimate_flows` estimates it).

    Returns:
      float32 numpy of the shape of ``images`` (unclipped).

    Raises:
      ValueError: an unknown method, a setting out of range (radius < 0, strength outside
        (0, 1], a class out of range), or a method the run cannot run.
    """
    setting = sampling.Setting(radius=radius, strength=strength, source=source, target=target,
                               guidance_scale=guidance_scale)
    run_sampler = self.sampler(num_steps, sampler, video)
    sampling.check(method, setting, run_sampler)
    outputs, _ = sampling.METHODS[method](run_sampler, self.params,
                                          jnp.asarray(images, jnp.float32),
                                          jax.random.key(seed), setting,
                                          None if flow is None else jnp.asarray(flow, jnp.float32))
    return np.asarray(outputs)

  def invert(self, images, source: Optional[int] = None, num_steps: Optional[int] = None
             ) -> np.ndarray:
    """Deterministic inversion (DDIM / Euler on the reversed grid) of ``images`` ``[B, H, W, C]``
    to the noise end, conditioned on class ``source`` (None: unconditioned).

    Returns:
      float32 numpy ``[B, h, w, c]`` in the model space.
    """
    labels = None
    if source is not None:
      labels = self._labels(source, len(images))
    return np.asarray(self.sampler(num_steps).invert(self.params,
                                                     jnp.asarray(images, jnp.float32), labels))


def load(workdir: str, num_steps: Optional[int] = None, mesh=None) -> Run:
  """Loads a run directory (``train.py`` or ``convert.py`` output): its config, the EMA
  parameters of its latest checkpoint, and (latent runs) its codec.

  Args:
    workdir: the run directory.
    num_steps: override of ``config.sample.num_steps``.
    mesh: where the parameters land (default: every local device, replicated).

  Raises:
    FileNotFoundError: no config.json, or no readable checkpoint.
    ValueError: the saved config no longer builds, or builds other parts than were saved.
  """
  config, exp, restored = saved_run.load_run(workdir, ('ema_params',), num_steps, mesh)
  return Run(workdir=workdir, config=config, experiment=exp, params=restored['ema_params'])

