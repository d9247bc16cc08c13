"""A spatio-temporal Diffusion Transformer for clips ``[B, T, H, W, C]``, in Flax NNX.

The image DiT (:mod:`phipd_jax.models.dit`; Peebles & Xie, arXiv:2212.09748) extended to video
the way Latte (Ma et al., *Latte: Latent Diffusion Transformer for Video Generation*,
arXiv:2401.03048) and Video LDM-style transformers do:

* **3-D patches**: a ``(pt, p, p)`` convolution with that stride turns the clip into
  ``T / pt`` frames of ``(H / p) x (W / p)`` tokens.
* **Positions**: the image DiT's 2-D sin-cos table on every frame plus a 1-D sin-cos table over
  the token frame index ``tau``, ``[sin(omega tau), cos(omega tau) - 1]``, which is zero at the
  first frame: a one-frame clip is an image to the model.
* **Attention**, ``attention='full'`` over all ``T' h w`` tokens of the clip, or
  ``'factorised'`` (Latte's variant 3 / "divided space-time" attention): each block attends
  within every frame, then, after its own adaLN-Zero-modulated LayerNorm, across frames at every
  token position (the temporal branch's gate starts at zero, so at initialisation frames do not
  interact, and an image DiT's weights give the per-frame model).
* The same adaLN-Zero blocks and final layer, with the image DiT's parameter names: an image
  DiT's weights load into the spatial part (the patch kernel gains a time axis of length ``pt``).

``model(x_t [B, T, H, W, C], t [B] in [0, 1] (0 = data end), y [B] int32 or None) ->
[B, T, H, W, out_channels]``; ``T`` must be a multiple of ``pt`` and ``H, W`` of ``p``.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax.models.dit import Attention, DiTBlock, FinalLayer, conditioning
from phipd_jax.models.layers import (Linear, TimestepEmbedder, call_block,
                                     check_attention_implementation, check_remat, modulate,
                                     sincos_positions_2d)

Array = jax.Array

VIDEO_ATTENTION = ('full', 'factorised')

_zeros = nnx.initializers.zeros_init()


def sincos_positions_time(frames: int, dim: int) -> Array:
  """Temporal sin-cos table ``[frames, dim]`` (float32) that is zero at frame 0:
  ``[sin(omega tau), cos(omega tau) - 1]`` with the 1-D frequencies of the spatial table.

  Raises:
    ValueError: ``dim`` odd.
  """
  if dim % 2:
    raise ValueError(f'sincos_positions_time: dim={dim} must be even')
  omega = 1.0 / 10000 ** (jnp.arange(dim // 2, dtype=jnp.float32) / (dim / 2.0))
  angle = jnp.arange(frames, dtype=jnp.float32)[:, None] * omega[None]
  return jnp.concatenate([jnp.sin(angle), jnp.cos(angle) - 1.0], axis=1)


class VideoDiTBlock(DiTBlock):
  """A DiT block over a clip's tokens ``[B, T', N, D]`` (module docstring).

  The image block's layers (:class:`phipd_jax.models.dit.DiTBlock`, DiT Fig. 3) under their
  names; ``'factorised'`` adds ``norm_time``, ``attn_time`` and ``adaln_time`` (shift, scale and
  a zero-initialised gate for the temporal attention).
  """

  def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, *,
               attention: str = 'full', dtype=jnp.float32, attention_impl: str = 'auto',
               rngs: nnx.Rngs):
    if attention not in VIDEO_ATTENTION:
      raise ValueError(f'model.attention={attention!r} must be one of {VIDEO_ATTENTION}')
    super().__init__(hidden, heads, mlp_ratio, dtype=dtype, attention_impl=attention_impl,
                     rngs=rngs)
    self.factorised = attention == 'factorised'
    if self.factorised:
      self.norm_time = nnx.LayerNorm(hidden, use_scale=False, use_bias=False, epsilon=1e-6,
                                     rngs=rngs)
      self.attn_time = Attention(hidden, heads, dtype=dtype, attention_impl=attention_impl,
                                 rngs=rngs)
      self.adaln_time = Linear(hidden, 3 * hidden, kernel_init=_zeros, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, c: Array) -> Array:
    batch, frames, tokens, hidden = x.shape
    x = x.reshape(batch, frames * tokens, hidden)
    (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp,
     gate_mlp) = jnp.split(self.adaln(nnx.silu(c)), 6, axis=-1)
    h = modulate(self.norm1(x), shift_msa, scale_msa)
    if self.factorised:  # Space: every frame on its own.
      h = self.attn(h.reshape(batch * frames, tokens, hidden)).reshape(x.shape)
    else:
      h = self.attn(h)
    x = x + gate_msa[:, None] * h
    if self.factorised:  # Time: every token position across frames.
      shift_t, scale_t, gate_t = jnp.split(self.adaln_time(nnx.silu(c)), 3, axis=-1)
      h = modulate(self.norm_time(x), shift_t, scale_t).reshape(batch, frames, tokens, hidden)
      h = h.transpose(0, 2, 1, 3).reshape(batch * tokens, frames, hidden)
      h = self.attn_time(h).reshape(batch, tokens, frames, hidden).transpose(0, 2, 1, 3)
      x = x + gate_t[:, None] * h.reshape(x.shape)
    h = nnx.gelu(self.mlp_in(modulate(self.norm2(x), shift_mlp, scale_mlp)), approximate=True)
    x = x + gate_mlp[:, None] * self.mlp_out(h)
    return x.reshape(batch, frames, tokens, hidden)


class VideoDiT(nnx.Module):
  """Spatio-temporal DiT over clips ``[B, T, H, W, C]`` (module docstring).

  Args:
    in_channels, patch_size, hidden, depth, heads, num_classes, out_channels, mlp_ratio, dtype,
      attention_impl, remat, time_frequency_shift: as :class:`phipd_jax.models.dit.DiT`.
    temporal_patch_size: ``pt``, frames per token; ``T`` must be a multiple of it.
    attention: ``'full'`` or ``'factorised'`` (:data:`VIDEO_ATTENTION`).
    rngs: NNX random streams for initialisation.

  Raises:
    ValueError: inconsistent sizes, an unknown ``attention``, ``attention_impl`` or ``remat``.
  """

  def __init__(self, *, in_channels: int, patch_size: int, hidden: int, depth: int, heads: int,
               temporal_patch_size: int = 1, attention: str = 'full', num_classes: int = 0,
               out_channels: Optional[int] = None, mlp_ratio: float = 4.0, dtype=jnp.float32,
               attention_impl: str = 'auto', remat: str = 'none', time_frequency_shift: int = 0,
               rngs: nnx.Rngs):
    check_attention_implementation(attention_impl)
    check_remat(remat)
    if attention not in VIDEO_ATTENTION:
      raise ValueError(f'model.attention={attention!r} must be one of {VIDEO_ATTENTION}')
    if hidden % heads or hidden % 4:
      raise ValueError(f'VideoDiT: hidden={hidden} must be divisible by heads={heads} and by 4')
    if patch_size < 1 or temporal_patch_size < 1:
      raise ValueError(f'VideoDiT: patch_size={patch_size} and temporal_patch_size='
                       f'{temporal_patch_size} must be >= 1')
    self.in_channels, self.patch_size, self.hidden = in_channels, patch_size, hidden
    self.temporal_patch_size, self.attention, self.remat = temporal_patch_size, attention, remat
    self.out_channels = out_channels or in_channels
    self.num_classes, self.dtype = num_classes, dtype
    kernel = (temporal_patch_size, patch_size, patch_size)
    self.patch_embed = nnx.Conv(
        in_channels, hidden, kernel, strides=kernel, padding='VALID', dtype=dtype,
        kernel_init=nnx.initializers.xavier_uniform(in_axis=(0, 1, 2, 3), out_axis=4),
        rngs=rngs)
    self.time_embed = TimestepEmbedder(hidden, frequency_shift=time_frequency_shift, dtype=dtype,
                                       rngs=rngs)
    if num_classes:
      self.label_embed = nnx.Embed(num_classes + 1, hidden,
                                   embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.blocks = nnx.List(
        [VideoDiTBlock(hidden, heads, mlp_ratio, attention=attention, dtype=dtype,
                       attention_impl=attention_impl, rngs=rngs) for _ in range(depth)])
    self.final = FinalLayer(hidden, patch_size, temporal_patch_size * self.out_channels,
                            dtype=dtype, rngs=rngs)

  @property
  def null_label(self) -> Optional[int]:
    """The label index meaning "no label" (``num_classes``), or None if unconditional."""
    return self.num_classes if self.num_classes else None

  def __call__(self, x_t: Array, t: Array, y: Optional[Array] = None) -> Array:
    pt, p = self.temporal_patch_size, self.patch_size
    if (x_t.ndim != 5 or x_t.shape[1] % pt or x_t.shape[2] % p or x_t.shape[3] % p
        or x_t.shape[4] != self.in_channels):
      raise ValueError(f'VideoDiT: input {x_t.shape} needs [B, T, H, W, C] with T divisible by '
                       f'temporal_patch_size={pt}, H, W by patch_size={p} and '
                       f'C={self.in_channels}')
    batch, frames, height, width, _ = x_t.shape
    grid_t, grid_h, grid_w = frames // pt, height // p, width // p
    tokens = self.patch_embed(x_t.astype(self.dtype)).reshape(
        batch, grid_t, grid_h * grid_w, self.hidden)
    positions = (sincos_positions_2d(grid_h, grid_w, self.hidden)[None]
                 + sincos_positions_time(grid_t, self.hidden)[:, None])
    tokens = tokens + positions.astype(self.dtype)
    c = conditioning(self, t, y, batch)
    for block in self.blocks:
      tokens = call_block(block, self.remat, tokens, c)
    out = self.final(tokens.reshape(batch, grid_t * grid_h * grid_w, self.hidden), c)
    return unpatchify_3d(out, grid_t, grid_h, grid_w, pt, p).astype(jnp.float32)


def unpatchify_3d(tokens: Array, grid_t: int, grid_h: int, grid_w: int, temporal_patch_size: int,
                  patch_size: int) -> Array:
  """``[B, T' h w, p * p * pt * C]`` -> ``[B, T' pt, h p, w p, C]``.

  Tokens are frame-major, then row-major; each token's values are ordered ``(row, column,
  frame, channel)`` within its ``(pt, p, p)`` patch, so with ``pt = 1`` this is the image DiT's
  :func:`phipd_jax.models.layers.unpatchify` on every frame.
  """
  batch, pt, p = tokens.shape[0], temporal_patch_size, patch_size
  channels = tokens.shape[-1] // (p * p * pt)
  out = tokens.reshape(batch, grid_t, grid_h, grid_w, p, p, pt, channels)
  out = out.transpose(0, 1, 6, 2, 4, 3, 5, 7)
  return out.reshape(batch, grid_t * pt, grid_h * p, grid_w * p, channels)
