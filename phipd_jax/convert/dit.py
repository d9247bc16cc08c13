"""DiT checkpoints -> the library's DiT (:class:`phipd_jax.models.dit.DiT`).

Two sources:

* ``'dit'``: facebookresearch/DiT (Peebles & Xie, *Scalable Diffusion Models with Transformers*,
  arXiv:2212.09748): a bare state dict (the released ``DiT-XL-2-256x256.pt``) or a training
  checkpoint ``{'model', 'ema', 'opt', 'args'}`` (EMA weights preferred). Keys ``x_embedder.proj``,
  ``t_embedder.mlp.{0,2}``, ``y_embedder.embedding_table`` (``num_classes + 1`` rows, the last
  the null class), ``pos_embed`` (the fixed 2-D sin-cos table), ``blocks.{i}.attn.{qkv,proj}``,
  ``blocks.{i}.mlp.{fc1,fc2}``, ``blocks.{i}.adaLN_modulation.1``, ``final_layer.linear``,
  ``final_layer.adaLN_modulation.1``.
* ``'diffusers_dit'``: a diffusers ``DiTTransformer2DModel`` folder (``config.json`` and
  ``diffusion_pytorch_model.safetensors`` / ``.bin``). diffusers stores the timestep and class
  embedders once per block (``transformer_blocks.{i}.norm1.emb``) and splits q, k and v; the
  conversion requires the per-block embedders to be equal (as in every conversion of a DiT
  checkpoint) and fuses q, k, v. diffusers embeds time with a frequency shift of 1 (its
  ``Timesteps(downscale_freq_shift=1)``), so the converted model sets
  ``model.time_frequency_shift = 1``; its second LayerNorm uses eps 1e-5 where DiT uses 1e-6
  (an output difference of order 1e-6, inside the tests' 1e-4).

What the state dict determines is inferred: patch size, input channels, width, depth, classes,
the learned-variance head (``2 C`` outputs), the token grid (from ``pos_embed``; the network
runs at any multiple of the patch). What it does not (the attention heads) comes from the named
model (``DiT-XL/2``), whose depth, width and patch must agree with the file.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import numpy as np
from flax import nnx

from phipd_jax import models
from phipd_jax.convert.reading import (ConversionError, StateDict, conv, count_blocks,
                                       fill_state, linear)
from phipd_jax.models.dit import DIT_SIZES
from phipd_jax.models.layers import sincos_positions_2d

_NAME = re.compile(r'^DiT-(S|B|L|XL)/(\d+)$')


def parse_model_name(name: str) -> tuple[str, int]:
  """``'DiT-XL/2'`` -> ``('XL', 2)``.

  Raises:
    ConversionError: not of the form ``DiT-{S,B,L,XL}/{patch}``.
  """
  match = _NAME.match(name or '')
  if not match:
    raise ConversionError(f'--model={name!r}: expected DiT-S/2 ... DiT-XL/8 (DiT-{{S,B,L,XL}}/'
                          '{patch}), the names of the DiT paper (Table 1)')
  return match.group(1), int(match.group(2))


def infer_dit(state: StateDict) -> dict:
  """What a facebookresearch DiT state dict determines: ``patch_size``, ``in_channels``,
  ``hidden``, ``depth``, ``num_classes``, ``learn_sigma``, ``grid`` (tokens per side, from
  ``pos_embed``).

  Raises:
    ConversionError: a key the layout needs is missing, or the shapes are inconsistent.
  """
  hidden, in_channels, patch, patch_w = state.shape('x_embedder.proj.weight')
  if patch != patch_w:
    raise ConversionError(f'{state.source}: x_embedder.proj.weight has a non-square patch '
                          f'{patch}x{patch_w}')
  depth = count_blocks(state)
  if depth == 0:
    raise ConversionError(f'{state.source}: no blocks.<i>. keys: not a facebookresearch DiT '
                          'state dict (a diffusers folder? use --from diffusers_dit)')
  out = state.shape('final_layer.linear.weight')[0]
  if out % (patch * patch) or out // (patch * patch) not in (in_channels, 2 * in_channels):
    raise ConversionError(f'{state.source}: final_layer.linear.weight has {out} outputs; a DiT '
                          f'with patch {patch} and {in_channels} channels has {patch * patch} x '
                          f'{in_channels} or x {2 * in_channels} (learned sigma)')
  num_classes = 0
  if 'y_embedder.embedding_table.weight' in state:
    num_classes = state.shape('y_embedder.embedding_table.weight')[0] - 1
  tokens = state.shape('pos_embed')[1] if 'pos_embed' in state else 0
  grid = int(round(np.sqrt(tokens)))
  if tokens and grid * grid != tokens:
    raise ConversionError(f'{state.source}: pos_embed has {tokens} tokens, not a square grid')
  return dict(patch_size=patch, in_channels=in_channels, hidden=hidden, depth=depth,
              num_classes=num_classes, learn_sigma=out // (patch * patch) == 2 * in_channels,
              grid=grid)


def model_settings(inferred: Mapping, model_name: Optional[str] = None,
                   heads: Optional[int] = None) -> dict:
  """The run's ``config.model`` section for an inferred DiT: the named size when the file
  matches one (``model_name`` checked against the file), else ``size='custom'`` with ``heads``.

  Raises:
    ConversionError: the named model disagrees with the file (naming both values), or neither
      a name nor ``heads`` gives the attention heads.
  """
  settings = dict(name='dit', patch_size=inferred['patch_size'],
                  num_classes=inferred['num_classes'], learn_sigma=inferred['learn_sigma'])
  if model_name:
    size, patch = parse_model_name(model_name)
    depth, hidden, named_heads = DIT_SIZES[size]
    for field, named, found in (('patch size', patch, inferred['patch_size']),
                                ('depth', depth, inferred['depth']),
                                ('hidden size', hidden, inferred['hidden'])):
      if named != found:
        raise ConversionError(f'--model={model_name} has {field} {named}, the checkpoint '
                              f'{found}')
    if heads is not None and heads != named_heads:
      raise ConversionError(f'--model={model_name} has {named_heads} heads, the config {heads}')
    return dict(settings, size=size)
  if heads is None:
    raise ConversionError('the attention heads are not in a DiT state dict: pass --model '
                          '(e.g. DiT-XL/2)')
  for size, (depth, hidden, named_heads) in DIT_SIZES.items():
    if (depth, hidden, named_heads) == (inferred['depth'], inferred['hidden'], heads):
      return dict(settings, size=size)
  return dict(settings, size='custom', depth=inferred['depth'], hidden=inferred['hidden'],
              heads=heads)


def abstract_model(model: Mapping, in_channels: int, image_size: int) -> nnx.State:
  """The parameter state (shapes only) of the DiT a ``config.model`` section builds."""
  kwargs = dict(model)
  name = kwargs.pop('name')
  module = nnx.eval_shape(lambda: models.build(name, rngs=nnx.Rngs(0), in_channels=in_channels,
                                               image_size=image_size, **kwargs))
  return nnx.state(module, nnx.Param)


def _start(state: StateDict, model: Mapping, in_channels: int, image_size: int, patch_key: str):
  """What both DiT converters begin with: the library model's abstract parameters, its
  dimensions (``hidden``, ``out``, ``mlp``, ``depth``, ``frequency``), the values dict with the
  patch embedding (``patch_key``'s conv) filled, and ``dense(target, source, in, out)``, which
  takes a torch Linear's weight and bias into it."""
  template = abstract_model(model, in_channels, image_size)
  shapes = models.parameter_shapes(template)
  dims = dict(hidden=shapes['time_embed.linear2.kernel'][0], out=shapes['final.linear.kernel'][1],
              mlp=shapes['blocks.0.mlp_in.kernel'][1],
              frequency=shapes['time_embed.linear1.kernel'][0],
              depth=sum(1 for n in shapes if n.startswith('blocks.') and n.endswith('adaln.bias')))
  values = {}

  def dense(target, source, width_in, width_out):
    values[f'{target}.kernel'] = linear(state.take(f'{source}.weight', (width_out, width_in)))
    values[f'{target}.bias'] = state.take(f'{source}.bias', (width_out,))

  patch, hidden = model['patch_size'], dims['hidden']
  values['patch_embed.kernel'] = conv(state.take(f'{patch_key}.weight',
                                                 (hidden, in_channels, patch, patch)))
  values['patch_embed.bias'] = state.take(f'{patch_key}.bias', (hidden,))
  return template, dims, values, dense


def _check_positions(state: StateDict, key: str, grid: int, hidden: int):
  """The checkpoint's fixed table must be the sin-cos table the library recomputes."""
  table = state.take(key, (1, grid * grid, hidden))[0]
  expected = np.asarray(sincos_positions_2d(grid, grid, hidden))
  error = float(np.max(np.abs(table - expected)))
  if error > 1e-4:
    raise ConversionError(f'{state.source}: {key} is not the fixed 2-D sin-cos table the model '
                          f'computes (max difference {error:.3g}); learned positions are not '
                          'supported')


def convert_dit(state: StateDict, model: Mapping, in_channels: int, image_size: int) -> nnx.State:
  """The parameters of the library DiT ``model`` (a ``config.model`` section) from a
  facebookresearch DiT state dict, every key read and every shape checked.

  Raises:
    ConversionError: a missing or unexpected key, a shape mismatch (naming the key and both
      shapes), or a positional table other than the fixed sin-cos one.
  """
  template, dims, values, dense = _start(state, model, in_channels, image_size, 'x_embedder.proj')
  hidden, out, mlp, depth = dims['hidden'], dims['out'], dims['mlp'], dims['depth']
  dense('time_embed.linear1', 't_embedder.mlp.0', dims['frequency'], hidden)
  dense('time_embed.linear2', 't_embedder.mlp.2', hidden, hidden)
  if model['num_classes']:
    values['label_embed.embedding'] = state.take('y_embedder.embedding_table.weight',
                                                 (model['num_classes'] + 1, hidden))
  for i in range(depth):
    block, source = f'blocks.{i}', f'blocks.{i}'
    dense(f'{block}.attn.qkv', f'{source}.attn.qkv', hidden, 3 * hidden)
    dense(f'{block}.attn.proj', f'{source}.attn.proj', hidden, hidden)
    dense(f'{block}.mlp_in', f'{source}.mlp.fc1', hidden, mlp)
    dense(f'{block}.mlp_out', f'{source}.mlp.fc2', mlp, hidden)
    dense(f'{block}.adaln', f'{source}.adaLN_modulation.1', hidden, 6 * hidden)
  dense('final.adaln', 'final_layer.adaLN_modulation.1', hidden, 2 * hidden)
  dense('final.linear', 'final_layer.linear', hidden, out)
  if 'pos_embed' in state:
    grid = int(round(np.sqrt(state.shape('pos_embed')[1])))
    _check_positions(state, 'pos_embed', grid, hidden)
  converted = fill_state(template, values, state.source)
  state.check_all_used()
  return converted


# ---------------------------------------------------------------------------------------------
# diffusers DiTTransformer2DModel.


def infer_diffusers_dit(config: Mapping) -> dict:
  """What a diffusers ``DiTTransformer2DModel`` ``config.json`` gives: the :func:`infer_dit`
  fields plus ``heads``.

  Raises:
    ConversionError: a field this conversion does not support (naming it).
  """
  def get(name, default=None):
    value = config.get(name, default)
    if value is None:
      raise ConversionError(f'config.json: {name} is missing')
    return value

  for name, supported in (('norm_type', 'ada_norm_zero'), ('activation_fn', 'gelu-approximate')):
    if config.get(name, supported) != supported:
      raise ConversionError(f'config.json: {name}={config.get(name)!r} is not supported (a DiT '
                            f'has {supported!r})')
  if config.get('norm_elementwise_affine'):
    raise ConversionError('config.json: norm_elementwise_affine=True is not supported (DiT\'s '
                          'LayerNorms have no affine parameters)')
  heads, head_dim = int(get('num_attention_heads')), int(get('attention_head_dim'))
  in_channels = int(get('in_channels'))
  out_channels = int(config.get('out_channels') or in_channels)
  if out_channels not in (in_channels, 2 * in_channels):
    raise ConversionError(f'config.json: out_channels={out_channels} must be in_channels '
                          f'({in_channels}) or twice it (learned sigma)')
  patch = int(get('patch_size'))
  sample = int(get('sample_size'))
  return dict(patch_size=patch, in_channels=in_channels, hidden=heads * head_dim,
              depth=int(get('num_layers')), num_classes=int(config.get('num_embeds_ada_norm') or 0),
              learn_sigma=out_channels == 2 * in_channels, grid=sample // patch, heads=heads,
              image_size=sample)


def convert_diffusers_dit(state: StateDict, model: Mapping, in_channels: int,
                          image_size: int) -> nnx.State:
  """The parameters of the library DiT ``model`` from a diffusers ``DiTTransformer2DModel``
  state dict (``model`` must set ``time_frequency_shift=1``).

  Raises:
    ConversionError: a missing or unexpected key, a shape mismatch, or per-block time / class
      embedders that differ between blocks (the library's DiT has one).
  """
  if model.get('time_frequency_shift') != 1:
    raise ConversionError('diffusers DiT weights need model.time_frequency_shift=1')
  template, dims, values, dense = _start(state, model, in_channels, image_size, 'pos_embed.proj')
  hidden, out, mlp, depth = dims['hidden'], dims['out'], dims['mlp'], dims['depth']
  embedder = 'transformer_blocks.{}.norm1.emb.'
  # Block 0's embedders, kept (small) to compare every other block's with.
  first = {k[len(embedder.format(0)):]: state.peek(k) for k in state.keys()
           if k.startswith(embedder.format(0))}
  shared = {'time_embed.linear1': ('timestep_embedder.linear_1', dims['frequency'], hidden),
            'time_embed.linear2': ('timestep_embedder.linear_2', hidden, hidden)}
  for target, (source, width_in, width_out) in shared.items():
    dense(target, embedder.format(0) + source, width_in, width_out)
  label_key = embedder.format(0) + 'class_embedder.embedding_table.weight'
  if model['num_classes']:
    values['label_embed.embedding'] = state.take(label_key, (model['num_classes'] + 1, hidden))
  for i in range(depth):
    prefix = f'transformer_blocks.{i}'
    if i:  # The same embedders in every block (as converted from DiT), read and compared.
      for name, reference in first.items():
        value = state.take(embedder.format(i) + name, reference.shape)
        if not np.array_equal(value, reference):
          raise ConversionError(f'{state.source}: {embedder.format(i) + name} differs from block '
                                "0's: the library's DiT has one time / class embedder for all "
                                'blocks')
    weights = [state.take(f'{prefix}.attn1.to_{n}.weight', (hidden, hidden)) for n in 'qkv']
    biases = [state.take(f'{prefix}.attn1.to_{n}.bias', (hidden,)) for n in 'qkv']
    values[f'blocks.{i}.attn.qkv.kernel'] = linear(np.concatenate(weights, 0))
    values[f'blocks.{i}.attn.qkv.bias'] = np.concatenate(biases, 0)
    dense(f'blocks.{i}.attn.proj', f'{prefix}.attn1.to_out.0', hidden, hidden)
    dense(f'blocks.{i}.mlp_in', f'{prefix}.ff.net.0.proj', hidden, mlp)
    dense(f'blocks.{i}.mlp_out', f'{prefix}.ff.net.2', mlp, hidden)
    dense(f'blocks.{i}.adaln', f'{prefix}.norm1.linear', hidden, 6 * hidden)
  dense('final.adaln', 'proj_out_1', hidden, 2 * hidden)
  dense('final.linear', 'proj_out_2', hidden, out)
  converted = fill_state(template, values, state.source)
  state.check_all_used()
  return converted
