"""Reading PyTorch checkpoints as named numpy arrays, and checked assignment into NNX states.

A converter reads a checkpoint with :func:`read_state_dict` (``.safetensors`` through the
``safetensors`` package; ``.pt`` / ``.pth`` / ``.bin`` through ``torch.load(weights_only=True)``,
imported only then: ``pip install -e .[convert]``), takes each tensor it needs from a
:class:`StateDict` (which names a missing key and checks shapes), and fills the target model's
parameter state with :func:`fill_state` (which names any parameter left unfilled or filled with
the wrong shape). :meth:`StateDict.check_all_used` then refuses a checkpoint with keys the
converter did not read: nothing is silently dropped.

Layout conversions: a torch ``Linear.weight [out, in]`` is an NNX ``kernel [in, out]``
(:func:`linear`); a torch ``Conv2d.weight [out, in, kh, kw]`` is an NNX ``kernel [kh, kw, in,
out]`` (:func:`conv`).
"""

from __future__ import annotations

import json
import os
import re
from typing import Iterable, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import nnx

TORCH_SUFFIXES = ('.pt', '.pth', '.bin', '.ckpt')
SAFETENSORS_SUFFIXES = ('.safetensors',)


class ConversionError(ValueError):
  """A checkpoint that cannot be converted: unreadable, a missing or unexpected key, a shape that
  does not match the target model. The message names the file, the key and both shapes."""


def _to_numpy(value) -> np.ndarray:
  """A torch tensor or array as a numpy array; bfloat16 / float16 become float32."""
  if hasattr(value, 'detach'):  # torch.Tensor; .float() because numpy has no bfloat16.
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    return value.numpy()
  array = np.asarray(value)
  if array.dtype.kind == 'f' and array.dtype not in (np.float32, np.float64):
    array = array.astype(np.float32)  # float16 (no copy of float32 arrays: they stay shared).
  elif array.dtype.kind == 'V' or str(array.dtype) == 'bfloat16':
    array = np.asarray(value, np.float32)
  return array


def _load_torch(path: str):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(f'{path}: reading a PyTorch file needs torch (pip install -e .[convert]),'
                          ' or convert the file to .safetensors') from None
  try:
    try:  # Memory-mapped: tensors are read from the file as they are converted.
      return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError as error:
      if 'mmap' not in str(error) and 'zip' not in str(error):
        raise
      return torch.load(path, map_location='cpu', weights_only=True)  # A legacy (non-zip) file.
  except Exception as error:  # pylint: disable=broad-except
    raise ConversionError(f'{path}: not a readable PyTorch checkpoint ({type(error).__name__}: '
                          f'{str(error).splitlines()[0] if str(error) else ""})') from None


def _load_safetensors(path: str) -> dict:
  try:
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(f'{path}: reading .safetensors needs the safetensors package '
                          '(pip install -e .[convert])') from None
  try:
    out = {}
    with safe_open(path, framework='flax') as f:  # 'flax' reads bfloat16 too (as jax arrays).
      for key in f.keys():
        tensor = f.get_tensor(key)
        if str(tensor.dtype) in ('bfloat16', 'float16'):
          tensor = tensor.astype('float32')
        out[key] = np.asarray(tensor)
    return out
  except ConversionError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    raise ConversionError(f'{path}: not a readable safetensors file ({type(error).__name__}: '
                          f'{str(error).splitlines()[0] if str(error) else ""})') from None


def read_checkpoint(path: str):
  """The object a checkpoint file holds: a dict of tensors (safetensors), or whatever
  ``torch.load(weights_only=True)`` returns (a state dict, or a training checkpoint dict).

  Raises:
    ConversionError: the file is missing, has an unknown suffix, or cannot be read.
  """
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such checkpoint file')
  suffix = os.path.splitext(path)[1].lower()
  if suffix in SAFETENSORS_SUFFIXES:
    return _load_safetensors(path)
  if suffix in TORCH_SUFFIXES:
    return _load_torch(path)
  raise ConversionError(f'{path}: unknown checkpoint suffix {suffix!r}; expected one of '
                        f'{list(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}')


def is_state_dict(obj) -> bool:
  """True for a non-empty mapping whose values are all tensors / arrays (a state dict)."""
  return isinstance(obj, Mapping) and bool(obj) and all(
      hasattr(v, 'shape') for v in obj.values())


def read_state_dict(path: str, prefer: Sequence[str] = ('ema', 'model')) -> 'StateDict':
  """The tensors of a checkpoint file as a :class:`StateDict`.

  A training checkpoint (a dict whose values are not all tensors) is unwrapped to the first of
  ``prefer`` it holds (EMA weights before the raw model, as the DiT / JiT training scripts save
  ``{'model': ..., 'ema': ..., 'opt': ..., 'args': ...}``); a ``module.`` prefix (DDP) is removed.

  Raises:
    ConversionError: unreadable, or no state dict inside.
  """
  obj = read_checkpoint(path)
  chosen = ''
  if not is_state_dict(obj):
    if isinstance(obj, Mapping):
      for name in prefer:
        if is_state_dict(obj.get(name)):
          obj, chosen = obj[name], name
          break
    if not is_state_dict(obj):
      held = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
      raise ConversionError(f'{path}: holds no state dict (a mapping of tensors); found {held}, '
                            f'looked for a state dict or one of {list(prefer)}')
  arrays = {}
  for key, value in obj.items():
    key = key[len('module.'):] if key.startswith('module.') else key
    arrays[key] = _to_numpy(value)
  return StateDict(arrays, path + (f' [{chosen}]' if chosen else ''))


class StateDict:
  """A checkpoint's tensors by name (numpy, float32 for floating types), remembering which keys a
  converter read so that unread ones can be refused (:meth:`check_all_used`).

  :meth:`take` hands an array over and drops the state dict's reference to it, so that a
  conversion holds each tensor about once (the source array is freed as its converted copy is
  made): a DiT-XL/2 converts in well under twice its checkpoint's size. Shapes stay known.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], source: str = '<state dict>'):
    self.arrays = {k: _to_numpy(v) for k, v in arrays.items()}
    self.shapes = {k: tuple(v.shape) for k, v in self.arrays.items()}
    self.source = source
    self.used: set[str] = set()

  def __contains__(self, key: str) -> bool:
    return key in self.shapes

  def keys(self) -> list[str]:
    return list(self.shapes)

  def shape(self, key: str) -> tuple[int, ...]:
    """The shape of ``key`` (without marking it read).

    Raises:
      ConversionError: no such key.
    """
    if key not in self.shapes:
      raise ConversionError(f'{self.source}: missing key {key!r}')
    return self.shapes[key]

  def peek(self, key: str) -> np.ndarray:
    """The array ``key`` without taking it (it stays in the state dict, unread).

    Raises:
      ConversionError: no such key, or already taken.
    """
    if key not in self.arrays:
      raise ConversionError(f'{self.source}: missing key {key!r}' + (
          ' (already taken)' if key in self.shapes else ''))
    return self.arrays[key]

  def take(self, key: str, shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """The array ``key``, marked read and released from the state dict; ``shape`` (the torch
    layout) is checked when given.

    Raises:
      ConversionError: the key is missing (or was taken before), or its shape differs from
        ``shape``.
    """
    if key not in self.shapes:
      raise ConversionError(f'{self.source}: missing key {key!r}')
    if shape is not None and self.shapes[key] != tuple(shape):
      raise ConversionError(f'{self.source}: key {key!r} has shape {self.shapes[key]}, the '
                            f'model needs {tuple(shape)}')
    if key not in self.arrays:
      raise ConversionError(f'{self.source}: key {key!r} was taken twice (a converter bug)')
    self.used.add(key)
    return self.arrays.pop(key)

  def skip(self, keys: Iterable[str]):
    """Marks ``keys`` read without using them (buffers the target recomputes)."""
    self.used.update(k for k in keys if k in self.arrays)

  def check_all_used(self):
    """Raises ConversionError naming the keys no converter read (unexpected keys)."""
    unused = sorted(set(self.shapes) - self.used)
    if unused:
      shown = ', '.join(f'{k} {self.shapes[k]}' for k in unused[:8])
      more = f' and {len(unused) - 8} more' if len(unused) > 8 else ''
      raise ConversionError(f'{self.source}: {len(unused)} unexpected key(s) the target model has '
                            f'no place for: {shown}{more}')


def linear(weight: np.ndarray) -> np.ndarray:
  """torch ``Linear.weight [out, in]`` -> NNX ``kernel [in, out]`` (a view: the one copy is made
  by :func:`fill_state`)."""
  return weight.T


def conv(weight: np.ndarray) -> np.ndarray:
  """torch ``Conv2d.weight [out, in, kh, kw]`` -> NNX ``kernel [kh, kw, in, out]`` (a view)."""
  return weight.transpose(2, 3, 1, 0)


def path_name(path: Sequence) -> str:
  """``('blocks', 0, 'attn', 'qkv', 'kernel')`` -> ``'blocks.0.attn.qkv.kernel'``."""
  return '.'.join(str(p) for p in path)


def fill_state(template: nnx.State, values: dict[str, np.ndarray], source: str = '') -> nnx.State:
  """``template`` (an abstract or concrete ``nnx.State`` of ``nnx.Param``) with every leaf
  replaced by ``values[path_name(path)]``, cast to the leaf's dtype. ``values`` is emptied as
  the arrays are made (each numpy value is released once its JAX copy exists).

  Raises:
    ConversionError: a parameter has no value, a value has no parameter, or a shape differs
      (naming the parameter and both shapes).
  """
  flat = nnx.to_flat_state(template)
  names = {path_name(path): path for path, _ in flat}
  missing = sorted(set(names) - set(values))
  extra = sorted(set(values) - set(names))
  where = f'{source}: ' if source else ''
  if missing or extra:
    raise ConversionError(f'{where}the conversion does not cover the model: parameters without a '
                          f'value {missing[:8]}, values without a parameter {extra[:8]}')
  for path, leaf in flat:  # Every shape first: nothing is converted for a failing conversion.
    name = path_name(path)
    if tuple(np.shape(values[name])) != tuple(leaf.shape):
      raise ConversionError(f'{where}parameter {name} has shape {tuple(leaf.shape)}, the converted '
                            f'value {tuple(np.shape(values[name]))}')
  leaves = []
  for path, leaf in flat:
    value = np.asarray(values.pop(path_name(path)))
    leaves.append((path, leaf.replace(jax.numpy.asarray(value, dtype=leaf.dtype))))
  return nnx.from_flat_state(leaves)


def count_blocks(state: StateDict, prefix: str = 'blocks.') -> int:
  """The number of transformer blocks ``<prefix><i>.`` in ``state`` (0 if none).

  Raises:
    ConversionError: block indices that are not ``0 .. depth - 1``.
  """
  indices = {int(m.group(1)) for k in state.keys()
             for m in [re.match(re.escape(prefix) + r'(\d+)\.', k)] if m}
  depth = len(indices)
  if indices != set(range(depth)):
    raise ConversionError(f'{state.source}: block indices {sorted(indices)} are not 0..{depth - 1}')
  return depth


DIFFUSERS_WEIGHTS = ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin')


def read_diffusers_folder(path: str, subfolder: str = '') -> tuple[dict, str]:
  """``(config, weights file)`` of a diffusers model folder (``config.json`` and one of
  :data:`DIFFUSERS_WEIGHTS`, as ``save_pretrained`` writes them), or of a pipeline folder's
  ``subfolder`` (``transformer``, ``vae``) when ``path`` has no config.json of its own.

  Raises:
    ConversionError: not a folder, no or an unreadable config.json (not a JSON object), or no
      weights file.
  """
  if subfolder and os.path.isdir(os.path.join(path, subfolder)) and not os.path.isfile(
      os.path.join(path, 'config.json')):
    path = os.path.join(path, subfolder)
  config_path = os.path.join(path, 'config.json')
  if not os.path.isdir(path):
    raise ConversionError(f'{path}: a diffusers model folder (config.json + '
                          f'{DIFFUSERS_WEIGHTS[0]}) is expected; this is not a folder')
  try:
    with open(config_path) as f:
      config = json.load(f)
  except FileNotFoundError:
    raise ConversionError(f'{path}: no config.json (a diffusers model folder is expected)') from None
  except (OSError, ValueError) as error:
    raise ConversionError(f'{config_path}: not a readable diffusers config '
                          f'({type(error).__name__}: {error})') from None
  if not isinstance(config, dict):
    raise ConversionError(f'{config_path}: a diffusers config is a JSON object, found '
                          f'{type(config).__name__}')
  for name in DIFFUSERS_WEIGHTS:
    if os.path.isfile(os.path.join(path, name)):
      return config, os.path.join(path, name)
  raise ConversionError(f'{path}: none of {list(DIFFUSERS_WEIGHTS)} (sharded or fp16-variant '
                        'weights: save the model once with save_pretrained())')
