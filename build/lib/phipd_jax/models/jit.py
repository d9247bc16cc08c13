"""JiT: a pixel-space x-prediction DiT with large patches, optionally with Spectral Forcing.

Sources: Li & He, *Back to Basics: Let Denoising Generative Models Denoise*, arXiv:2511.13720,
Sec. 4 and App. A, code ``LTH14/JiT`` ``model_jit.py``; Spectral Forcing: Fan et al.,
arXiv:2606.15236, code ``WeichenFan/Spectral_Forcing``.

Architecture (differences from :mod:`phipd_jax.models.dit`): bottleneck patch embedding
(``p x p x 3 -> d'`` without bias, then ``d' -> D``), a fixed 2-D sin-cos position added to the
tokens **and** 2-D RoPE in every attention layer, pre-norm RMSNorm, qk-norm, SwiGLU MLP,
adaLN-Zero on ``t_emb + y_emb``, in-context class tokens prepended at block ``in_context_start``
(identity RoPE, dropped before the final layer), RMSNorm + adaLN final layer.

Interface as every model here: ``model(x_t [B, H, W, 3], t [B] float32, y [B] int32 or None)
-> x0_hat [B, H, W, 3]`` with the **library's** time, ``t = 0`` data, ``t = 1`` noise. The
model converts once, at its input, to JiT's ``t_data = 1 - t`` (1 = data), which feeds the time
embedding (raw, no x1000) and Spectral Forcing. The prediction type is config of the diffusion
code (JiT: ``prediction='x'`` with ``loss_space='v'``).

Parameter counts (class-conditional, 1000 classes, 32 in-context tokens, the fixed position table
not counted, as upstream): JiT-B/16 at 256 px 131.1M, B/32 at 512 px 133.2M, L/16 459M,
H/16 953M (paper Table: 131M / 133M / 459M / 953M); checked in ``tests/test_jit.py``.
Not implemented: the H/G recipe's dropout 0.2 in the middle half of the blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax import spectral
from phipd_jax.models.layers import (Linear, TimestepEmbedder, attention, call_block,
                                     check_attention_implementation, check_remat,
                                     check_input, modulate, resolve_attention_implementation,
                                     sincos_positions_2d, unpatchify)

Array = jax.Array

# name -> (depth, hidden, heads, bottleneck d', in_context_start). JiT paper, Table 9;
# 'tiny' is for CPU runs.
JIT_SIZES = {
    'tiny': (4, 128, 4, 32, 1),
    'small': (6, 256, 4, 64, 2),
    'B': (12, 768, 12, 128, 4),
    'L': (24, 1024, 16, 128, 8),
    'H': (32, 1280, 16, 256, 10),
    'G': (40, 1664, 16, 256, 10),
}

_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()


@dataclasses.dataclass(frozen=True)
class SpectralForcing:
  """Spectral Forcing settings (see :func:`phipd_jax.spectral.spectral_forcing`).

  Defaults are the released code's linear schedule: ``c = 0.05 + 0.95 t_data``, slope 30,
  one DCT over the whole image.
  """

  schedule: str = 'linear'
  kappa: float = 30.0
  c_min: float = 0.05
  c_max: float = 1.0
  alpha: float = 2.0
  window: Optional[int] = None

  def __post_init__(self):
    spectral.cutoff(0.5, schedule=self.schedule, c_min=self.c_min, c_max=self.c_max,
                    alpha=self.alpha)  # Validates.
    if self.kappa <= 0:
      raise ValueError(f'spectral_forcing: kappa={self.kappa} must be > 0')

  def __call__(self, z: Array, t_data: Array) -> Array:
    return spectral.spectral_forcing(z, t_data, kappa=self.kappa, c_min=self.c_min,
                                     c_max=self.c_max, window=self.window,
                                     schedule=self.schedule, alpha=self.alpha)


def rope_angles(grid_h: int, grid_w: int, head_dim: int, theta: float = 10000.0) -> Array:
  """2-D RoPE angles, float32 ``[grid_h * grid_w, head_dim / 2]`` (one per rotated pair).

  The first ``head_dim / 4`` pairs rotate with the token's row, the rest with its column, each
  at frequencies ``theta^(-2i / (head_dim / 2))`` (EVA/JiT ``VisionRotaryEmbeddingFast``).

  Raises:
    ValueError: ``head_dim`` not a multiple of 4.
  """
  if head_dim % 4:
    raise ValueError(f'rope: head_dim={head_dim} must be a multiple of 4')
  axis_dim = head_dim // 2
  freqs = 1.0 / theta ** (jnp.arange(0, axis_dim, 2, dtype=jnp.float32) / axis_dim)
  rows, cols = jnp.meshgrid(jnp.arange(grid_h, dtype=jnp.float32),
                            jnp.arange(grid_w, dtype=jnp.float32), indexing='ij')
  angles = jnp.concatenate([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], axis=1)
  return angles


def apply_rope(x: Array, angles: Array) -> Array:
  """Rotates consecutive pairs of ``x`` ``[B, T, heads, head_dim]`` by ``angles`` ``[T, head_dim/2]``."""
  pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (x.shape[-1] // 2, 2))
  cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
  first, second = pairs[..., 0], pairs[..., 1]
  rotated = jnp.stack([first * cos - second * sin, first * sin + second * cos], axis=-1)
  return rotated.reshape(x.shape).astype(x.dtype)


class Attention(nnx.Module):
  """Self-attention with qkv bias, per-head RMSNorm on q and k (qk-norm), RoPE, fp32 softmax.

  ``attention_impl`` is the ``implementation`` of :func:`phipd_jax.models.layers.attention`.
  q, k and v enter it in float32 (as upstream), except for the cuDNN form, which takes the
  16-bit compute dtype and keeps its softmax in float32 internally.
  """

  def __init__(self, hidden: int, heads: int, *, dtype=jnp.float32, attention_impl: str = 'auto',
               rngs: nnx.Rngs):
    check_attention_implementation(attention_impl)
    self.heads, self.head_dim = heads, hidden // heads
    self.dtype, self.attention_impl = dtype, attention_impl
    self.qkv = Linear(hidden, 3 * hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)
    self.q_norm = nnx.RMSNorm(self.head_dim, epsilon=1e-6, rngs=rngs)
    self.k_norm = nnx.RMSNorm(self.head_dim, epsilon=1e-6, rngs=rngs)
    self.proj = Linear(hidden, hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, angles: Array) -> Array:
    batch, tokens, hidden = x.shape
    qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q = apply_rope(self.q_norm(q), angles)
    k = apply_rope(self.k_norm(k), angles)
    form = resolve_attention_implementation(self.attention_impl, self.dtype)
    dtype = self.dtype if form == 'cudnn' else jnp.float32
    out = attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), implementation=form)
    return self.proj(out.astype(x.dtype).reshape(batch, tokens, hidden))


class SwiGLU(nnx.Module):
  """``W3 (silu(W1 x) * W2 x)`` with hidden ``int(2/3 * mlp_ratio * D)`` (2048 for D = 768)."""

  def __init__(self, hidden: int, mlp_ratio: float = 4.0, *, dtype=jnp.float32, rngs: nnx.Rngs):
    inner = int(hidden * mlp_ratio * 2 / 3)
    self.w12 = Linear(hidden, 2 * inner, kernel_init=_xavier, dtype=dtype, rngs=rngs)
    self.w3 = Linear(inner, hidden, kernel_init=_xavier, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    gate, value = jnp.split(self.w12(x), 2, axis=-1)
    return self.w3(nnx.silu(gate) * value)


class JiTBlock(nnx.Module):
  """Pre-RMSNorm block with adaLN-Zero (6 modulation vectors), attention and SwiGLU."""

  def __init__(self, hidden: int, heads: int, *, dtype=jnp.float32, attention_impl: str = 'auto',
               rngs: nnx.Rngs):
    self.norm1 = nnx.RMSNorm(hidden, epsilon=1e-6, rngs=rngs)
    self.attn = Attention(hidden, heads, dtype=dtype, attention_impl=attention_impl, rngs=rngs)
    self.norm2 = nnx.RMSNorm(hidden, epsilon=1e-6, rngs=rngs)
    self.mlp = SwiGLU(hidden, dtype=dtype, rngs=rngs)
    self.adaln = Linear(hidden, 6 * hidden, kernel_init=_zeros, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, c: Array, angles: Array) -> Array:
    (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp,
     gate_mlp) = jnp.split(self.adaln(nnx.silu(c)), 6, axis=-1)
    x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), angles)
    return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class JiT(nnx.Module):
  """JiT over NHWC pixels; see the module docstring for the interface and sources.

  Args:
    in_channels: ``C`` (3 for RGB).
    patch_size: ``p``; ``H`` and ``W`` must be multiples of it.
    hidden, depth, heads: transformer width, blocks and heads (``hidden / heads`` divisible by 4).
    bottleneck: ``d'`` of the patch embedding (128 for B and L, 256 for H and G).
    num_classes: 0 for unconditional; else labels ``0 .. num_classes - 1`` plus the null label
      ``num_classes`` (classifier-free guidance).
    in_context_len: number of in-context tokens (32 upstream; 0 disables them). Each is the
      label embedding plus a learned per-token embedding; unconditional models keep only the
      learned part (register tokens, a library extension).
    in_context_start: block index at which they are prepended (``0 <= start < depth``).
    spectral_forcing: a :class:`SpectralForcing` applied to the network input before the patch
      embedding, or None (plain JiT).
    dtype: compute dtype (parameters float32; attention softmax in float32).
    attention_impl: attention form, ``'auto'`` (the fastest for the backend and dtype),
      ``'xla'``, ``'cpu'``, ``'cudnn'`` or ``'tpu'``; see :func:`phipd_jax.models.layers.attention`.
      All forms compute the same function; only speed differs.
    rngs: NNX random streams.

  Raises:
    ValueError: inconsistent sizes or an unknown ``attention_impl``.
  """

  def __init__(self, *, in_channels: int, patch_size: int, hidden: int, depth: int, heads: int,
               bottleneck: int, num_classes: int = 0, in_context_len: int = 32,
               in_context_start: int = 0, spectral_forcing: Optional[SpectralForcing] = None,
               dtype=jnp.float32, attention_impl: str = 'auto', remat: str = 'none',
               rngs: nnx.Rngs):
    check_attention_implementation(attention_impl)
    check_remat(remat)
    self.remat = remat
    if hidden % heads or (hidden // heads) % 4 or hidden % 4:
      raise ValueError(f'JiT: hidden={hidden} / heads={heads} must be an integer multiple of 4')
    if patch_size < 1 or bottleneck < 1:
      raise ValueError(f'JiT: patch_size={patch_size}, bottleneck={bottleneck} must be >= 1')
    if in_context_len < 0 or not 0 <= in_context_start < depth:
      raise ValueError(f'JiT: in_context_len={in_context_len} must be >= 0 and '
                       f'in_context_start={in_context_start} in [0, depth={depth})')
    self.in_channels, self.patch_size, self.hidden = in_channels, patch_size, hidden
    self.heads, self.num_classes, self.dtype = heads, num_classes, dtype
    self.in_context_len, self.in_context_start = in_context_len, in_context_start
    self.spectral_forcing = spectral_forcing
    self.patch_embed = nnx.Conv(
        in_channels, bottleneck, (patch_size, patch_size), strides=(patch_size, patch_size),
        padding='VALID', use_bias=False, dtype=dtype,
        kernel_init=nnx.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3), rngs=rngs)
    self.patch_project = Linear(bottleneck, hidden, kernel_init=_xavier, dtype=dtype,
                                    rngs=rngs)
    self.time_embed = TimestepEmbedder(hidden, time_scale=1.0, dtype=dtype, rngs=rngs)
    if num_classes:
      self.label_embed = nnx.Embed(num_classes + 1, hidden,
                                   embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    if in_context_len:
      self.in_context_embed = nnx.Param(
          nnx.initializers.normal(0.02)(rngs.params(), (in_context_len, hidden)))
    self.blocks = nnx.List([JiTBlock(hidden, heads, dtype=dtype, attention_impl=attention_impl,
                                     rngs=rngs) for _ in range(depth)])
    self.final_norm = nnx.RMSNorm(hidden, epsilon=1e-6, rngs=rngs)
    self.final_adaln = Linear(hidden, 2 * hidden, kernel_init=_zeros, dtype=dtype, rngs=rngs)
    self.final_linear = Linear(hidden, patch_size * patch_size * in_channels,
                                   kernel_init=_zeros, dtype=dtype, rngs=rngs)

  @property
  def null_label(self) -> Optional[int]:
    """The label index meaning "no label" (``num_classes``), or None if unconditional."""
    return self.num_classes if self.num_classes else None

  def __call__(self, x_t: Array, t: Array, y: Optional[Array] = None) -> Array:
    check_input('JiT', x_t, self.patch_size, self.in_channels)
    batch, height, width, _ = x_t.shape
    p = self.patch_size
    # The library's t (0 = data) -> JiT's t_data (1 = data), once, here.
    t_data = 1.0 - jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
    if self.spectral_forcing is not None:  # Network input only; the loss target is unfiltered.
      x_t = self.spectral_forcing(x_t, t_data)
    grid_h, grid_w = height // p, width // p
    tokens = self.patch_embed(x_t.astype(self.dtype)).reshape(batch, grid_h * grid_w, -1)
    tokens = self.patch_project(tokens)
    tokens = tokens + sincos_positions_2d(grid_h, grid_w, self.hidden).astype(self.dtype)
    c = self.time_embed(t_data)
    label_embedding = None
    if self.num_classes:
      labels = jnp.full((batch,), self.num_classes, jnp.int32) if y is None else y
      label_embedding = self.label_embed(labels)
      c = c + label_embedding
    angles = rope_angles(grid_h, grid_w, self.hidden // self.heads)
    for index, block in enumerate(self.blocks):
      if index == self.in_context_start and self.in_context_len:
        context = jnp.broadcast_to(self.in_context_embed[...][None],
                                   (batch, self.in_context_len, self.hidden))
        if label_embedding is not None:
          context = context + label_embedding[:, None]
        tokens = jnp.concatenate([context.astype(tokens.dtype), tokens], axis=1)
        # In-context tokens get the identity rotation.
        angles = jnp.concatenate([jnp.zeros((self.in_context_len, angles.shape[1])), angles])
      tokens = call_block(block, self.remat, tokens, c, angles)
    if self.in_context_len:
      tokens = tokens[:, self.in_context_len:]
    shift, scale = jnp.split(self.final_adaln(nnx.silu(c)), 2, axis=-1)
    out = self.final_linear(modulate(self.final_norm(tokens), shift, scale))
    return unpatchify(out, grid_h, grid_w, p).astype(jnp.float32)


def jit_model(size: str, *, in_channels: int = 3, patch_size: int, num_classes: int = 0,
              in_context_len: int = 32, spectral_forcing: Optional[SpectralForcing] = None,
              dtype=jnp.float32, attention_impl: str = 'auto', remat: str = 'none',
              rngs: nnx.Rngs) -> JiT:
  """A JiT of a named size (``'tiny'``, ``'small'``, ``'B'``, ``'L'``, ``'H'``, ``'G'``).

  Raises:
    ValueError: unknown size.
  """
  if size not in JIT_SIZES:
    raise ValueError(f'model.size={size!r} must be one of {sorted(JIT_SIZES)} for JiT')
  depth, hidden, heads, bottleneck, start = JIT_SIZES[size]
  return JiT(in_channels=in_channels, patch_size=patch_size, hidden=hidden, depth=depth,
             heads=heads, bottleneck=bottleneck, num_classes=num_classes,
             in_context_len=in_context_len, in_context_start=start,
             spectral_forcing=spectral_forcing, dtype=dtype, attention_impl=attention_impl,
             remat=remat, rngs=rngs)
