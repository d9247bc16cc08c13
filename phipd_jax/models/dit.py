"""Diffusion Transformer (DiT) with adaLN-Zero, in Flax NNX.

Source: Peebles & Xie, *Scalable Diffusion Models with Transformers*, ICCV 2023
(arXiv:2212.09748), Sec. 3 and Table 1; reference code `facebookresearch/DiT` `models.py`.

Input and output are NHWC: ``model(x_t [B, H, W, C], t [B] float32 in [0, 1] (0 = data end),
y [B] int32 or None) -> [B, H, W, out_channels]``. The prediction type (v, x or eps) is config of
the diffusion code, not of the model. ``H`` and ``W`` must be multiples of the patch size; the
2-D sin-cos positions are computed for the input's token grid, so one model runs at any such size.

Parameter counts match the DiT paper at its latent configuration (32x32x4 input, ``learn_sigma``
output of 8 channels, 1000 classes): S/2 33.0M, B/2 130.5M, L/2 458M, XL/2 675M; the fixed
positional table is not a parameter here (upstream stores it as a frozen parameter).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

# The shared layers are re-exported here (``from phipd_jax.models.dit import modulate`` works).
from phipd_jax.models.layers import (Linear, TimestepEmbedder, attention, call_block,
                                     check_attention_implementation, check_input, check_remat,
                                     modulate, sincos_positions_2d, timestep_embedding,
                                     unpatchify)

Array = jax.Array

# name -> (depth, hidden size, heads). 'tiny' is for CPU runs; the rest are DiT Table 1.
DIT_SIZES = {
    'tiny': (4, 128, 4),
    'small': (6, 256, 4),
    'S': (12, 384, 6),
    'B': (12, 768, 12),
    'L': (24, 1024, 16),
    'XL': (28, 1152, 16),
}

_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()


class Attention(nnx.Module):
  """Multi-head self-attention with a fused qkv projection (biases on, as in timm/DiT).

  ``attention_impl`` is the ``implementation`` of :func:`phipd_jax.models.layers.attention`.
  """

  def __init__(self, hidden: int, heads: int, *, dtype=jnp.float32, attention_impl: str = 'auto',
               rngs: nnx.Rngs):
    check_attention_implementation(attention_impl)
    self.heads, self.attention_impl = heads, attention_impl
    self.qkv = Linear(hidden, 3 * hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)
    self.proj = Linear(hidden, hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    batch, tokens, hidden = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, hidden // self.heads)
    out = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], implementation=self.attention_impl)
    return self.proj(out.reshape(batch, tokens, hidden))


class DiTBlock(nnx.Module):
  """Pre-LN transformer block with adaLN-Zero modulation (DiT Fig. 3)."""

  def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, *, dtype=jnp.float32,
               attention_impl: str = 'auto', rngs: nnx.Rngs):
    norm = dict(use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.norm1 = nnx.LayerNorm(hidden, **norm)
    self.attn = Attention(hidden, heads, dtype=dtype, attention_impl=attention_impl, rngs=rngs)
    self.norm2 = nnx.LayerNorm(hidden, **norm)
    mlp_hidden = int(hidden * mlp_ratio)
    self.mlp_in = Linear(hidden, mlp_hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)
    self.mlp_out = Linear(mlp_hidden, hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)
    self.adaln = Linear(hidden, 6 * hidden, kernel_init=_zeros, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, c: Array) -> Array:
    (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp,
     gate_mlp) = jnp.split(self.adaln(nnx.silu(c)), 6, axis=-1)
    x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
    hidden = nnx.gelu(self.mlp_in(modulate(self.norm2(x), shift_mlp, scale_mlp)),
                      approximate=True)
    return x + gate_mlp[:, None] * self.mlp_out(hidden)


class FinalLayer(nnx.Module):
  """adaLN-modulated LayerNorm, then a zero-initialised linear to ``p * p * C_out`` per token."""

  def __init__(self, hidden: int, patch_size: int, out_channels: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(hidden, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.adaln = Linear(hidden, 2 * hidden, kernel_init=_zeros, dtype=dtype, rngs=rngs)
    self.linear = Linear(hidden, patch_size * patch_size * out_channels, kernel_init=_zeros,
                             dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, c: Array) -> Array:
    shift, scale = jnp.split(self.adaln(nnx.silu(c)), 2, axis=-1)
    return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nnx.Module):
  """DiT over NHWC images.

  Args:
    in_channels: ``C`` of the input.
    patch_size: ``p``; ``H`` and ``W`` must be multiples of it.
    hidden, depth, heads: transformer width, blocks, attention heads (or use :func:`dit`).
    num_classes: 0 for unconditional; otherwise labels ``0 .. num_classes - 1`` plus the null
      label ``num_classes`` used for classifier-free guidance.
    out_channels: output channels (default ``in_channels``). ``2 C`` is DiT's learned-variance
      head (``learn_sigma``): channels ``[:C]`` are the prediction, ``[C:]`` the variance
      interpolation ``v`` in ``[-1, 1]`` (Nichol & Dhariwal 2021, Eq. 15), which the diffusion
      code reads only in ancestral DDPM sampling
      (:func:`phipd_jax.diffusion.samplers.ddpm_ancestral`); every other sampler and the loss
      use the first ``C`` channels.
    mlp_ratio: MLP width multiple.
    dtype: compute dtype (parameters are float32).
    attention_impl: attention form, ``'auto'`` (the fastest for the backend and dtype),
      ``'xla'``, ``'cpu'``, ``'cudnn'`` or ``'tpu'``; see :func:`phipd_jax.models.layers.attention`.
      All forms compute the same function; only speed differs.
    remat: per-block rematerialisation, ``'none'``, ``'dots'`` or ``'full'``
      (:data:`phipd_jax.models.layers.REMAT_POLICIES`): memory for time, same function.
    time_frequency_shift: the timestep embedding's frequency shift (0 as facebookresearch/DiT;
      1 for weights converted from diffusers' ``DiTTransformer2DModel``;
      :func:`phipd_jax.models.layers.timestep_embedding`).
    rngs: NNX random streams for initialisation.

  Raises:
    ValueError: inconsistent sizes, an unknown ``attention_impl`` or ``remat``.
  """

  def __init__(self, *, in_channels: int, patch_size: int, hidden: int, depth: int, heads: int,
               num_classes: int = 0, out_channels: Optional[int] = None, mlp_ratio: float = 4.0,
               dtype=jnp.float32, attention_impl: str = 'auto', remat: str = 'none',
               time_frequency_shift: int = 0, rngs: nnx.Rngs):
    check_attention_implementation(attention_impl)
    check_remat(remat)
    self.remat = remat
    if hidden % heads or hidden % 4:
      raise ValueError(f'DiT: hidden={hidden} must be divisible by heads={heads} and by 4')
    if patch_size < 1:
      raise ValueError(f'DiT: patch_size={patch_size} must be >= 1')
    self.in_channels, self.patch_size, self.hidden = in_channels, patch_size, hidden
    self.out_channels = out_channels or in_channels
    self.num_classes, self.dtype = num_classes, dtype
    self.patch_embed = nnx.Conv(
        in_channels, hidden, (patch_size, patch_size), strides=(patch_size, patch_size),
        padding='VALID', dtype=dtype,
        kernel_init=nnx.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3), rngs=rngs)
    self.time_embed = TimestepEmbedder(hidden, frequency_shift=time_frequency_shift, dtype=dtype,
                                       rngs=rngs)
    if num_classes:
      self.label_embed = nnx.Embed(num_classes + 1, hidden, embedding_init=nnx.initializers.normal(
          0.02), rngs=rngs)
    self.blocks = nnx.List(
        [DiTBlock(hidden, heads, mlp_ratio, dtype=dtype, attention_impl=attention_impl, rngs=rngs)
         for _ in range(depth)])
    self.final = FinalLayer(hidden, patch_size, self.out_channels, dtype=dtype, rngs=rngs)

  @property
  def null_label(self) -> Optional[int]:
    """The label index meaning "no label" (``num_classes``), or None if unconditional."""
    return self.num_classes if self.num_classes else None

  def __call__(self, x_t: Array, t: Array, y: Optional[Array] = None) -> Array:
    check_input('DiT', x_t, self.patch_size, self.in_channels)
    batch, height, width, _ = x_t.shape
    p = self.patch_size
    grid_h, grid_w = height // p, width // p
    tokens = self.patch_embed(x_t.astype(self.dtype)).reshape(batch, grid_h * grid_w, self.hidden)
    tokens = tokens + sincos_positions_2d(grid_h, grid_w, self.hidden).astype(self.dtype)
    c = conditioning(self, t, y, batch)
    for block in self.blocks:
      tokens = call_block(block, self.remat, tokens, c)
    out = self.final(tokens, c)  # [B, T, p * p * C_out]
    return unpatchify(out, grid_h, grid_w, p).astype(jnp.float32)


def conditioning(model: nnx.Module, t: Array, y: Optional[Array], batch: int) -> Array:
  """The adaLN conditioning ``[B, D]`` of a DiT-family model: the timestep embedding of ``t``
  plus, for a class-conditional model, the label embedding (``y=None``: the null label)."""
  c = model.time_embed(jnp.broadcast_to(t, (batch,)))
  if model.num_classes:
    labels = jnp.full((batch,), model.num_classes, jnp.int32) if y is None else y
    c = c + model.label_embed(labels)
  return c


def dit(size: str, *, in_channels: int, patch_size: int, num_classes: int = 0,
        out_channels: Optional[int] = None, dtype=jnp.float32, attention_impl: str = 'auto',
        remat: str = 'none', time_frequency_shift: int = 0, rngs: nnx.Rngs) -> DiT:
  """A DiT of a named size (``'tiny'``, ``'small'``, ``'S'``, ``'B'``, ``'L'``, ``'XL'``).

  Raises:
    ValueError: unknown size.
  """
  if size not in DIT_SIZES:
    raise ValueError(f'model.size={size!r} must be one of {sorted(DIT_SIZES)}')
  depth, hidden, heads = DIT_SIZES[size]
  return DiT(in_channels=in_channels, patch_size=patch_size, hidden=hidden, depth=depth,
             heads=heads, num_classes=num_classes, out_channels=out_channels, dtype=dtype,
             attention_impl=attention_impl, remat=remat,
             time_frequency_shift=time_frequency_shift, rngs=rngs)


def count_parameters(module: nnx.Module) -> int:
  """Number of scalar parameters (``nnx.Param`` leaves)."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
