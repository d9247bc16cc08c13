"""The Stable Diffusion KL autoencoder (SD 1.x, SDXL, SD3, FLUX VAE) in Flax NNX.

Source: the ``AutoencoderKL`` of Rombach et al., *High-Resolution Image Synthesis with Latent
Diffusion Models*, CVPR 2022 (arXiv:2112.10752), in the module layout of diffusers'
``AutoencoderKL`` (``diffusers/models/autoencoders/autoencoder_kl.py`` with ``Encoder`` /
``Decoder`` of ``vae.py``, ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` / ``UNetMidBlock2D`` of
``unet_2d_blocks.py``, ``ResnetBlock2D``, ``Downsample2D``, ``Upsample2D`` and the mid-block
``Attention``), so that :mod:`phipd_jax.convert.vae` fills it from a diffusers state dict and the
outputs equal diffusers' (``tests/models/test_autoencoder_kl.py`` checks 1e-4 relative).

Architecture (``L = len(block_out_channels)`` levels, ``f = 2 ** (L - 1)``), every GroupNorm with
``norm_num_groups`` groups and eps 1e-6, every activation SiLU:

- encoder: 3x3 conv to ``block_out_channels[0]``; per level ``layers_per_block`` residual blocks
  (``norm1 -> silu -> conv1 -> norm2 -> silu -> conv2``, plus a 1x1 ``conv_shortcut`` when the
  width changes) and, except at the last level, a downsampler (zero-pad one row / column at the
  bottom / right, 3x3 stride-2 conv without padding); a middle block (residual block, attention,
  residual block); GroupNorm -> SiLU -> 3x3 conv to ``2 * latent_channels`` (mean and
  log-variance); optional 1x1 ``quant_conv``.
- decoder: optional 1x1 ``post_quant_conv``; 3x3 conv to ``block_out_channels[-1]``; a middle
  block; per level, widest first, ``layers_per_block + 1`` residual blocks and, except at the
  last level, nearest-neighbour 2x upsampling followed by a 3x3 conv; GroupNorm -> SiLU -> 3x3
  conv to ``out_channels``.
- middle-block attention: one head of width ``C`` (diffusers sets ``attention_head_dim`` to the
  width) over the ``H * W`` tokens: GroupNorm, linear ``to_q`` / ``to_k`` / ``to_v``, softmax of
  ``q k^T / sqrt(C)`` (in float32), linear ``to_out``, plus the input (``residual_connection``;
  ``rescale_output_factor`` is 1). The score matrix is ``[B, H W, H W]`` float32 (1 GiB per image
  for a 1024x1024 image at ``f = 8``).

Layout NHWC, float32 in and out: ``encode(x [B, H, W, in_channels] in [-1, 1]) -> (mean,
logvar)`` each ``[B, H/f, W/f, latent_channels]`` (``logvar`` clamped to ``[-30, 20]`` as
diffusers' ``DiagonalGaussianDistribution``); ``decode(z [B, h, w, latent_channels]) -> x_hat
[B, f h, f w, out_channels]`` (about ``[-1, 1]`` for a trained model; not clipped);
``model(x) = decode(mean)``. ``H`` and ``W`` must be multiples of ``f``. The latent-diffusion
scaling (``(z - shift_factor) * scaling_factor``) is not applied here:
:data:`AUTOENCODER_KL_PRESETS` and :func:`phipd_jax.convert.vae.scaling_and_shift` give the
numbers.

Errors: the constructor raises ``ValueError`` for empty or non-positive sizes and for widths that
``norm_num_groups`` does not divide; ``encode`` / ``decode`` / ``latent_shape`` raise
``ValueError`` for a wrong rank, channel count, or a size not divisible by ``f``.

Numerics: on CPU the float32 outputs match diffusers' float32 outputs to about 3e-6 relative
(max error / max value; measured on small random models). On GPUs XLA's default float32 matmul /
conv precision may use TF32 (not measured here); ``jax.default_matmul_precision('highest')``
asks for full float32.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax.models.autoencoder import _lecun_normal, latent_shape as _latent_shape

Array = jax.Array

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamps the log-variance.
NORM_EPS = 1e-6  # Every GroupNorm of diffusers' VAE Encoder / Decoder (resnet_eps=1e-6).

# The diffusers configs of well-known VAEs: constructor kwargs of AutoencoderKL plus the latent
# scaling (a diffusion model sees (z - shift_factor) * scaling_factor). All four share the
# architecture of the LDM kl-f8 autoencoder (128 * (1, 2, 4, 4) widths, 2 blocks a level, one
# mid-block attention, 32 groups); they differ in latent channels and the 1x1 quant convs.
# Sources (checked 2025): scaling factors of 'sd', 'sdxl' and 'flux' and FLUX's shift factor are
# listed in diffusers' own `utils/remote_utils.py` docstring (SD v1 0.18215, SD XL 0.13025,
# Flux 0.3611 / 0.1159; 0.18215 is also diffusers' AutoencoderKL default and
# `LDM_VAE_DEFAULT_SCALING_FACTOR`). The SD3 numbers (1.5305 / 0.0609, 16 channels, no quant
# convs) are those of the stabilityai/stable-diffusion-3-medium `vae/config.json` as reproduced
# by SD3 re-implementations (e.g. sglang's StableDiffusion3VAEArchConfig); FLUX's 16 channels,
# (1, 2, 4, 4) * 128 widths and missing quant convs are those of black-forest-labs/flux
# `AutoEncoderParams` (z_channels=16, ch_mult=[1, 2, 4, 4], scale 0.3611, shift 0.1159) and of
# the black-forest-labs/FLUX.1-dev `vae/config.json` (use_quant_conv / use_post_quant_conv false).
_KL_F8 = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, norm_num_groups=32, mid_block_add_attention=True)
AUTOENCODER_KL_PRESETS = {
    # SD 1.x (CompVis/stable-diffusion-v1-4 `vae`, stabilityai/sd-vae-ft-ema / -mse).
    'sd': dict(_KL_F8, latent_channels=4, use_quant_conv=True, use_post_quant_conv=True,
               scaling_factor=0.18215, shift_factor=0.0),
    # SDXL (stabilityai/sdxl-vae, stable-diffusion-xl-base-1.0 `vae`): same layout, retrained.
    'sdxl': dict(_KL_F8, latent_channels=4, use_quant_conv=True, use_post_quant_conv=True,
                 scaling_factor=0.13025, shift_factor=0.0),
    # SD3 / SD3.5 (stabilityai/stable-diffusion-3-medium `vae`).
    'sd3': dict(_KL_F8, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                scaling_factor=1.5305, shift_factor=0.0609),
    # FLUX.1 dev / schnell (black-forest-labs/FLUX.1-dev `vae`).
    'flux': dict(_KL_F8, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                 scaling_factor=0.3611, shift_factor=0.1159),
}
# The preset keys that are not AutoencoderKL constructor arguments.
PRESET_SCALING_KEYS = ('scaling_factor', 'shift_factor')


def _conv(in_features: int, out_features: int, kernel: int, *, strides: int = 1, padding='SAME',
          dtype, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(in_features, out_features, (kernel, kernel), strides=(strides, strides),
                  padding=padding, dtype=dtype, kernel_init=_lecun_normal, rngs=rngs)


def _linear(in_features: int, out_features: int, *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(in_features, out_features, dtype=dtype, kernel_init=_lecun_normal, rngs=rngs)


def _norm(channels: int, groups: int, *, dtype, rngs: nnx.Rngs) -> nnx.GroupNorm:
  # use_fast_variance=False: var = E[(x - mean)^2] as torch computes it, not E[x^2] - mean^2,
  # which loses digits on the large activations of trained VAE decoders.
  return nnx.GroupNorm(channels, num_groups=groups, epsilon=NORM_EPS, use_fast_variance=False,
                       dtype=dtype, rngs=rngs)


class ResnetBlock(nnx.Module):
  """diffusers ``ResnetBlock2D`` without time embedding: ``shortcut(x) + conv2(silu(norm2(
  conv1(silu(norm1(x))))))``, the shortcut a 1x1 conv when the width changes. ``[B, H, W,
  in_channels] -> [B, H, W, out_channels]``."""

  def __init__(self, in_channels: int, out_channels: int, groups: int, *, dtype, rngs: nnx.Rngs):
    self.norm1 = _norm(in_channels, groups, dtype=dtype, rngs=rngs)
    self.conv1 = _conv(in_channels, out_channels, 3, dtype=dtype, rngs=rngs)
    self.norm2 = _norm(out_channels, groups, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(out_channels, out_channels, 3, dtype=dtype, rngs=rngs)
    self.conv_shortcut = (_conv(in_channels, out_channels, 1, dtype=dtype, rngs=rngs)
                          if in_channels != out_channels else None)

  def __call__(self, x: Array) -> Array:
    h = self.conv1(nnx.silu(self.norm1(x)))
    h = self.conv2(nnx.silu(self.norm2(h)))
    return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h



class Downsample(nnx.Module):
  """diffusers ``Downsample2D(padding=0)``: zero-pad one row / column at the bottom / right, then
  a 3x3 stride-2 conv without padding. ``[B, H, W, C] -> [B, H/2, W/2, C]`` (``H, W`` even)."""

  def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
    self.conv = _conv(channels, channels, 3, strides=2, padding=((0, 1), (0, 1)), dtype=dtype,
                      rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return self.conv(x)


class Upsample(nnx.Module):
  """diffusers ``Upsample2D(use_conv=True)``: nearest-neighbour 2x, then a 3x3 conv.
  ``[B, H, W, C] -> [B, 2H, 2W, C]``."""

  def __init__(self, channels: int, *, dtype, rngs: nnx.Rngs):
    self.conv = _conv(channels, channels, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class Attention(nnx.Module):
  """The VAE mid-block attention: one head over the ``H * W`` tokens, with a GroupNorm before the
  projections and the input added back. ``[B, H, W, C] -> [B, H, W, C]``."""

  def __init__(self, channels: int, groups: int, *, dtype, rngs: nnx.Rngs):
    self.dtype = dtype
    self.group_norm = _norm(channels, groups, dtype=dtype, rngs=rngs)
    self.to_q = _linear(channels, channels, dtype=dtype, rngs=rngs)
    self.to_k = _linear(channels, channels, dtype=dtype, rngs=rngs)
    self.to_v = _linear(channels, channels, dtype=dtype, rngs=rngs)
    self.to_out = _linear(channels, channels, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b, height, width, c = x.shape
    h = self.group_norm(x).reshape(b, height * width, c)
    q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
    scores = jnp.einsum('bqc,bkc->bqk', q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(scores * (1.0 / math.sqrt(c)), axis=-1).astype(v.dtype)
    out = self.to_out(jnp.einsum('bqk,bkc->bqc', weights, v))
    return x + out.reshape(b, height, width, c).astype(x.dtype)


class MidBlock(nnx.Module):
  """diffusers ``UNetMidBlock2D`` (one layer): residual block, attention (when ``add_attention``),
  residual block, all at width ``channels``."""

  def __init__(self, channels: int, groups: int, add_attention: bool, *, dtype, rngs: nnx.Rngs):
    self.resnets = nnx.List([ResnetBlock(channels, channels, groups, dtype=dtype, rngs=rngs)
                             for _ in range(2)])
    self.attention = (Attention(channels, groups, dtype=dtype, rngs=rngs) if add_attention
                      else None)

  def __call__(self, x: Array) -> Array:
    x = self.resnets[0](x)
    if self.attention is not None:
      x = self.attention(x)
    return self.resnets[1](x)


class DownBlock(nnx.Module):
  """diffusers ``DownEncoderBlock2D``: ``num_layers`` residual blocks, then an optional
  :class:`Downsample`."""

  def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int,
               add_downsample: bool, *, dtype, rngs: nnx.Rngs):
    self.resnets = nnx.List([
        ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups, dtype=dtype,
                    rngs=rngs) for i in range(num_layers)])
    self.downsample = Downsample(out_channels, dtype=dtype, rngs=rngs) if add_downsample else None

  def __call__(self, x: Array) -> Array:
    for resnet in self.resnets:
      x = resnet(x)
    return x if self.downsample is None else self.downsample(x)


class UpBlock(nnx.Module):
  """diffusers ``UpDecoderBlock2D``: ``num_layers`` residual blocks, then an optional
  :class:`Upsample`."""

  def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int,
               add_upsample: bool, *, dtype, rngs: nnx.Rngs):
    self.resnets = nnx.List([
        ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups, dtype=dtype,
                    rngs=rngs) for i in range(num_layers)])
    self.upsample = Upsample(out_channels, dtype=dtype, rngs=rngs) if add_upsample else None

  def __call__(self, x: Array) -> Array:
    for resnet in self.resnets:
      x = resnet(x)
    return x if self.upsample is None else self.upsample(x)


class Encoder(nnx.Module):
  """diffusers ``vae.Encoder`` with ``double_z=True``: ``[B, H, W, in_channels] -> [B, H/f, W/f,
  2 * latent_channels]`` (before ``quant_conv``)."""

  def __init__(self, in_channels: int, latent_channels: int, block_out_channels: Sequence[int],
               layers_per_block: int, groups: int, add_attention: bool, *, dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, rngs=rngs)
    self.conv_in = _conv(in_channels, block_out_channels[0], 3, **kw)
    blocks, width = [], block_out_channels[0]
    for i, out in enumerate(block_out_channels):
      blocks.append(DownBlock(width, out, layers_per_block, groups,
                              i < len(block_out_channels) - 1, **kw))
      width = out
    self.down_blocks = nnx.List(blocks)
    self.mid_block = MidBlock(width, groups, add_attention, **kw)
    self.conv_norm_out = _norm(width, groups, **kw)
    self.conv_out = _conv(width, 2 * latent_channels, 3, **kw)

  def __call__(self, x: Array) -> Array:
    h = self.conv_in(x)
    for block in self.down_blocks:
      h = block(h)
    h = self.mid_block(h)
    return self.conv_out(nnx.silu(self.conv_norm_out(h)))


class Decoder(nnx.Module):
  """diffusers ``vae.Decoder`` (group norm): ``[B, h, w, latent_channels] -> [B, f h, f w,
  out_channels]`` (after ``post_quant_conv``)."""

  def __init__(self, latent_channels: int, out_channels: int, block_out_channels: Sequence[int],
               layers_per_block: int, groups: int, add_attention: bool, *, dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, rngs=rngs)
    widths = tuple(reversed(block_out_channels))
    self.conv_in = _conv(latent_channels, widths[0], 3, **kw)
    self.mid_block = MidBlock(widths[0], groups, add_attention, **kw)
    blocks, width = [], widths[0]
    for i, out in enumerate(widths):
      blocks.append(UpBlock(width, out, layers_per_block + 1, groups, i < len(widths) - 1, **kw))
      width = out
    self.up_blocks = nnx.List(blocks)
    self.conv_norm_out = _norm(width, groups, **kw)
    self.conv_out = _conv(width, out_channels, 3, **kw)

  def __call__(self, z: Array) -> Array:
    h = self.mid_block(self.conv_in(z))
    for block in self.up_blocks:
      h = block(h)
    return self.conv_out(nnx.silu(self.conv_norm_out(h)))


class AutoencoderKL(nnx.Module):
  """diffusers' ``AutoencoderKL`` (the SD / SDXL / SD3 / FLUX VAE), NHWC.

  The submodules mirror diffusers' names (``encoder.down_blocks[i].resnets[j].conv1``, ...;
  ``downsample`` / ``upsample`` / ``attention`` / ``to_out`` stand for diffusers'
  ``downsamplers.0`` / ``upsamplers.0`` / ``attentions.0`` / ``to_out.0``), so
  :func:`phipd_jax.convert.vae.convert_autoencoder_kl` maps a diffusers state dict onto it.

  Args:
    in_channels: image channels ``C`` of the encoder input.
    out_channels: image channels of the decoder output.
    latent_channels: latent channels.
    block_out_channels: widths per level; ``f = 2 ** (len - 1)``.
    layers_per_block: residual blocks per encoder level (the decoder has one more).
    norm_num_groups: GroupNorm groups; must divide every width.
    use_quant_conv: a 1x1 conv on the encoder's ``2 * latent_channels`` output.
    use_post_quant_conv: a 1x1 conv on the latent before the decoder.
    mid_block_add_attention: attention in the encoder and decoder middle blocks.
    dtype: compute dtype (parameters are float32; outputs are float32).
    rngs: NNX random streams for initialisation.

  Raises:
    ValueError: empty ``block_out_channels``, a size below 1, or a width not divisible by
      ``norm_num_groups``.
  """

  def __init__(self, *, in_channels: int = 3, out_channels: int = 3, latent_channels: int = 4,
               block_out_channels: Sequence[int] = (128, 256, 512, 512),
               layers_per_block: int = 2, norm_num_groups: int = 32, use_quant_conv: bool = True,
               use_post_quant_conv: bool = True, mid_block_add_attention: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    block_out_channels = tuple(int(c) for c in block_out_channels)
    sizes = dict(in_channels=in_channels, out_channels=out_channels,
                 latent_channels=latent_channels, layers_per_block=layers_per_block,
                 norm_num_groups=norm_num_groups)
    if not block_out_channels or min(block_out_channels + tuple(sizes.values())) < 1:
      raise ValueError(f'AutoencoderKL: sizes must be >= 1 and block_out_channels non-empty, got '
                       f'block_out_channels={block_out_channels}, '
                       + ', '.join(f'{k}={v}' for k, v in sizes.items()))
    bad = [c for c in block_out_channels if c % norm_num_groups]
    if bad:
      raise ValueError(f'AutoencoderKL: norm_num_groups={norm_num_groups} must divide every width '
                       f'of block_out_channels={block_out_channels} (not {bad})')
    self.in_channels, self.out_channels = int(in_channels), int(out_channels)
    self.latent_channels = int(latent_channels)
    self.block_out_channels = block_out_channels
    self.downsample = 2 ** (len(block_out_channels) - 1)
    self.dtype = dtype
    kw = dict(dtype=dtype, rngs=rngs)
    arch = (block_out_channels, int(layers_per_block), int(norm_num_groups),
            bool(mid_block_add_attention))
    self.encoder = Encoder(self.in_channels, self.latent_channels, *arch, **kw)
    self.decoder = Decoder(self.latent_channels, self.out_channels, *arch, **kw)
    self.quant_conv = (_conv(2 * latent_channels, 2 * latent_channels, 1, **kw) if use_quant_conv
                       else None)
    self.post_quant_conv = (_conv(latent_channels, latent_channels, 1, **kw)
                            if use_post_quant_conv else None)

  def latent_shape(self, image_shape: Sequence[int]) -> Tuple[int, ...]:
    """``(..., H, W, in_channels) -> (..., H/f, W/f, latent_channels)``.

    Raises:
      ValueError: fewer than 3 dimensions, a channel count other than ``in_channels``, or ``H`` /
        ``W`` not divisible by ``f = downsample``.
    """
    return _latent_shape(self, image_shape)

  def encode(self, x: Array) -> Tuple[Array, Array]:
    """Posterior ``q(z|x) = N(mean, exp(logvar))`` (diffusers ``encode(x).latent_dist``).

    Args:
      x: float ``[B, H, W, in_channels]`` in ``[-1, 1]``; ``H, W`` multiples of ``f``.

    Returns:
      ``(mean, logvar)``, float32 ``[B, H/f, W/f, latent_channels]`` each (after ``quant_conv``
      when used); ``logvar`` is clamped to ``[-30, 20]``.

    Raises:
      ValueError: wrong rank or channels, or ``H`` / ``W`` not divisible by ``f``.
    """
    if x.ndim != 4:
      raise ValueError(f'AutoencoderKL.encode: input {x.shape} must be [B, H, W, C]')
    self.latent_shape(x.shape)
    h = self.encoder(x.astype(self.dtype))
    if self.quant_conv is not None:
      h = self.quant_conv(h)
    mean, logvar = jnp.split(h.astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, *LOGVAR_RANGE)

  def decode(self, z: Array) -> Array:
    """``z [B, h, w, latent_channels] -> x_hat`` float32 ``[B, f h, f w, out_channels]``
    (diffusers ``decode(z).sample``; unscaled latents, not clipped).

    Raises:
      ValueError: ``z`` is not ``[B, h, w, latent_channels]``.
    """
    if z.ndim != 4 or z.shape[-1] != self.latent_channels:
      raise ValueError(f'AutoencoderKL.decode: latent {z.shape} must be [B, h, w, '
                       f'{self.latent_channels}]')
    z = z.astype(self.dtype)
    if self.post_quant_conv is not None:
      z = self.post_quant_conv(z)
    return self.decoder(z).astype(jnp.float32)

  def __call__(self, x: Array) -> Array:
    """Reconstruction through the posterior mean: ``decode(encode(x)[0])``."""
    return self.decode(self.encode(x)[0])


def preset_kwargs(name: str) -> dict:
  """The :class:`AutoencoderKL` constructor kwargs of a preset in :data:`AUTOENCODER_KL_PRESETS`
  (without ``scaling_factor`` / ``shift_factor``).

  Raises:
    ValueError: unknown preset.
  """
  if name not in AUTOENCODER_KL_PRESETS:
    raise ValueError(f'AutoencoderKL preset {name!r} must be one of '
                     f'{sorted(AUTOENCODER_KL_PRESETS)}')
  return {k: v for k, v in AUTOENCODER_KL_PRESETS[name].items() if k not in PRESET_SCALING_KEYS}


def autoencoder_kl(preset: str, *, dtype=jnp.float32, rngs: Optional[nnx.Rngs] = None
                   ) -> AutoencoderKL:
  """A randomly initialised :class:`AutoencoderKL` with a preset's architecture (fill it with
  :func:`phipd_jax.convert.vae.convert_autoencoder_kl`); ``rngs`` defaults to ``nnx.Rngs(0)``.

  Raises:
    ValueError: unknown preset.
  """
  return AutoencoderKL(**preset_kwargs(preset), dtype=dtype,
                       rngs=rngs if rngs is not None else nnx.Rngs(0))
