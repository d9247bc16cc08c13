"""LoRA as a reparameterisation of a transformer's parameters: ``W = W_base + (alpha / r) A B``.

Source: Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022
(arXiv:2106.09685), Sec. 4.1: a frozen weight ``W_0 [in, out]`` plus a low-rank update ``A [in,
r] @ B [r, out]`` scaled by ``alpha / r``, ``B`` zero-initialised so the adapted model equals the
base model at step 0 (``A`` random: here ``N(0, 1 / in)``); LoRA dropout (``lora_dropout`` of the
authors' ``loralib`` package) drops entries of the adapter branch's input only.

The adapters are their own pytree (``{layer name: {'a', 'b'}}``, the layer name its parameter
path with ``_`` joins, e.g. ``blocks_3_attn_qkv``); :func:`merge` adds them into a copy of the
base parameters. Training runs the low-rank path instead (:func:`low_rank`: each adapted kernel
becomes a :class:`LowRankKernel`, which the models' ``Linear`` layers apply as
``x W + s dropout(x) A B``), so neither the merged kernel nor its gradient ``x^T dy [in, out]``
is ever formed: the loss is differentiated with respect to the adapters only (the base is a
constant of the step: the optimizer and its moments cover the adapters alone, and the base stays
bit-identical). Sampling merges once and runs the plain network (no per-step overhead). Targets
(:data:`TARGETS`) name linear layers of the library's DiT and JiT blocks.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

# Target name -> the kernel paths (dotted) it adapts, in DiT and JiT blocks.
TARGETS = {
    'qkv': r'blocks\.\d+\.attn\.qkv\.kernel',
    'proj': r'blocks\.\d+\.attn\.proj\.kernel',
    'mlp': r'blocks\.\d+\.(mlp_in|mlp_out|mlp\.w12|mlp\.w3)\.kernel',
    'adaln': r'blocks\.\d+\.adaln\.kernel',
}


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  """``config.lora``: ``rank`` r >= 1 (0 = LoRA off), ``alpha`` (0 = r: scale 1), ``targets``
  (names of :data:`TARGETS`), ``dropout`` (probability in [0, 1) of dropping an entry of the
  adapter branch's input during training; sampling never drops)."""
  rank: int
  alpha: float
  targets: tuple[str, ...]
  dropout: float = 0.0

  @property
  def scale(self) -> float:
    """``alpha / r`` (1 when ``alpha`` is 0)."""
    return (self.alpha or self.rank) / self.rank


def _name(path: Sequence) -> str:
  return '.'.join(str(p) for p in path)


def target_kernels(params: nnx.State, spec: LoraSpec) -> dict[str, tuple]:
  """``{adapter name: (parameter path, kernel shape)}`` of the kernels ``spec`` adapts.

  Raises:
    ValueError: an unknown target, targets that match no layer of the model, or a rank above a
      matched layer's smaller side.
  """
  unknown = sorted(set(spec.targets) - set(TARGETS))
  if unknown or not spec.targets:
    raise ValueError(f'config.lora.targets={tuple(spec.targets)!r} is invalid: each must be one '
                     f'of {sorted(TARGETS)}')
  pattern = re.compile('|'.join(f'(?:{TARGETS[t]})' for t in spec.targets) + '$')
  found = {}
  for path, leaf in nnx.to_flat_state(params):
    if pattern.match(_name(path)) and len(leaf.shape) == 2:
      found['_'.join(str(p) for p in path[:-1])] = (tuple(path), tuple(leaf.shape))
  if not found:
    raise ValueError(f'config.lora.targets={tuple(spec.targets)!r} match no layer of this model '
                     '(LoRA adapts the linear layers of DiT / JiT blocks)')
  for name, (_, shape) in found.items():
    if spec.rank > min(shape):
      raise ValueError(f'config.lora.rank={spec.rank} is invalid: above the smaller side of '
                       f'{name} {shape}')
  return found


def init_adapters(key: Array, params: nnx.State, spec: LoraSpec) -> dict:
  """Fresh adapters for ``params`` (concrete or abstract): ``a [in, r] ~ N(0, 1 / in)``,
  ``b [r, out] = 0`` (so :func:`merge` returns the base exactly), float32.

  Raises:
    ValueError: see :func:`target_kernels`.
  """
  adapters = {}
  for index, (name, (_, (fan_in, fan_out))) in enumerate(
      sorted(target_kernels(params, spec).items())):
    a = jax.random.normal(jax.random.fold_in(key, index), (fan_in, spec.rank), jnp.float32)
    adapters[name] = {'a': a / jnp.sqrt(float(fan_in)),
                      'b': jnp.zeros((spec.rank, fan_out), jnp.float32)}
  return adapters


def merge(params: nnx.State, adapters: dict, spec: LoraSpec) -> nnx.State:
  """``params`` with ``kernel + scale * a @ b`` for each adapted kernel (in float32, cast back
  to the kernel's dtype); every other leaf unchanged.

  Raises:
    ValueError: an adapter whose layer the parameters lack or whose shapes differ.
  """
  by_path = _adapted_paths(params, adapters, spec)
  leaves = []
  for path, leaf in nnx.to_flat_state(params):
    name = by_path.get(tuple(path))
    if name is not None:
      a, b = adapters[name]['a'], adapters[name]['b']
      kernel = leaf[...]
      update = spec.scale * jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
      leaf = leaf.replace((kernel.astype(jnp.float32) + update).astype(kernel.dtype))
    leaves.append((path, leaf))
  return nnx.from_flat_state(leaves)


def _adapted_paths(params: nnx.State, adapters: dict, spec: LoraSpec) -> dict:
  """``{kernel path: adapter name}`` of the adapters present, their shapes checked."""
  kernels = target_kernels(params, spec)
  missing = sorted(set(adapters) - set(kernels))
  if missing:
    raise ValueError(f'LoRA adapters {missing[:4]} have no layer in the base model')
  by_path = {}
  for name, (path, shape) in kernels.items():
    if name in adapters:
      a, b = adapters[name]['a'], adapters[name]['b']
      if (a.shape[0], b.shape[1]) != tuple(shape) or a.shape[1] != b.shape[0]:
        raise ValueError(f'LoRA adapter {name} is {a.shape[0]}x{b.shape[1]}, the base layer '
                         f'{tuple(shape)}: an adapter applied to a base of other shapes')
      by_path[path] = name
  return by_path


def count_parameters(adapters: dict) -> int:
  """Scalars in the adapters."""
  return sum(x.size for x in jax.tree.leaves(adapters))


@functools.partial(jax.tree_util.register_dataclass, data_fields=('base', 'a', 'b', 'key'),
                   meta_fields=('scale', 'dropout'))
@dataclasses.dataclass(frozen=True)
class LowRankKernel:
  """A frozen kernel and its adapter, applied without merging: ``x base + scale (x' a) b``.

  The value of an adapted ``kernel`` parameter in :func:`low_rank`'s output; the models'
  ``Linear`` layers call :meth:`factors`. ``x'`` is ``x`` with entries dropped with probability
  ``dropout`` (and the rest scaled by ``1 / (1 - dropout)``) when a ``key`` is given.

  Fields: ``base [in, out]`` (the frozen kernel, any float dtype), ``a [in, r]``, ``b [r, out]``
  (float32 adapters), ``key`` (a PRNG key or None), ``scale`` = ``alpha / r``, ``dropout``.
  """
  base: Array
  a: Array
  b: Array
  key: Optional[Array]
  scale: float
  dropout: float

  @property
  def shape(self) -> tuple:
    return self.base.shape

  @property
  def dtype(self):
    return self.base.dtype

  def factors(self, x: Array) -> tuple[Array, Array, Array]:
    """``(x', a, scale b)`` in ``x``'s dtype for ``x [N, in]``: the update is ``(x' a) (scale b)``."""
    if self.key is not None and self.dropout > 0:
      keep = jax.random.bernoulli(self.key, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / (1.0 - self.dropout), 0).astype(x.dtype)
    return x, self.a.astype(x.dtype), (self.scale * self.b).astype(x.dtype)

  def update(self, x: Array) -> Array:
    """``scale (x' a) b`` for ``x [N, in]``: ``[N, out]`` in ``x``'s dtype (the adapter's term)."""
    x, a, b = self.factors(x)
    return (x @ a) @ b


def low_rank(params: nnx.State, adapters: dict, spec: LoraSpec,
             key: Optional[Array] = None) -> nnx.State:
  """``params`` with each adapted kernel's value a :class:`LowRankKernel` (the training path:
  the network then computes the same function as :func:`merge`'s parameters, to float rounding,
  without forming ``a @ b`` or a full-size kernel gradient). ``key``: LoRA dropout's key (None or
  ``spec.dropout == 0``: no dropout), folded with each layer's index.

  Raises:
    ValueError: an adapter whose layer the parameters lack or whose shapes differ.
  """
  by_path = _adapted_paths(params, adapters, spec)
  leaves = []
  for index, (path, leaf) in enumerate(nnx.to_flat_state(params)):
    name = by_path.get(tuple(path))
    if name is not None:
      layer_key = None if key is None or not spec.dropout else jax.random.fold_in(key, index)
      leaf = leaf.replace(LowRankKernel(leaf[...], adapters[name]['a'], adapters[name]['b'],
                                        layer_key, spec.scale, spec.dropout))
    leaves.append((path, leaf))
  return nnx.from_flat_state(leaves)
