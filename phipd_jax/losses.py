"""The training objectives' wiring: ``loss_fn(params, batch, key, constants) -> (loss, metrics)``.

Built from objects (a model graphdef, a process, a noise function, a codec, plain settings), never
from a config; :meth:`phipd_jax.experiment.Experiment.loss_fn` picks the one of the run's model
(``'diffusion'`` or ``'autoencoder'``, :data:`phipd_jax.models.OBJECTIVES`) and the train step
(:func:`phipd_jax.training.make_train_step`) differentiates it. What each adds around the loss
itself: label dropout for classifier-free guidance, the frozen codec's encoding of a latent run,
Latent Wavelet Diffusion's mask and its logged supervised fraction, and batch-sharding
constraints on the activations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from phipd_jax import latent, models, sharding, specs
from phipd_jax.diffusion import lwd, objectives, processes

LossFn = Callable  # (params, batch, key, constants=None) -> (loss, metrics)


def batch_constraint(mesh) -> Callable:
  """``x -> x`` kept split over the mesh's batch axes (identity without a mesh): GSPMD may
  otherwise follow the fsdp weights' sharding for the activations."""
  if mesh is None:
    return lambda x: x
  batch_sharding = sharding.batch_sharding(mesh)
  return lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)


def lwd_log_sigmas(num_bins: int) -> tuple[float, ...]:
  """Centres ``(k + 1/2) / num_bins`` of equal sigma bins on ``[0, 1]`` (flow time units)."""
  return tuple((k + 0.5) / num_bins for k in range(num_bins))


def lwd_metric_name(sigma: float) -> str:
  """Metric name of the LWD mask fraction at noise level ``sigma``: ``lwd_mask_fraction_s0.90``."""
  return f'lwd_mask_fraction_s{sigma:.2f}'


@dataclasses.dataclass(frozen=True)
class LwdSettings:
  """Latent Wavelet Diffusion's loss mask (Sigillo et al., arXiv:2506.00433, Eqs. 6-7).

  Attributes:
    ell: the mask's offset: supervised where ``sigma <= A + ell`` (paper 0.3).
    normalize: ``'all'`` (mean over every element, as released) or ``'mask'``.
    log_bins: the supervised fraction is logged at the centres of this many sigma bins.
    channels: the energy map's channels: ``'all'`` (paper Eq. 2) or ``'released'`` (the
      released code reads latent channels 0-2 only).
  """
  ell: float
  normalize: str = 'all'
  log_bins: int = 5
  channels: str = 'all'

  def __post_init__(self):
    if not isinstance(self.ell, (int, float)) or not math.isfinite(self.ell) or self.ell < 0:
      specs.fail('diffusion.lwd.ell', self.ell, 'must be a finite number >= 0 (the paper uses 0.3)')
    if self.normalize not in lwd.NORMALIZATIONS:
      specs.fail('diffusion.lwd.normalize', self.normalize,
                 f"must be one of {lwd.NORMALIZATIONS} ('all' = released code; 'mask' = deviation)")
    if not isinstance(self.log_bins, int) or self.log_bins < 0:
      specs.fail('diffusion.lwd.log_bins', self.log_bins, 'must be an integer >= 0')
    if self.channels not in lwd.CHANNELS:
      specs.fail('diffusion.lwd.channels', self.channels,
                 f"must be one of {lwd.CHANNELS} ('all' = paper Eq. 2; 'released' = the released "
                 "code's channels 0-2)")


def lwd_settings(section: dict, process: processes.Process) -> Optional[LwdSettings]:
  """The LWD settings of ``config.diffusion.lwd`` (None unless ``enabled``), checked.

  Raises:
    ValueError: a field out of range, or ``enabled`` with a process whose time is not the flow
      noise level in ``[0, 1]`` (DDPM steps and EDM sigmas would be masked in the wrong units).
  """
  if not isinstance(section['enabled'], bool):
    specs.fail('diffusion.lwd.enabled', section['enabled'], 'must be True or False')
  settings = LwdSettings(section['ell'], section['normalize'], section['log_bins'],
                         section.get('channels', 'all'))
  if section['enabled'] and not process.flow_noise_level_time:
    specs.fail('diffusion.lwd.enabled', True,
               "LWD's mask compares the flow-matching noise level t in [0, 1]; it needs "
               f"diffusion.process='flow' (got {type(process).__name__})")
  return settings if section['enabled'] else None


def diffusion_loss_fn(graphdef: nnx.GraphDef, process: processes.Process, noise_fn: Callable,
                      prediction: str, *, loss_space: str = 'prediction', num_classes: int = 0,
                      label_dropout: float = 0.0, lwd_settings: Optional[LwdSettings] = None,
                      codec: Optional[latent.Codec] = None, mesh=None) -> LossFn:
  """``loss_fn(params, batch, key, constants=None) -> (loss, metrics)`` of the diffusion objective.

  ``batch`` holds ``'image'`` (float32 ``[B, H, W, C]`` in ``[-1, 1]``, or clips ``[B, T, H, W,
  C]`` with their forward flow ``'flow'`` ``[B, T - 1, H, W, 2]``, pixels, passed to
  ``noise_fn(key, x0, flow=flow)``) and ``'label'`` (int32 ``[B]``); the label dropout for classifier-free guidance (labels replaced by ``num_classes``,
  the null class, with probability ``label_dropout``) and the objective draw from ``key``. A
  latent run (``codec``) encodes the images with the frozen codec first (``constants['codec']``,
  its parameters, or the codec's own): the diffusion, its noise and the LWD mask see only
  ``z = codec.encode(x)``. A batch that holds ``'latent'`` instead of ``'image'``
  (:class:`phipd_jax.latent.LatentCache`) is used as is.

  With ``lwd_settings`` the squared error is masked by Latent Wavelet Diffusion's mask of the
  noisy input (:func:`phipd_jax.diffusion.lwd.process_weight_fn`), and the metrics hold
  ``lwd_mask_fraction_s<sigma>``: the supervised fraction at the centre of each of ``log_bins``
  sigma bins (:func:`~phipd_jax.diffusion.lwd.mask_fraction_at_sigmas`, on the batch with a
  separate noise draw; it does not touch the loss).

  Args:
    graphdef: the network's ``nnx.GraphDef``; ``params`` of the returned function complete it.
    process: the forward process.
    noise_fn: ``noise_fn(key, x0) -> eps`` (the run's training noise).
    prediction: the network's prediction type (``'v'``, ``'x'``, ``'eps'``, ``'edm'``).
    loss_space: ``'prediction'`` or ``'v'`` (:func:`phipd_jax.diffusion.objectives.diffusion_loss`).
    num_classes: 0 for an unconditional model.
    label_dropout: probability in ``[0, 1]`` of the null class (1: always, an unconditional
      fine-tune of a class-conditional model on unlabelled data).
    lwd_settings: LWD's mask (flow matching only), or None.
    codec: the frozen codec of a latent run, or None (pixel space).
    mesh: activations are constrained to the batch axes of this mesh (None: no constraint).
  """
  weight_fn, log_sigmas, ell, channels = None, (), 0.0, 'all'
  if lwd_settings is not None:
    ell, channels = lwd_settings.ell, lwd_settings.channels
    weight_fn = lwd.process_weight_fn(process, ell, lwd_settings.normalize,
                                      lwd_settings.channels)
    log_sigmas = lwd_log_sigmas(lwd_settings.log_bins)
  constrain = batch_constraint(mesh)

  def loss_fn(params, batch, key, constants=None):
    label_key, loss_key = jax.random.split(key)
    labels = None
    if num_classes:
      drop = jax.random.uniform(label_key, batch['label'].shape) < label_dropout
      labels = jnp.where(drop, num_classes, batch['label'])
    model = models.apply_model(graphdef, params)
    # The prediction: a learned-variance head's extra channels (DiT's v) get no loss here.
    apply_fn = lambda x, t, y: constrain(model(constrain(x), t, y)[..., :x.shape[-1]])
    if 'latent' in batch:  # Encoded once, before training (codec.cache).
      x0 = constrain(batch['latent'])
    else:
      x0 = constrain(batch['image'])
      if codec is not None:  # Frozen: no gradient reaches it.
        codec_params = codec.params if constants is None else constants['codec']
        frozen = dataclasses.replace(codec, params=jax.lax.stop_gradient(codec_params))
        x0 = constrain(frozen.encode(x0))
    if 'flow' in batch:  # Clips: the noise may follow the flow (noise.video='flow_warped').
      flow = constrain(batch['flow'])
      draw = lambda k, x: noise_fn(k, x, flow=flow)
    else:
      draw = lambda k, x: noise_fn(k, x)
    loss = objectives.diffusion_loss(process, apply_fn, x0, loss_key, draw, prediction, labels,
                                     loss_space, weight_fn=weight_fn)
    metrics = {}
    if log_sigmas:
      eps = noise_fn(jax.random.fold_in(key, 1), x0)
      fractions = lwd.mask_fraction_at_sigmas(x0, eps, log_sigmas, ell, channels)
      metrics = {lwd_metric_name(s): fractions[i] for i, s in enumerate(log_sigmas)}
    return loss, metrics

  return loss_fn


def autoencoder_loss_fn(graphdef: nnx.GraphDef, *, alpha: float, beta: float, lam: float,
                        scales: Sequence[int], mesh=None) -> LossFn:
  """``loss_fn(params, batch, key, constants=None) -> (loss, metrics)``: the scale-consistent
  autoencoder loss of Latent Wavelet Diffusion (arXiv:2506.00433, Eq. 1,
  :func:`phipd_jax.latent.scale_consistent_vae_loss`; ``key`` draws the pooling factor from
  ``scales``; ``constants['lpips']`` holds the LPIPS-VGG weights when ``lam > 0``).

  ``batch['image']``: float32 ``[B, H, W, 3]`` in ``[-1, 1]``. Metrics: ``rec_mse``,
  ``scale_mse``, ``kl``, ``lpips``, ``scale_s``.
  """
  weights = dict(alpha=float(alpha), beta=float(beta), lam=float(lam),
                 scales=tuple(int(s) for s in scales))
  constrain = batch_constraint(mesh)

  def loss_fn(params, batch, key, constants=None):
    model = nnx.merge(graphdef, params)
    encode = lambda x: tuple(constrain(v) for v in model.encode(constrain(x)))
    decode = lambda z: constrain(model.decode(constrain(z)))
    lpips_params = None if constants is None else constants['lpips']
    return latent.scale_consistent_vae_loss(constrain(batch['image']), encode, decode, key,
                                            lpips_params=lpips_params, **weights)

  return loss_fn
