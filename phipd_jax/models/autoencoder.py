"""A small KL-regularised convolutional autoencoder (SD-VAE-like), in Flax NNX.

Source: the ``AutoencoderKL`` of Rombach et al., *High-Resolution Image Synthesis with Latent
Diffusion Models*, CVPR 2022 (arXiv:2112.10752), Sec. 3 and App. G, shrunk for CPU runs: a 3x3
conv stem, per level ``blocks_per_level`` residual blocks (GroupNorm -> SiLU -> 3x3 conv, twice,
with a 1x1 shortcut when the width changes), stride-2 3x3 convs to downsample (right/bottom
zero padding, as upstream), one middle residual block, and GroupNorm -> SiLU -> 3x3 conv to
``2 * latent_channels`` (posterior mean and log-variance). The decoder mirrors it with
nearest-neighbour 2x upsampling followed by a 3x3 conv. Differences from upstream: no attention
in the middle block, no 1x1 ``quant_conv``/``post_quant_conv``, and the decoder has
``blocks_per_level`` (not ``blocks_per_level + 1``) blocks per level.

Layout NHWC, float32 in and out: ``encode(x [B, H, W, in_channels] in [-1, 1]) -> (mean, logvar)``
each ``[B, H/f, W/f, latent_channels]``; ``decode(z) -> x_hat [B, H, W, in_channels]``;
``model(x) = decode(mean)`` (Latent Wavelet Diffusion finetunes and encodes with the posterior
mean, no sampling). ``f = downsample`` is 4 or 8; ``H`` and ``W`` must be multiples of it.

Parameter counts (``in_channels=3``, ``latent_channels=4``): 'tiny' 0.83M at f=8, 0.61M at f=4;
'base' 15.3M at f=8, 9.4M at f=4.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

# name -> (channels per level at f=8, residual blocks per level). f=4 uses the first three
# levels (as the LDM kl-f4 autoencoder drops the last level of kl-f8).
AUTOENCODER_SIZES = {
    'tiny': ((32, 64, 64, 64), 1),
    'base': ((64, 128, 256, 256), 2),
}
DOWNSAMPLE_FACTORS = (4, 8)
LOGVAR_RANGE = (-30.0, 20.0)  # Upstream DiagonalGaussianDistribution clamps the log-variance.


def latent_shape(model, image_shape: Sequence[int]) -> Tuple[int, ...]:
  """``(..., H, W, C) -> (..., H/f, W/f, latent_channels)`` of an autoencoder ``model`` (its
  ``in_channels``, ``downsample`` and ``latent_channels``).

  Raises:
    ValueError: fewer than 3 dimensions, ``C`` other than ``in_channels``, or ``H`` / ``W`` not
      divisible by ``f = downsample``.
  """
  image_shape = tuple(int(d) for d in image_shape)
  f = model.downsample
  if len(image_shape) < 3 or image_shape[-1] != model.in_channels or (
      image_shape[-3] % f or image_shape[-2] % f):
    raise ValueError(
        f'{type(model).__name__}: image size {image_shape} needs (..., H, W, '
        f'C={model.in_channels}) with H and W divisible by downsample f={f}')
  return image_shape[:-3] + (image_shape[-3] // f, image_shape[-2] // f, model.latent_channels)


def _num_groups(channels: int) -> int:
  """GroupNorm groups: 32 as upstream for wide layers, at least 4 channels a group when thin."""
  groups = max(1, min(32, channels // 4))
  while channels % groups:
    groups -= 1
  return groups


def _lecun_normal(key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array:
  """Flax's default ``lecun_normal`` (truncated normal, variance ``1 / fan_in``) drawn flat.

  For ``[kh, kw, in, out]`` kernels this gives the values of ``nnx.initializers.lecun_normal()``
  (up to float rounding, with JAX's default partitionable threefry); the draw is 1-D and reshaped
  because XLA:CPU compiles a rank-4 RNG program about 3x slower, which dominated building the
  model on CPU (one compile per kernel shape).
  """
  fan_in = math.prod(shape[:-1])
  std = 1.0 / math.sqrt(fan_in) / 0.87962566103423978  # Std of N(0, 1) truncated to [-2, 2].
  flat = jax.random.truncated_normal(key, -2.0, 2.0, (math.prod(shape),), jnp.float32)
  return (std * flat).reshape(shape).astype(dtype)


def _conv(in_features: int, out_features: int, kernel: int, *, strides: int = 1, padding='SAME',
          dtype, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(in_features, out_features, (kernel, kernel), strides=(strides, strides),
                  padding=padding, dtype=dtype, kernel_init=_lecun_normal, rngs=rngs)


def _norm(channels: int, *, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
  return nnx.GroupNorm(channels, num_groups=_num_groups(channels), epsilon=1e-6, dtype=dtype,
                       rngs=rngs)


class ResBlock(nnx.Module):
  """``x + conv(silu(norm(conv(silu(norm(x))))))`` with a 1x1 shortcut when widths differ."""

  def __init__(self, in_channels: int, out_channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.norm1 = _norm(in_channels, dtype=dtype, rngs=rngs)
    self.conv1 = _conv(in_channels, out_channels, 3, dtype=dtype, rngs=rngs)
    self.norm2 = _norm(out_channels, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(out_channels, out_channels, 3, dtype=dtype, rngs=rngs)
    self.shortcut = (_conv(in_channels, out_channels, 1, dtype=dtype, rngs=rngs)
                     if in_channels != out_channels else None)

  def __call__(self, x: Array) -> Array:
    h = self.conv1(nnx.silu(self.norm1(x)))
    h = self.conv2(nnx.silu(self.norm2(h)))
    return h + (x if self.shortcut is None else self.shortcut(x))


class Downsample(nnx.Module):
  """3x3 stride-2 conv after zero-padding one row/column at the bottom/right: ``H -> H/2``."""

  def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = _conv(channels, channels, 3, strides=2, padding=((0, 1), (0, 1)), dtype=dtype,
                      rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return self.conv(x)


class Upsample(nnx.Module):
  """Nearest-neighbour 2x upsampling, then a 3x3 conv: ``H -> 2H``."""

  def __init__(self, channels: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = _conv(channels, channels, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class Autoencoder(nnx.Module):
  """KL-regularised convolutional autoencoder with spatial downsampling ``f``.

  Args:
    in_channels: image channels ``C``.
    latent_channels: latent channels.
    downsample: ``f``, 4 or 8 (``log2 f`` stride-2 stages).
    channels: widths per level, ``log2(f) + 1`` entries (the last is the bottleneck width).
    blocks_per_level: residual blocks per level in the encoder and in the decoder.
    dtype: compute dtype (parameters are float32; outputs are float32).
    rngs: NNX random streams for initialisation.

  Raises:
    ValueError: ``downsample`` not in (4, 8), ``len(channels) != log2(downsample) + 1``, or a
      non-positive size.
  """

  def __init__(self, *, in_channels: int = 3, latent_channels: int = 4, downsample: int = 8,
               channels: Sequence[int] = (32, 64, 64, 64), blocks_per_level: int = 1,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if downsample not in DOWNSAMPLE_FACTORS:
      raise ValueError(f'Autoencoder: downsample={downsample} must be one of '
                       f'{DOWNSAMPLE_FACTORS}')
    levels = int(math.log2(downsample)) + 1
    channels = tuple(int(c) for c in channels)
    if len(channels) != levels:
      raise ValueError(f'Autoencoder: channels={channels} needs log2(downsample)+1={levels} '
                       f'entries for downsample={downsample}')
    if min(channels + (in_channels, latent_channels, blocks_per_level)) < 1:
      raise ValueError(f'Autoencoder: sizes must be >= 1, got in_channels={in_channels}, '
                       f'latent_channels={latent_channels}, channels={channels}, '
                       f'blocks_per_level={blocks_per_level}')
    self.in_channels, self.latent_channels = in_channels, latent_channels
    self.downsample, self.channels, self.dtype = downsample, channels, dtype
    kw = dict(dtype=dtype, rngs=rngs)

    # Encoder: stem, then per level: blocks (to the level's width) and a stride-2 conv.
    self.enc_in = _conv(in_channels, channels[0], 3, **kw)
    enc, width = [], channels[0]
    for level, out in enumerate(channels):
      for _ in range(blocks_per_level):
        enc.append(ResBlock(width, out, **kw))
        width = out
      if level < levels - 1:
        enc.append(Downsample(width, **kw))
    self.enc_blocks = nnx.List(enc)
    self.enc_mid = ResBlock(width, width, **kw)
    self.enc_norm = _norm(width, **kw)
    self.enc_out = _conv(width, 2 * latent_channels, 3, **kw)

    # Decoder: the mirror image, nearest upsampling + conv in place of the stride-2 convs.
    self.dec_in = _conv(latent_channels, width, 3, **kw)
    self.dec_mid = ResBlock(width, width, **kw)
    dec = []
    for level in reversed(range(levels)):
      for _ in range(blocks_per_level):
        dec.append(ResBlock(width, channels[level], **kw))
        width = channels[level]
      if level > 0:
        dec.append(Upsample(width, **kw))
    self.dec_blocks = nnx.List(dec)
    self.dec_norm = _norm(width, **kw)
    self.dec_out = _conv(width, in_channels, 3, **kw)

  def latent_shape(self, image_shape: Sequence[int]) -> Tuple[int, ...]:
    """``(..., H, W, C) -> (..., H/f, W/f, latent_channels)``; ValueError as :meth:`encode`."""
    return latent_shape(self, image_shape)

  def encode(self, x: Array) -> Tuple[Array, Array]:
    """Posterior ``q(z|x) = N(mean, exp(logvar))``.

    Args:
      x: float ``[B, H, W, in_channels]`` in ``[-1, 1]``; ``H, W`` multiples of ``f``.

    Returns:
      ``(mean, logvar)``, float32 ``[B, H/f, W/f, latent_channels]`` each; ``logvar`` is clamped
      to ``[-30, 20]`` as upstream.

    Raises:
      ValueError: wrong rank or channels, or ``H``/``W`` not divisible by ``f``.
    """
    if x.ndim != 4:
      raise ValueError(f'Autoencoder.encode: input {x.shape} must be [B, H, W, C]')
    self.latent_shape(x.shape)
    h = self.enc_in(x.astype(self.dtype))
    for block in self.enc_blocks:
      h = block(h)
    h = self.enc_out(nnx.silu(self.enc_norm(self.enc_mid(h)))).astype(jnp.float32)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, jnp.clip(logvar, *LOGVAR_RANGE)

  def decode(self, z: Array) -> Array:
    """``z [B, h, w, latent_channels] -> x_hat`` float32 ``[B, f h, f w, in_channels]``.

    Raises:
      ValueError: ``z`` is not ``[B, h, w, latent_channels]``.
    """
    if z.ndim != 4 or z.shape[-1] != self.latent_channels:
      raise ValueError(f'Autoencoder.decode: latent {z.shape} must be [B, h, w, '
                       f'{self.latent_channels}]')
    h = self.dec_mid(self.dec_in(z.astype(self.dtype)))
    for block in self.dec_blocks:
      h = block(h)
    return self.dec_out(nnx.silu(self.dec_norm(h))).astype(jnp.float32)

  def __call__(self, x: Array) -> Array:
    """Reconstruction through the posterior mean: ``decode(encode(x)[0])``."""
    return self.decode(self.encode(x)[0])


def autoencoder(size: str, *, in_channels: int = 3, latent_channels: int = 4, downsample: int = 8,
                dtype=jnp.float32, rngs: nnx.Rngs) -> Autoencoder:
  """An :class:`Autoencoder` of a named size from :data:`AUTOENCODER_SIZES`.

  ``'tiny'`` is for CPU runs, ``'base'`` for accelerators. At ``downsample=4`` the first three
  levels of the size's widths are used.

  Raises:
    ValueError: unknown size, or ``downsample`` not in (4, 8).
  """
  if size not in AUTOENCODER_SIZES:
    raise ValueError(f'autoencoder: size={size!r} must be one of {sorted(AUTOENCODER_SIZES)}')
  if downsample not in DOWNSAMPLE_FACTORS:
    raise ValueError(f'autoencoder: downsample={downsample} must be one of {DOWNSAMPLE_FACTORS}')
  channels, blocks = AUTOENCODER_SIZES[size]
  levels = int(math.log2(downsample)) + 1
  return Autoencoder(in_channels=in_channels, latent_channels=latent_channels,
                     downsample=downsample, channels=channels[:levels], blocks_per_level=blocks,
                     dtype=dtype, rngs=rngs)
