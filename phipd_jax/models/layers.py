"""Layers shared by the denoisers (DiT, JiT): embeddings, adaLN, patches and attention.

:func:`attention` is the one attention function of the library: both models' attention modules
call it, and it picks the fastest formulation for the backend (``docs/attention_cpu.md`` has the
CPU measurements behind the choice).
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax import lora

Array = jax.Array

# The values ``attention(..., implementation=...)`` accepts (None means 'auto').
ATTENTION_IMPLEMENTATIONS = ('auto', 'xla', 'cpu', 'cudnn', 'tpu')

# 'cpu' form: the score tile ([chunk, heads, query block, keys], float32) one loop step holds.
# Materialising the whole [B, heads, L, L] score tensor is what made XLA:CPU slow (large fresh
# buffers every call, and a backward that re-reads them); a few MiB stay in cache.
_CPU_TILE_BYTES = 4 * 2**20


def timestep_embedding(t: Array, dim: int, max_period: float = 10000.0,
                       frequency_shift: int = 0) -> Array:
  """Sinusoidal embedding ``[cos(t f_i), sin(t f_i)]``, ``f_i = max_period^(-i / (dim/2 - s))``.

  Args:
    t: float ``[B]`` (already scaled, e.g. ``1000 * t``).
    dim: even embedding size.
    frequency_shift: ``s``: 0 in DiT and JiT (facebookresearch/DiT ``TimestepEmbedder``); 1 in
      diffusers' ``DiTTransformer2DModel`` (``Timesteps(downscale_freq_shift=1)``), whose
      converted weights need it.

  Returns:
    float32 ``[B, dim]``.
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) /
                  (half - frequency_shift))
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def sincos_positions_2d(grid_h: int, grid_w: int, dim: int) -> Array:
  """Fixed 2-D sin-cos positional table (MAE / DiT): half the channels per axis.

  Returns:
    float32 ``[grid_h * grid_w, dim]`` (row-major tokens); ``dim`` must be a multiple of 4.

  Raises:
    ValueError: ``dim`` not a multiple of 4.
  """
  if dim % 4:
    raise ValueError(f'sincos_positions_2d: dim={dim} must be a multiple of 4')

  def one_axis(positions, size):
    omega = 1.0 / 10000 ** (jnp.arange(size // 2, dtype=jnp.float32) / (size / 2.0))
    out = positions.reshape(-1)[:, None] * omega[None]
    return jnp.concatenate([jnp.sin(out), jnp.cos(out)], axis=1)

  rows, cols = jnp.meshgrid(jnp.arange(grid_h, dtype=jnp.float32),
                            jnp.arange(grid_w, dtype=jnp.float32), indexing='ij')
  # Upstream passes (w, h) grids in this order: the first half of channels encodes the column.
  return jnp.concatenate([one_axis(cols, dim // 2), one_axis(rows, dim // 2)], axis=1)


def modulate(x: Array, shift: Array, scale: Array) -> Array:
  """adaLN: ``x [B, T, D] * (1 + scale [B, D]) + shift [B, D]``."""
  return x * (1 + scale[:, None]) + shift[:, None]


def check_input(model_name: str, x_t: Array, patch_size: int, in_channels: int):
  """Raises ``ValueError`` unless ``x_t`` is ``[B, H, W, in_channels]`` with ``H, W % p == 0``."""
  if x_t.ndim != 4 or x_t.shape[1] % patch_size or x_t.shape[2] % patch_size or (
      x_t.shape[3] != in_channels):
    raise ValueError(f'{model_name}: input {x_t.shape} needs [B, H, W, C] with H, W divisible by '
                     f'patch_size={patch_size} and C={in_channels}')


def unpatchify(tokens: Array, grid_h: int, grid_w: int, patch_size: int) -> Array:
  """``[B, grid_h * grid_w, p * p * C]`` (row-major tokens) -> ``[B, grid_h p, grid_w p, C]``."""
  batch, p = tokens.shape[0], patch_size
  channels = tokens.shape[-1] // (p * p)
  out = tokens.reshape(batch, grid_h, grid_w, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
  return out.reshape(batch, grid_h * p, grid_w * p, channels)


def _bias_grad(dy: Array) -> Array:
  """``ones [N] @ dy [N, out]``, accumulated in float32, in ``dy``'s dtype."""
  return jax.lax.dot_general(jnp.ones(dy.shape[:1], dy.dtype), dy, (((0,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32).astype(dy.dtype)


@jax.custom_vjp
def _dense(x: Array, kernel: Array, bias: Array) -> Array:
  """``x [N, in] @ kernel [in, out] + bias [out]``; the bias gradient is ``ones [N] @ dy``."""
  return x @ kernel + bias


def _dense_fwd(x, kernel, bias):
  return _dense(x, kernel, bias), (x, kernel)


def _dense_bwd(residuals, dy):
  x, kernel = residuals
  contract = lambda a, b, axes: jax.lax.dot_general(a, b, (axes, ((), ())))
  dx = contract(dy, kernel, ((1,), (1,)))
  dkernel = contract(x, dy, ((0,), (0,)))
  return dx, dkernel, _bias_grad(dy)


_dense.defvjp(_dense_fwd, _dense_bwd)


@jax.custom_vjp
def _low_rank_dense(x: Array, x_in: Array, kernel: Array, bias: Optional[Array], a: Array,
                    b: Array) -> Array:
  """``x [N, in] @ kernel [in, out] + (x_in [N, in] @ a [in, r]) @ b [r, out] (+ bias [out])``,
  formed as one product ``[x, x_in a] @ [kernel; b]``.

  Why one product: written as a sum of two, XLA:CPU fuses the addition into the consumers
  (the MLP's GELU and its gradient) and keeps both ``[N, out]`` terms alive until the backward
  pass: +0.43 GB of scratch in a DiT-S/4 step at batch 16, 64x64 (1.80 GB for the full
  fine-tune). The backward pass never forms more than the thin ``[in, r]`` and ``[r, out]``
  gradients besides ``dx`` (``dkernel`` is formed only if used, e.g. never in a LoRA step).
  """
  return _low_rank_dense_fwd(x, x_in, kernel, bias, a, b)[0]


def _low_rank_dense_fwd(x, x_in, kernel, bias, a, b):
  u = x_in @ a
  out = jnp.concatenate([x, u], axis=1) @ jnp.concatenate([kernel, b], axis=0)
  return (out if bias is None else out + bias), (x, x_in, u, kernel, a, b, bias is not None)


def _low_rank_dense_bwd(residuals, dy):
  x, x_in, u, kernel, a, b, has_bias = residuals
  contract = lambda p, q, axes: jax.lax.dot_general(p, q, (axes, ((), ())))
  du = contract(dy, b, ((1,), (1,)))
  return (contract(dy, kernel, ((1,), (1,))), contract(du, a, ((1,), (1,))),
          contract(x, dy, ((0,), (0,))), _bias_grad(dy) if has_bias else None,
          contract(x_in, du, ((0,), (0,))), contract(u, dy, ((0,), (0,))))


_low_rank_dense.defvjp(_low_rank_dense_fwd, _low_rank_dense_bwd)


class Linear(nnx.Linear):
  """``nnx.Linear`` over ``[..., in]`` computed as one ``[N, in] @ [in, out]`` product.

  Same parameters (``kernel [in, out]``, ``bias [out]``), names, dtype promotion and values as
  ``nnx.Linear``; the leading axes are flattened around the product (a reshape, no copy), and
  the backward pass is written out: ``dx = dy kernel^T``, ``dkernel = x^T dy``,
  ``dbias = ones^T dy`` (a matrix-vector product, accumulated in float32). Why: on XLA:CPU the
  automatic transpose of ``nnx.Linear`` on ``[B, T, in]`` copied ``dy`` transposed for each
  weight gradient (``[out, B * T]``, 9-31 ms per layer in a DiT-S/4 step) and reduced the bias
  gradient with an unfused ``reduce-window`` over two axes (up to 57 ms per layer); the flat
  product and the matrix-vector product avoid both (``docs/benchmarks.md``).

  A kernel whose value is a :class:`phipd_jax.lora.LowRankKernel` (a LoRA training step,
  :func:`phipd_jax.lora.low_rank`) is applied as ``x W + scale (x' A) B`` without merging
  (``x'``: ``x`` after LoRA dropout), as one product (``_low_rank_dense``).
  """

  def __call__(self, inputs: Array) -> Array:
    leading = inputs.shape[:-1]
    flat = inputs.reshape(-1, inputs.shape[-1])
    kernel = self.kernel.get_value()
    adapter = kernel if isinstance(kernel, lora.LowRankKernel) else None  # LoRA training.
    if adapter is None and self.bias is None:
      out = super().__call__(flat)
    else:
      bias = None if self.bias is None else self.bias[...]
      flat, kernel, bias = self.promote_dtype(
          (flat, kernel if adapter is None else adapter.base, bias), dtype=self.dtype)
      if adapter is None:
        out = _dense(flat, kernel, bias)
      else:  # x W + s (x' A) B as one product.
        x_in, a, b = adapter.factors(flat)
        out = _low_rank_dense(flat, x_in, kernel, bias, a, b)
    return out.reshape(*leading, out.shape[-1])


class TimestepEmbedder(nnx.Module):
  """``t -> MLP(sinusoidal(time_scale * t))``; DiT embeds integer steps, hence ``time_scale``."""

  def __init__(self, hidden: int, *, frequency_dim: int = 256, time_scale: float = 1000.0,
               frequency_shift: int = 0, dtype=jnp.float32, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.frequency_dim, self.time_scale = frequency_dim, time_scale
    self.frequency_shift = frequency_shift
    self.linear1 = Linear(frequency_dim, hidden, kernel_init=init, dtype=dtype, rngs=rngs)
    self.linear2 = Linear(hidden, hidden, kernel_init=init, dtype=dtype, rngs=rngs)

  def __call__(self, t: Array) -> Array:
    embedding = timestep_embedding(self.time_scale * t, self.frequency_dim,
                                   frequency_shift=self.frequency_shift)
    return self.linear2(nnx.silu(self.linear1(embedding)))


# ----------------------------------------------------------------------------------------------
# Rematerialisation of transformer blocks.

# ``model.remat`` -> what the backward pass keeps of each block (None = everything autodiff keeps).
REMAT_POLICIES = {
    'none': None,
    # Keep the outputs of the linear layers (matmuls without batch dimensions); recompute the
    # elementwise work, norms and the attention's batched matmuls.
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # Keep only each block's inputs; recompute the whole block in the backward pass.
    'full': jax.checkpoint_policies.nothing_saveable,
}


def check_remat(remat: str) -> None:
  """Raises ``ValueError`` unless ``remat`` is a key of :data:`REMAT_POLICIES`."""
  if remat not in REMAT_POLICIES:
    raise ValueError(f'model.remat={remat!r} must be one of {list(REMAT_POLICIES)}')


def call_block(block: nnx.Module, remat: str, *args: Array) -> Array:
  """``block(*args)``, rematerialised per :data:`REMAT_POLICIES` (``nnx.remat``).

  ``'none'`` calls the block as is. ``'dots'`` and ``'full'`` trade backward-pass recomputation
  for activation memory (``benchmark.py --what train`` reports time and peak memory of each).
  The forward value and the gradients are the same function in every mode.
  """
  if remat == 'none':
    return block(*args)
  apply = nnx.remat(lambda module, *inputs: module(*inputs), policy=REMAT_POLICIES[remat])
  return apply(block, *args)


# ----------------------------------------------------------------------------------------------
# Attention.


def check_attention_implementation(implementation: Optional[str]) -> None:
  """Raises ``ValueError`` unless ``implementation`` is None or in ``ATTENTION_IMPLEMENTATIONS``."""
  if implementation is not None and implementation not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f'attention: implementation={implementation!r} must be None or one of '
                     f'{list(ATTENTION_IMPLEMENTATIONS)}')


def resolve_attention_implementation(implementation: Optional[str], dtype) -> str:
  """The concrete form :func:`attention` runs for ``implementation`` and input ``dtype``.

  ``None`` / ``'auto'`` choose by ``jax.default_backend()``: cpu -> ``'cpu'``; gpu ->
  ``'cudnn'`` for bfloat16/float16 inputs, else ``'xla'``; tpu -> ``'tpu'``; any other backend
  -> ``'xla'``. ``'cudnn'`` with float32 inputs resolves to ``'xla'`` (cuDNN's fused kernels
  take 16-bit inputs only). Other explicit names are returned unchanged.

  Raises:
    ValueError: unknown ``implementation``.
  """
  check_attention_implementation(implementation)
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  if implementation in (None, 'auto'):
    backend = jax.default_backend()
    if backend == 'cpu':
      return 'cpu'
    if backend == 'gpu':
      return 'cudnn' if half else 'xla'
    if backend == 'tpu':
      return 'tpu'
    return 'xla'
  if implementation == 'cudnn' and not half:
    return 'xla'
  return implementation


def attention(q: Array, k: Array, v: Array, *, implementation: Optional[str] = None) -> Array:
  """Multi-head attention ``softmax(q k^T / sqrt(d)) v``, no mask, softmax in float32.

  Every form computes the same function (to float32 rounding); they differ in speed only.

  Args:
    q: ``[B, L, heads, d]`` queries (the layout of ``jax.nn.dot_product_attention``).
    k: ``[B, S, heads, d]`` keys.
    v: ``[B, S, heads, d]`` values.
    implementation: one of ``ATTENTION_IMPLEMENTATIONS`` or None (= ``'auto'``):

      * ``'xla'``: ``jax.nn.dot_product_attention(..., implementation='xla')``.
      * ``'cpu'``: fastest form measured on XLA:CPU (``docs/attention_cpu.md``): a ``lax.map``
        over chunks of the batch (and, for long sequences, of the queries) so that each step
        holds a score tile of a few MiB, head-major matmuls inside each chunk, and
        ``jax.checkpoint`` on the chunk so the backward recomputes the softmax per chunk
        instead of storing ``[B, heads, L, S]`` probabilities. Plain JAX: forward- and
        reverse-mode differentiable, runs on any backend.
      * ``'cudnn'``: ``jax.nn.dot_product_attention(..., implementation='cudnn')`` (GPU fused
        flash attention) for bfloat16/float16 inputs; float32 inputs, or a machine where cuDNN
        attention is unavailable (checked when tracing), use ``'xla'``.
      * ``'tpu'``: the Pallas TPU flash attention kernel
        (``jax.experimental.pallas.ops.tpu.flash_attention``), imported lazily; sequences are
        padded to a multiple of 128 and the padding is masked with segment ids. Untested on
        hardware here (the project's test machine has no TPU); its layout and padding logic
        are tested on CPU against the module's reference kernel.
      * ``None`` / ``'auto'``: see :func:`resolve_attention_implementation`.

  Returns:
    ``[B, L, heads, d]`` in ``v.dtype``.

  Raises:
    ValueError: unknown ``implementation`` or mismatched shapes.
  """
  if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or (
      q.shape[0], q.shape[2], q.shape[3]) != (k.shape[0], k.shape[2], k.shape[3]):
    raise ValueError(f'attention: q {q.shape}, k {k.shape}, v {v.shape} must be '
                     '[B, L, heads, d], [B, S, heads, d], [B, S, heads, d]')
  form = resolve_attention_implementation(implementation, q.dtype)
  if form == 'cpu':
    return attention_cpu(q, k, v)
  if form == 'cudnn':
    try:
      return jax.nn.dot_product_attention(q, k, v, implementation='cudnn')
    except (NotImplementedError, RuntimeError, ValueError):
      pass  # No GPU, no cuDNN or an unsupported shape/version: the XLA form below.
  if form == 'tpu':
    return attention_tpu(q, k, v)
  return jax.nn.dot_product_attention(q, k, v, implementation='xla')


def _split_last(x: Array, group: int = 32) -> Array:
  """``[..., S] -> [..., S / g, g]`` with ``g = group`` when it divides ``S > g``, else ``S``."""
  size = x.shape[-1]
  group = group if size > group and size % group == 0 else size
  return x.reshape(*x.shape[:-1], size // group, group)


def _sum_last(x: Array) -> Array:
  """Sum over the last axis in two stages of at most 32 (keepdims)."""
  return jnp.sum(jnp.sum(_split_last(x), axis=-1), axis=-1, keepdims=True)


@jax.custom_jvp
def softmax_last(logits: Array) -> Array:
  """``jax.nn.softmax(logits, axis=-1)`` with its reductions in two stages of <= 32 elements.

  Same function and derivative (``y (t - sum(t y))``). Why: XLA:CPU rewrites a reduction over
  more than 32 elements into an unfused ``reduce-window`` plus a reduce; in the DiT-S/4 train
  step these were 1.4k kernels and the largest non-matmul cost. Reductions of <= 32 elements
  fuse with their producers (the exponential, the product with the tangent).
  """
  split = _split_last(logits)
  top = jnp.max(jnp.max(split, axis=-1), axis=-1, keepdims=True)
  e = jnp.exp(logits - top)
  return e / _sum_last(e)


@softmax_last.defjvp
def _softmax_last_jvp(primals, tangents):
  (logits,), (tangent,) = primals, tangents
  y = softmax_last(logits)
  return y, y * (tangent - _sum_last(tangent * y))


def _softmax_attention(q: Array, k: Array, v: Array) -> Array:
  """``[..., L, H, d]`` attention with head-major matmuls (batch dims first for XLA's dot)."""
  scale = 1.0 / math.sqrt(q.shape[-1])
  qh, kh, vh = (jnp.swapaxes(x, -2, -3) for x in (q, k, v))  # [..., H, L, d]
  logits = jnp.einsum('...qd,...kd->...qk', qh, kh, preferred_element_type=jnp.float32) * scale
  probs = softmax_last(logits).astype(v.dtype)
  return jnp.swapaxes(jnp.einsum('...qk,...kd->...qd', probs, vh), -2, -3)


def _largest_divisor(n: int, limit: int) -> int:
  """The largest divisor of ``n`` that is ``<= max(limit, 1)``."""
  return max(c for c in range(1, min(n, max(limit, 1)) + 1) if n % c == 0)


def attention_cpu(q: Array, k: Array, v: Array, *, tile_bytes: int = _CPU_TILE_BYTES) -> Array:
  """The ``'cpu'`` form of :func:`attention` (same arguments); ``tile_bytes`` sizes the chunks.

  The batch is split into chunks of ``c`` examples (the largest divisor of ``B`` whose float32
  score tile ``c * heads * L * S * 4`` fits ``tile_bytes``); when one example does not fit, its
  queries are split into blocks the same way (each block still sees all keys, so the softmax
  is exact, not an online one). Each chunk is ``jax.checkpoint``-ed: the backward pass keeps
  only the chunk's inputs and recomputes its scores, as flash attention does.
  """
  batch, length, heads, _ = q.shape
  keys = k.shape[1]
  per_example = heads * length * keys * 4
  chunk = _largest_divisor(batch, tile_bytes // per_example)
  block = length if per_example <= tile_bytes else _largest_divisor(
      length, tile_bytes // (heads * keys * 4))
  if chunk == batch and block == length:
    return _softmax_attention(q, k, v)
  body = jax.checkpoint(_softmax_attention)
  if block < length:  # [B, L, H, d] -> [L / block, B, block, H, d] query blocks, all keys.
    def per_chunk(qkv):
      qc, kc, vc = qkv
      blocks = jnp.moveaxis(qc.reshape(qc.shape[0], length // block, block, *qc.shape[2:]), 1, 0)
      out = jax.lax.map(lambda qb: body(qb, kc, vc), blocks)
      return jnp.moveaxis(out, 0, 1).reshape(qc.shape)
  else:
    per_chunk = lambda qkv: body(*qkv)
  split = lambda x: x.reshape(batch // chunk, chunk, *x.shape[1:])
  out = jax.lax.map(per_chunk, (split(q), split(k), split(v)))
  return out.reshape(q.shape)


def attention_tpu(q: Array, k: Array, v: Array, *, kernel=None, block: int = 128) -> Array:
  """The ``'tpu'`` form of :func:`attention`: Pallas TPU flash attention (same arguments).

  The kernel takes ``[B, heads, L, d]`` and needs sequence lengths divisible by its block
  size (128 by default), so both sequences are padded to a multiple of ``block`` and the
  padded keys are masked out with segment ids (padded queries see only padded keys and are
  cropped). Untested on TPU hardware in this project.

  Args:
    q, k, v: as :func:`attention`.
    kernel: ``fn(q, k, v, segment_ids=..., sm_scale=...)`` over ``[B, heads, L, d]``; default
      ``jax.experimental.pallas.ops.tpu.flash_attention.flash_attention`` (imported here, so
      the module loads on machines without Pallas TPU support). Tests pass the module's
      ``mha_reference_no_custom_vjp`` to check the layout and padding on CPU.
    block: pad sequence lengths to a multiple of this.
  """
  from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash  # pylint: disable=g-import-not-at-top
  kernel = pallas_flash.flash_attention if kernel is None else kernel
  length, keys = q.shape[1], k.shape[1]
  pad_q, pad_k = -length % block, -keys % block
  to_heads = lambda x, pad: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  segment_ids = None
  if pad_q or pad_k:
    ids = lambda n, pad: jnp.broadcast_to(
        (jnp.arange(n + pad) < n).astype(jnp.int32), (q.shape[0], n + pad))
    segment_ids = pallas_flash.SegmentIds(q=ids(length, pad_q), kv=ids(keys, pad_k))
  out = kernel(to_heads(q, pad_q), to_heads(k, pad_k), to_heads(v, pad_k),
               segment_ids=segment_ids, sm_scale=1.0 / math.sqrt(q.shape[-1]))
  return out.transpose(0, 2, 1, 3)[:, :length].astype(v.dtype)
