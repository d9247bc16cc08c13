"""JiT and Spectral Forcing PyTorch checkpoints -> the library's JiT (:mod:`phipd_jax.models.jit`).

Sources: Li & He, *Back to Basics: Let Denoising Generative Models Denoise*, arXiv:2511.13720,
code ``LTH14/JiT`` (``model_jit.py``, ``denoiser.py``, ``util/misc.py``); Fan et al., *Show the
Signal, Hide the Noise: Spectral Forcing for Pixel-Space Diffusion*, arXiv:2606.15236, code
``WeichenFan/Spectral_Forcing`` (built on the JiT code; same files). The layout below was read
from the Spectral Forcing repository and from copies of JiT's ``model_jit.py``; the ``LTH14/JiT``
repository itself was not available to this project.

**Checkpoint layout.** The training script saves ``{'model', 'model_ema1', 'model_ema2',
'optimizer', 'epoch', 'args'}``: three state dicts of the denoiser (raw weights, the EMA with
decay ``args.ema_decay1`` = 0.9999, the one sampling uses, and the EMA with ``args.ema_decay2``
= 0.9996), the optimizer state, and the ``argparse.Namespace`` of the run. The denoiser holds
the network as ``net``, so every key starts with ``net.``. :func:`select_jit_state_dict` takes
``model_ema1`` first (:data:`EMA_KEYS`), strips ``net.`` / ``module.`` / ``_orig_mod.``;
:func:`read_jit_checkpoint` reads a ``.pth`` with ``weights_only=True`` allowing only
``argparse.Namespace`` besides tensors (a plain ``torch.load(weights_only=True)`` refuses the
``args`` entry).

Network keys (``D`` hidden, ``d'`` bottleneck, ``p`` patch, ``C`` channels, ``K`` classes, ``L``
in-context tokens, ``h`` head dim) and where they go:

* ``x_embedder.proj1.weight [d', C, p, p]`` (Conv2d, no bias) -> ``patch_embed.kernel``; in a
  Spectral Forcing checkpoint (DCT patchify on, its default) it is a Linear ``[d', C p p]`` over
  patches flattened channel-major, the same map; ``x_embedder.proj2.weight [D, d', 1, 1]`` /
  ``.bias`` (1x1 Conv2d) -> ``patch_project``.
* ``pos_embed [1, N, D]``: the fixed 2-D sin-cos table (a parameter with ``requires_grad=False``,
  hence in the state dict and in both EMAs). The library recomputes it per grid; the converter
  checks that the stored table is that table (max abs difference <= 1e-2, room for EMA rounding)
  and reads the image size from ``N = (image_size / p)^2``.
* ``t_embedder.mlp.{0,2}`` -> ``time_embed.linear{1,2}``; ``y_embedder.embedding_table.weight
  [K + 1, D]`` -> ``label_embed.embedding`` (row ``K`` is the null label of label dropout and of
  the CFG unconditional branch, as in the library); ``in_context_posemb [1, L, D]`` ->
  ``in_context_embed``.
* ``blocks.i.{norm1,norm2}.weight`` -> ``.scale``; ``blocks.i.attn.{qkv,proj}``;
  ``blocks.i.attn.{q_norm,k_norm}.weight [h]``; ``blocks.i.mlp.{w12,w3}`` (SwiGLU);
  ``blocks.i.adaLN_modulation.1`` -> ``blocks.i.adaln``.
* ``final_layer.norm_final.weight`` -> ``final_norm.scale``; ``final_layer.linear`` ->
  ``final_linear``; ``final_layer.adaLN_modulation.1`` -> ``final_adaln``.
* RoPE tables are plain attributes upstream (not in the state dict); ``feat_rope*.freqs_cos`` /
  ``freqs_sin`` and Spectral Forcing's ``x_embedder.dct_mat`` are skipped if a variant saved them.

An unconditional JiT (``K = 0``) still has a one-row table (the null label); the library's
unconditional JiT has none, so that row is folded, exactly, into ``time_embed.linear2.bias`` and
``in_context_embed`` (``c = t_emb + y_0``, in-context tokens ``y_0 + posemb``).

**Time.** JiT's ``t`` is 1 at data (``z = t x + (1 - t) e``), fed raw to the time embedding; the
library's ``t`` is 0 at data, so the converted model is called with ``t_library = 1 - t_jit``
(the library's JiT converts back at its input). The network predicts ``x`` in both.

**Inferred from the state dict** (:func:`infer_jit_settings`): patch size, channels, hidden size,
depth, heads (from the qk-norm weight, ``h = D / heads``), bottleneck, classes, in-context
length, image size, and whether Spectral Forcing's DCT patchify was on. **Not in the weights**:
the block at which the in-context tokens are prepended (taken from the size name, JiT's table
and :data:`phipd_jax.models.jit.JIT_SIZES` agree), and Spectral Forcing's ``--window_size``,
``--disable_dct_scale_schedule`` and ``--dct_fixed_scale`` (read from the checkpoint's ``args``
when given, else the released defaults: one DCT over the whole image, the linear schedule
``c = 0.05 + 0.95 t_data``, slope 30; a fixed scale ``s`` becomes ``c_min = c_max = 0.05 + 0.95
s``). The JiT name (``'JiT-B/16'``, :func:`parse_jit_model_name`) is optional: the size is
matched from the dimensions, and a name, when given, must agree with them.

Not converted: a ``pred_param='hybrid'`` Spectral Forcing model (a 6-channel output head; the
library's JiT outputs ``C`` channels), JiT-700M / 2B / 7B (no library size), learned position
tables.

Errors: every failure is a :class:`~phipd_jax.convert.reading.ConversionError` naming the
checkpoint: no state dict inside, a missing key, a key of the wrong shape (both shapes named), an
unexpected key, an unknown JiT name, a name that disagrees with the weights (both values named),
a model setting that disagrees with the weights (Spectral Forcing on / off, sizes).

Usage::

  state, model_kwargs = load_jit_checkpoint('checkpoint-last.pth')   # EMA 1 by default
  abstract = nnx.eval_shape(lambda: build_jit(rngs=nnx.Rngs(0), **model_kwargs))
  model = nnx.merge(nnx.graphdef(abstract), state)
  x0_hat = model(x_t, 1.0 - t_jit, labels)  # the library's t: 0 = data
"""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any, Mapping, Optional

import numpy as np
from flax import nnx

from phipd_jax.convert.reading import (TORCH_SUFFIXES, ConversionError, StateDict, conv,
                                       count_blocks, fill_state, is_state_dict, linear,
                                       read_checkpoint)
from phipd_jax.models import build_jit, spectral_forcing_from_settings
from phipd_jax.models.jit import JIT_SIZES
from phipd_jax.models.layers import sincos_positions_2d

# Checkpoint entries with EMA weights, preferred first: JiT samples with 'model_ema1'.
EMA_KEYS = ('model_ema1', 'model_ema2')
# Entries with the raw (non-EMA) weights, used when no EMA is saved.
RAW_KEYS = ('model', 'state_dict')
# Wrapper prefixes removed from every key: the denoiser's net, DDP, torch.compile.
WRAPPER_PREFIXES = ('net.', 'module.', '_orig_mod.')
# Buffers the library recomputes; skipped when a variant saved them.
_BUFFER_PATTERN = re.compile(r'^(feat_rope\w*\.freqs_(cos|sin)|x_embedder\.dct_mat)$')
# Spectral Forcing constants not exposed as flags by its training script (``model_jit.py``).
SF_KAPPA, SF_MIN_KEEP, SF_MAX_KEEP = 30.0, 0.05, 1.0
# Max abs difference tolerated between the stored position table and the library's sin-cos one.
POSITION_TOLERANCE = 1e-2

_NAME_PATTERN = re.compile(r'^JiT-([BLHG])/(\d+)$')
_ARCHITECTURE = ('depth', 'hidden', 'heads', 'bottleneck')


def read_jit_checkpoint(path: str):
  """:func:`~phipd_jax.convert.reading.read_checkpoint` that also reads JiT's saved ``args``.

  A JiT training checkpoint pickles an ``argparse.Namespace``, which ``torch.load(weights_only=
  True)`` refuses; this allows that one class (and no other) for ``.pt`` / ``.pth`` files.

  Raises:
    ConversionError: as ``read_checkpoint``.
  """
  if os.path.splitext(path)[1].lower() in TORCH_SUFFIXES:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      return read_checkpoint(path)  # Raises the reader's own "needs torch" error.
    with torch.serialization.safe_globals([argparse.Namespace]):
      return read_checkpoint(path)
  return read_checkpoint(path)


def select_jit_state_dict(obj, path: str = '<checkpoint>',
                          which: Optional[str] = None) -> StateDict:
  """The network weights of what :func:`read_jit_checkpoint` returned, as a :class:`StateDict`.

  A training checkpoint dict gives ``which`` if named, else the first of :data:`EMA_KEYS`, else
  of :data:`RAW_KEYS`; a bare state dict is taken as is. Prefixes in :data:`WRAPPER_PREFIXES`
  shared by every key are removed (``net.`` of the denoiser, ``module.`` of DDP). The result's
  ``source`` names the file, the entry and the removed prefixes.

  Raises:
    ConversionError: no state dict inside, or ``which`` absent.
  """
  chosen = ''
  if not is_state_dict(obj):
    if not isinstance(obj, Mapping):
      raise ConversionError(f'{path}: holds no state dict (a mapping of tensors); found '
                            f'{type(obj).__name__}')
    if which is not None:
      candidates = (which,)
    else:
      candidates = EMA_KEYS + RAW_KEYS
    for name in candidates:
      if is_state_dict(obj.get(name)):
        chosen = name
        break
    if not chosen:
      raise ConversionError(f'{path}: holds no state dict under {list(candidates)}; its entries '
                            f'are {sorted(map(str, obj))}')
    obj = obj[chosen]
  arrays = dict(obj)
  removed = []
  changed = True
  while changed:
    changed = False
    for prefix in WRAPPER_PREFIXES:
      if all(k.startswith(prefix) for k in arrays):
        arrays = {k[len(prefix):]: v for k, v in arrays.items()}
        removed.append(prefix)
        changed = True
  notes = []
  if chosen:
    notes.append(f'{chosen}{" (EMA)" if chosen in EMA_KEYS else ""}')
  if removed:
    notes.append('prefix ' + ''.join(removed) + ' removed')
  return StateDict(arrays, path + (f' [{"; ".join(notes)}]' if notes else ''))


def jit_checkpoint_args(obj) -> dict:
  """The run's ``args`` saved in a JiT training checkpoint as a dict (empty if none)."""
  if not isinstance(obj, Mapping) or is_state_dict(obj):
    return {}
  args = obj.get('args')
  if isinstance(args, argparse.Namespace):
    return dict(vars(args))
  return dict(args) if isinstance(args, Mapping) else {}


def parse_jit_model_name(name: str) -> tuple[str, int]:
  """``'JiT-B/16'`` -> ``('B', 16)``: the :data:`~phipd_jax.models.jit.JIT_SIZES` key and patch.

  JiT's names are ``JiT-{B,L,H,G}/{patch}`` (B/16, B/32, L/16, L/32, H/16, H/32 in JiT; B/8 in
  Spectral Forcing; G/16 in the paper); their depth, width, heads, bottleneck and in-context
  start equal the library's sizes of the same letter.

  Raises:
    ConversionError: any other name (JiT-700M, JiT-2B, JiT-7B have no library size).
  """
  match = _NAME_PATTERN.match(str(name))
  if not match or int(match.group(2)) < 1:
    raise ConversionError(f'unknown JiT model name {name!r}: expected JiT-B/p, JiT-L/p, JiT-H/p '
                          'or JiT-G/p (e.g. JiT-B/16); JiT-700M, JiT-2B and JiT-7B have no size in '
                          f'this library ({sorted(JIT_SIZES)})')
  return match.group(1), int(match.group(2))


def infer_jit_settings(state: StateDict, *, in_channels: Optional[int] = None,
                       patch_size: Optional[int] = None) -> dict:
  """What the weights determine about the network.

  Returns a dict: ``patch_size``, ``in_channels``, ``hidden``, ``depth``, ``heads``,
  ``bottleneck``, ``num_classes`` (rows of the label table minus the null row),
  ``in_context_len`` (0 without ``in_context_posemb``), ``image_size`` (from ``pos_embed``; None
  without it), ``dct_patchify`` (True for Spectral Forcing's Linear patch projection) and ``size``
  (the :data:`JIT_SIZES` key with these depth, width, heads and bottleneck, or None).

  In the Spectral Forcing layout the patch projection is ``[d', C p p]``, which fixes only
  ``C p^2``: ``patch_size`` (if given) or ``in_channels`` (default 3, the value its denoiser
  hard-codes) resolves it.

  Raises:
    ConversionError: a key the inference needs is missing, shapes contradict each other, or the
      output head predicts other channels than it reads (``pred_param='hybrid'``).
  """
  source = state.source
  proj1 = state.shape('x_embedder.proj1.weight')
  proj2 = state.shape('x_embedder.proj2.weight')
  hidden, bottleneck = proj2[0], proj2[1]
  if len(proj1) == 4:
    dct = False
    channels, patch = proj1[1], proj1[2]
    if proj1[2] != proj1[3]:
      raise ConversionError(f'{source}: x_embedder.proj1.weight {proj1} has a non-square patch')
  elif len(proj1) == 2:
    dct = True
    if patch_size is not None:
      patch = patch_size
      channels = proj1[1] // (patch * patch)
    else:
      channels = 3 if in_channels is None else in_channels
      patch = math.isqrt(proj1[1] // max(channels, 1))
    if channels * patch * patch != proj1[1]:
      raise ConversionError(f'{source}: x_embedder.proj1.weight {proj1} is not [bottleneck, C p p] '
                            f'for C={channels}' + (f', p={patch_size}' if patch_size else ''))
  else:
    raise ConversionError(f'{source}: x_embedder.proj1.weight has shape {proj1}, expected '
                          '[bottleneck, C, p, p] (JiT) or [bottleneck, C p p] (Spectral Forcing)')
  if in_channels is not None and channels != in_channels:
    raise ConversionError(f'{source}: the weights read {channels} channels, in_channels='
                          f'{in_channels} was given')
  if patch_size is not None and patch != patch_size:
    raise ConversionError(f'{source}: the weights have patch size {patch}, patch_size='
                          f'{patch_size} was given')
  out = state.shape('final_layer.linear.weight')[0]
  if out != patch * patch * channels:
    raise ConversionError(
        f'{source}: final_layer.linear.weight predicts {out / (patch * patch):g} channels per '
        f'pixel, the input has {channels}: a pred_param="hybrid" head (x and v, 6 channels) has '
        'no place in the library\'s JiT')
  head_dim = state.shape('blocks.0.attn.q_norm.weight')[0]
  if not head_dim or hidden % head_dim:
    raise ConversionError(f'{source}: qk-norm width {head_dim} does not divide hidden {hidden}')
  rows = state.shape('y_embedder.embedding_table.weight')[0]
  in_context = state.shape('in_context_posemb')[1] if 'in_context_posemb' in state else 0
  image_size = None
  if 'pos_embed' in state:
    tokens = state.shape('pos_embed')[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
      raise ConversionError(f'{source}: pos_embed has {tokens} tokens, not a square grid')
    image_size = grid * patch
  settings = dict(patch_size=patch, in_channels=channels, hidden=hidden, depth=count_blocks(state),
                  heads=hidden // head_dim, bottleneck=bottleneck, num_classes=rows - 1,
                  in_context_len=in_context, image_size=image_size, dct_patchify=dct)
  settings['size'] = next((name for name, dims in JIT_SIZES.items()
                           if dims[:4] == tuple(settings[k] for k in _ARCHITECTURE)), None)
  return settings


def _spectral_forcing_settings(args: Mapping[str, Any], image_size: int) -> dict:
  """The library's ``model.spectral_forcing`` dict of a Spectral Forcing run's ``args``."""
  window = args.get('window_size') or None
  if window == image_size:
    window = None  # One DCT over the whole image, the library's None.
  c_min, c_max = SF_MIN_KEEP, SF_MAX_KEEP
  if args.get('disable_dct_scale_schedule'):  # A time-independent cutoff.
    scale = min(max(float(args.get('dct_fixed_scale', 1.0)), 0.0), 1.0)
    c_min = c_max = SF_MIN_KEEP + (SF_MAX_KEEP - SF_MIN_KEEP) * scale
  return dict(schedule='linear', kappa=SF_KAPPA, c_min=c_min, c_max=c_max, window=window)


def jit_model_kwargs(state: StateDict, model_name: Optional[str] = None, *,
                     args: Optional[Mapping[str, Any]] = None, in_channels: Optional[int] = None,
                     image_size: Optional[int] = None) -> dict:
  """The :func:`phipd_jax.models.build_jit` settings of the network in ``state``.

  Args:
    state: the network's weights (:func:`select_jit_state_dict`).
    model_name: JiT's name (``'JiT-B/16'``); default ``args['model']``, else the size is matched
      from the weights' dimensions.
    args: the checkpoint's run arguments (:func:`jit_checkpoint_args`): ``model``, ``img_size``,
      ``class_num``, and Spectral Forcing's ``window_size``, ``disable_dct_scale_schedule``,
      ``dct_fixed_scale``.
    in_channels, image_size: for weights that do not fix them (Spectral Forcing's layout, no
      ``pos_embed``).

  Returns:
    ``size``, ``patch_size``, ``in_channels``, ``image_size``, ``num_classes``,
    ``in_context_len``, ``spectral_forcing`` (a settings dict, or None for plain JiT).

  Raises:
    ConversionError: an unknown name, a name or argument that disagrees with the weights (both
      values named), dimensions of no library size, no image size.
  """
  args = dict(args or {})
  source = state.source
  model_name = model_name if model_name is not None else args.get('model')
  named = parse_jit_model_name(model_name) if model_name is not None else None
  # A name fixes the patch of Spectral Forcing's [d', C p p] layout; a Conv2d layout has its own.
  linear_layout = len(state.shape('x_embedder.proj1.weight')) == 2
  settings = infer_jit_settings(state, in_channels=in_channels,
                                patch_size=named[1] if named and linear_layout else None)
  if named:
    size, patch = named
    expected = dict(zip(_ARCHITECTURE, JIT_SIZES[size][:4]), patch_size=patch)
    for key, value in expected.items():
      if settings[key] != value:
        raise ConversionError(f'{source}: model {model_name!r} has {key} {value}, the state dict '
                              f'{key} {settings[key]}')
  else:
    size = settings['size']
    if size is None:
      found = ', '.join(f'{k} {settings[k]}' for k in _ARCHITECTURE)
      raise ConversionError(f'{source}: no library JiT size has {found}; known sizes '
                            f'{ {k: v[:4] for k, v in JIT_SIZES.items()} }')
  for given, key, arg in ((image_size, 'image_size', 'img_size'),
                          (args.get('img_size'), 'image_size', 'img_size'),
                          (args.get('class_num'), 'num_classes', 'class_num')):
    if given is not None and settings[key] is not None and int(given) != settings[key]:
      raise ConversionError(f'{source}: {arg} {given} given, the state dict has {key} '
                            f'{settings[key]}')
  resolved_size = settings['image_size'] or image_size or args.get('img_size')
  if resolved_size is None:
    raise ConversionError(f'{source}: no pos_embed to read the image size from; give image_size')
  forcing = (_spectral_forcing_settings(args, int(resolved_size)) if settings['dct_patchify']
             else None)
  return dict(size=size, patch_size=settings['patch_size'], in_channels=settings['in_channels'],
              image_size=int(resolved_size), num_classes=settings['num_classes'],
              in_context_len=settings['in_context_len'], spectral_forcing=forcing)


def convert_jit(state: StateDict, model_kwargs: Mapping[str, Any]) -> nnx.State:
  """The library JiT's ``nnx.Param`` state holding the weights of ``state``.

  Args:
    state: JiT / Spectral Forcing network weights, prefixes removed (:func:`select_jit_state_dict`).
    model_kwargs: :func:`phipd_jax.models.build_jit` settings (``size``, ``patch_size``,
      ``in_channels``, ``image_size``, ``num_classes``, ``in_context_len``, ``spectral_forcing``,
      optionally ``dtype``, ``param_dtype``, ...), e.g. from :func:`jit_model_kwargs`. Every key's
      shape is checked against the model they build.

  Raises:
    ConversionError: a setting the builder rejects, Spectral Forcing on where the weights were
      trained without it (or off where they were trained with it), a missing key, a key of the
      wrong shape, an unexpected key, a position table that is not the fixed sin-cos one.
  """
  source = state.source
  kwargs = dict(model_kwargs)
  missing = [k for k in ('size', 'patch_size', 'in_channels', 'image_size') if k not in kwargs]
  if missing:
    raise ConversionError(f'{source}: model_kwargs lack {missing}')
  dct = len(state.shape('x_embedder.proj1.weight')) == 2
  try:
    forcing = spectral_forcing_from_settings(kwargs.get('spectral_forcing'))
    model = nnx.eval_shape(lambda: build_jit(rngs=nnx.Rngs(0), **kwargs))
  except (TypeError, ValueError) as error:
    raise ConversionError(f'{source}: model settings {kwargs} rejected: {error}') from None
  if dct != (forcing is not None):
    raise ConversionError(
        f'{source}: the weights are ' + ('a Spectral Forcing model (DCT patchify, '
                                         'x_embedder.proj1 is a Linear)' if dct else
                                         'a plain JiT (x_embedder.proj1 is a Conv2d)') +
        f', model_kwargs set spectral_forcing={kwargs.get("spectral_forcing")!r}')
  template = nnx.state(model, nnx.Param)
  shapes = {'.'.join(map(str, path)): tuple(leaf.shape)
            for path, leaf in nnx.to_flat_state(template)}
  values: dict[str, np.ndarray] = {}

  def dense(key: str, name: str):
    fan_in, fan_out = shapes[f'{name}.kernel']
    values[f'{name}.kernel'] = linear(state.take(f'{key}.weight', (fan_out, fan_in)))
    values[f'{name}.bias'] = state.take(f'{key}.bias', shapes[f'{name}.bias'])

  def norm(key: str, name: str):
    values[f'{name}.scale'] = state.take(f'{key}.weight', shapes[f'{name}.scale'])

  patch, _, channels, bottleneck = shapes['patch_embed.kernel']
  hidden = shapes['patch_project.kernel'][1]
  if dct:  # Patches flattened (channel, row, column), the Conv2d weight's order.
    weight = state.take('x_embedder.proj1.weight', (bottleneck, channels * patch * patch))
    weight = weight.reshape(bottleneck, channels, patch, patch)
  else:
    weight = state.take('x_embedder.proj1.weight', (bottleneck, channels, patch, patch))
  values['patch_embed.kernel'] = conv(weight)
  values['patch_project.kernel'] = linear(
      state.take('x_embedder.proj2.weight', (hidden, bottleneck, 1, 1))[:, :, 0, 0])
  values['patch_project.bias'] = state.take('x_embedder.proj2.bias', (hidden,))

  grid = int(kwargs['image_size']) // patch
  table = state.take('pos_embed', (1, grid * grid, hidden))[0]
  error = float(np.max(np.abs(table - np.asarray(sincos_positions_2d(grid, grid, hidden)))))
  if error > POSITION_TOLERANCE:
    raise ConversionError(f'{source}: pos_embed differs from the fixed 2-D sin-cos table by '
                          f'{error:.3g} (max abs): a learned position table has no place in the '
                          'library\'s JiT')

  dense('t_embedder.mlp.0', 'time_embed.linear1')
  dense('t_embedder.mlp.2', 'time_embed.linear2')
  num_classes = int(kwargs.get('num_classes', 0))
  if num_classes:
    values['label_embed.embedding'] = state.take('y_embedder.embedding_table.weight',
                                                 shapes['label_embed.embedding'])
    null_row = None
  else:  # Only the null row: a constant added to c and to the in-context tokens.
    null_row = state.take('y_embedder.embedding_table.weight', (1, hidden))[0]
    values['time_embed.linear2.bias'] = values['time_embed.linear2.bias'] + null_row
  if 'in_context_embed' in shapes:
    length = shapes['in_context_embed'][0]
    context = state.take('in_context_posemb', (1, length, hidden))[0]
    values['in_context_embed'] = context if null_row is None else context + null_row

  depth = len({path[1] for path in (k.split('.') for k in shapes) if path[0] == 'blocks'})
  for i in range(depth):
    key, name = f'blocks.{i}', f'blocks.{i}'
    norm(f'{key}.norm1', f'{name}.norm1')
    norm(f'{key}.norm2', f'{name}.norm2')
    dense(f'{key}.attn.qkv', f'{name}.attn.qkv')
    norm(f'{key}.attn.q_norm', f'{name}.attn.q_norm')
    norm(f'{key}.attn.k_norm', f'{name}.attn.k_norm')
    dense(f'{key}.attn.proj', f'{name}.attn.proj')
    dense(f'{key}.mlp.w12', f'{name}.mlp.w12')
    dense(f'{key}.mlp.w3', f'{name}.mlp.w3')
    dense(f'{key}.adaLN_modulation.1', f'{name}.adaln')
  norm('final_layer.norm_final', 'final_norm')
  dense('final_layer.linear', 'final_linear')
  dense('final_layer.adaLN_modulation.1', 'final_adaln')

  state.skip(k for k in state.keys() if _BUFFER_PATTERN.match(k))
  state.check_all_used()
  return fill_state(template, values, source)


def load_jit_checkpoint(path: str, model_name: Optional[str] = None, *,
                        which: Optional[str] = None, **overrides) -> tuple[nnx.State, dict]:
  """Reads, selects (EMA 1 by default) and converts a JiT / Spectral Forcing checkpoint.

  Returns:
    ``(params, model_kwargs)``: the ``nnx.Param`` state and the :func:`build_jit` settings
    (:func:`jit_model_kwargs`, then ``overrides`` such as ``dtype``) it was converted for.

  Raises:
    ConversionError: see the module docstring.
  """
  obj = read_jit_checkpoint(path)
  state = select_jit_state_dict(obj, path, which=which)
  kwargs = jit_model_kwargs(state, model_name, args=jit_checkpoint_args(obj))
  kwargs.update(overrides)
  return convert_jit(state, kwargs), kwargs
