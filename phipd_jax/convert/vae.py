"""diffusers ``AutoencoderKL`` checkpoints (SD 1.x, SDXL, SD3, FLUX VAE) -> :class:`AutoencoderKL`.

:func:`model_kwargs_from_diffusers_config` reads a diffusers ``vae/config.json`` into the
constructor kwargs of :class:`phipd_jax.models.autoencoder_kl.AutoencoderKL` (refusing settings
this implementation does not reproduce, named by field); :func:`scaling_and_shift` gives the
latent scaling a diffusion model uses; :func:`convert_autoencoder_kl` maps a diffusers state dict
(``diffusion_pytorch_model.safetensors``, read with :func:`phipd_jax.convert.reading
.read_state_dict`) onto the model's parameters; :func:`autoencoder_kl_from_diffusers` does all of
it for a diffusers model folder.

Key mapping (NNX path -> diffusers key): the NNX model keeps diffusers' module names, except
``downsample`` / ``upsample`` / ``attention`` / ``to_out`` for diffusers' ``downsamplers.0`` /
``upsamplers.0`` / ``attentions.0`` / ``to_out.0``; ``kernel`` is ``weight`` (transposed:
:func:`~phipd_jax.convert.reading.conv`, :func:`~phipd_jax.convert.reading.linear`), a GroupNorm
``scale`` is ``weight``. Every key's torch shape is checked (a mismatch names the key and both
shapes), and keys the model has no place for are refused. Older checkpoints name the mid-block
attention projections ``query`` / ``key`` / ``value`` / ``proj_attn`` (diffusers renames them on
load), and checkpoints converted from the original LDM code may store them as 1x1 conv weights
``[C, C, 1, 1]``: both are accepted.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Tuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from phipd_jax.convert.reading import (ConversionError, StateDict, conv, fill_state, linear,
                                       path_name, read_diffusers_folder, read_state_dict)
from phipd_jax.models.autoencoder_kl import AutoencoderKL

# diffusers' AutoencoderKL.__init__ defaults for the fields that shape the network.
DIFFUSERS_DEFAULTS = {
    'in_channels': 3, 'out_channels': 3, 'latent_channels': 4, 'block_out_channels': (64,),
    'layers_per_block': 1, 'norm_num_groups': 32, 'use_quant_conv': True,
    'use_post_quant_conv': True, 'mid_block_add_attention': True,
    'down_block_types': ('DownEncoderBlock2D',), 'up_block_types': ('UpDecoderBlock2D',),
    'act_fn': 'silu',
}
# Config fields that do not change the network's outputs (sample_size only sets diffusers' tiling
# threshold, force_upcast a pipeline's dtype) or are read by scaling_and_shift.
IGNORED_FIELDS = ('sample_size', 'force_upcast', 'scaling_factor', 'shift_factor',
                  'latents_mean', 'latents_std')
DEFAULT_SCALING_FACTOR = 0.18215  # diffusers' AutoencoderKL default (the SD 1.x VAE).
ACTIVATIONS = ('silu', 'swish')  # diffusers' get_activation maps both to nn.SiLU.

# NNX module name -> diffusers module path where they differ.
_RENAMES = {'downsample': 'downsamplers.0', 'upsample': 'upsamplers.0',
            'attention': 'attentions.0', 'to_out': 'to_out.0'}
# Old diffusers names of the mid-block attention projections (ModelMixin renames them on load).
_LEGACY_ATTENTION = {'to_q': 'query', 'to_k': 'key', 'to_v': 'value', 'to_out': 'proj_attn'}


def model_kwargs_from_diffusers_config(config: Mapping) -> dict:
  """The :class:`AutoencoderKL` constructor kwargs of a diffusers ``AutoencoderKL`` config.

  Fields absent from ``config`` take diffusers' defaults (:data:`DIFFUSERS_DEFAULTS`); fields in
  :data:`IGNORED_FIELDS` and those starting with ``_`` (``_diffusers_version``, ...) are ignored.

  Raises:
    ConversionError: naming the field: ``_class_name`` other than ``AutoencoderKL``, a
      ``down_block_types`` entry other than ``DownEncoderBlock2D`` or an ``up_block_types``
      entry other than ``UpDecoderBlock2D`` (or either list not as long as
      ``block_out_channels``), ``act_fn`` other than silu / swish, or an unknown field.
  """
  config = dict(config)
  class_name = config.get('_class_name', 'AutoencoderKL')
  if class_name != 'AutoencoderKL':
    raise ConversionError(f'diffusers config: _class_name={class_name!r} is not supported (only '
                          "'AutoencoderKL')")
  unknown = sorted(k for k in config if not k.startswith('_') and k not in DIFFUSERS_DEFAULTS
                   and k not in IGNORED_FIELDS)
  if unknown:
    raise ConversionError(f'diffusers config: unknown field(s) {unknown}: AutoencoderKL takes '
                          f'{sorted(DIFFUSERS_DEFAULTS)} (and ignores {list(IGNORED_FIELDS)})')
  value = lambda name: config[name] if name in config else DIFFUSERS_DEFAULTS[name]
  block_out_channels = tuple(int(c) for c in value('block_out_channels'))
  for field, block in (('down_block_types', 'DownEncoderBlock2D'),
                       ('up_block_types', 'UpDecoderBlock2D')):
    types = tuple(value(field))
    if any(t != block for t in types):
      raise ConversionError(f'diffusers config: {field}={list(types)} is not supported (every '
                            f'block must be {block!r})')
    if len(types) != len(block_out_channels):
      raise ConversionError(f'diffusers config: {field} has {len(types)} entries, '
                            f'block_out_channels={list(block_out_channels)} has '
                            f'{len(block_out_channels)}; they must agree')
  if value('act_fn') not in ACTIVATIONS:
    raise ConversionError(f'diffusers config: act_fn={value("act_fn")!r} is not supported (only '
                          f'{list(ACTIVATIONS)})')
  return dict(
      in_channels=int(value('in_channels')), out_channels=int(value('out_channels')),
      latent_channels=int(value('latent_channels')), block_out_channels=block_out_channels,
      layers_per_block=int(value('layers_per_block')),
      norm_num_groups=int(value('norm_num_groups')),
      use_quant_conv=bool(value('use_quant_conv')),
      use_post_quant_conv=bool(value('use_post_quant_conv')),
      mid_block_add_attention=bool(value('mid_block_add_attention')))


def scaling_and_shift(config: Mapping) -> Tuple[float, float]:
  """``(scaling_factor, shift_factor)`` of a diffusers VAE config: a diffusion model sees
  ``(z - shift_factor) * scaling_factor``. ``scaling_factor`` defaults to 0.18215 (diffusers'
  default), ``shift_factor`` to 0.0 when absent or None.

  Raises:
    ConversionError: the config sets per-channel ``latents_mean`` / ``latents_std`` (as
      Playground v2.5 does), which two scalars cannot describe.
  """
  for field in ('latents_mean', 'latents_std'):
    if config.get(field) is not None:
      raise ConversionError(f'diffusers config: {field} is set (per-channel latent '
                            'normalisation); scaling_and_shift gives only scalar factors')
  scaling = config.get('scaling_factor')
  shift = config.get('shift_factor')
  return (float(DEFAULT_SCALING_FACTOR if scaling is None else scaling),
          float(0.0 if shift is None else shift))


def _missing(state: StateDict, key: str, shape: Sequence[int], also: str = '') -> ConversionError:
  return ConversionError(f'{state.source}: missing key {key!r}{also} (the model needs shape '
                         f'{tuple(shape)})')


def _take(state: StateDict, key: str, shape: Sequence[int]) -> np.ndarray:
  """``state.take(key, shape)`` with the needed shape named when the key is missing."""
  if key not in state:
    raise _missing(state, key, shape)
  return state.take(key, shape)


def _take_projection(state: StateDict, module: str, name: str, leaf: str,
                     shape: Sequence[int]) -> np.ndarray:
  """A mid-block attention projection ``{module}.{name}.{leaf}`` (diffusers' ``to_out`` is
  ``to_out.0``), also under its legacy name, as a linear ``[out, in]`` or 1x1 conv ``[out, in, 1,
  1]`` weight (returned as ``[out, in]``)."""
  key = f'{module}.{_RENAMES.get(name, name)}.{leaf}'
  legacy = f'{module}.{_LEGACY_ATTENTION[name]}.{leaf}'
  if key not in state:
    if legacy not in state:
      raise _missing(state, key, shape, also=f' (or legacy {legacy!r})')
    key = legacy
  if leaf == 'weight' and len(state.shape(key)) == 4:
    return state.take(key, tuple(shape) + (1, 1))[:, :, 0, 0]
  return state.take(key, shape)


def _diffusers_key(path: Sequence) -> Tuple[str, str, str]:
  """NNX parameter path -> ``(diffusers module path, NNX module name, diffusers leaf name)``."""
  *modules, leaf = (str(p) for p in path)
  module = '.'.join(_RENAMES.get(m, m) for m in modules)
  return module, modules[-1], {'kernel': 'weight', 'scale': 'weight'}.get(leaf, leaf)


def convert_autoencoder_kl(state: StateDict, model_kwargs: Mapping) -> nnx.State:
  """The parameters (an ``nnx.State`` of ``nnx.Param``) of ``AutoencoderKL(**model_kwargs)``
  from a diffusers ``AutoencoderKL`` state dict.

  Use: ``model = nnx.eval_shape(lambda: AutoencoderKL(**kw, rngs=nnx.Rngs(0)))``, then
  ``graphdef, _ = nnx.split(model)`` and ``nnx.merge(graphdef, convert_autoencoder_kl(state,
  kw))``, or ``nnx.update(model, ...)`` on a concrete model (:func:`autoencoder_kl_from_diffusers`
  does this).

  Raises:
    ConversionError: a missing key, a key whose shape differs from the model's (both named), or
      keys the model has no place for (e.g. a quant conv the kwargs leave out).
    ValueError: ``model_kwargs`` the model rejects.
  """
  kwargs = dict(model_kwargs)
  abstract = nnx.eval_shape(lambda: AutoencoderKL(**kwargs, rngs=nnx.Rngs(0)))
  template = nnx.state(abstract, nnx.Param)
  values = {}
  for path, leaf in nnx.to_flat_state(template):
    module, name, param = _diffusers_key(path)
    shape = tuple(leaf.shape)
    if len(shape) == 4:  # Conv kernel [kh, kw, in, out] <- torch [out, in, kh, kw].
      values[path_name(path)] = conv(_take(state, f'{module}.{param}',
                                           (shape[3], shape[2], shape[0], shape[1])))
    elif name in _LEGACY_ATTENTION:  # Attention projection: Linear, or a legacy 1x1 conv.
      torch_shape = (shape[1], shape[0]) if len(shape) == 2 else shape
      parent = module.rsplit('.', 2 if name == 'to_out' else 1)[0]
      array = _take_projection(state, parent, name, param, torch_shape)
      values[path_name(path)] = linear(array) if len(shape) == 2 else array
    else:  # Biases and GroupNorm scales.
      values[path_name(path)] = _take(state, f'{module}.{param}', shape)
  state.check_all_used()
  return fill_state(template, values, state.source)


def autoencoder_kl_from_diffusers(directory: str, *, dtype=jnp.float32
                                  ) -> Tuple[AutoencoderKL, float, float]:
  """``(model, scaling_factor, shift_factor)`` from a diffusers ``AutoencoderKL`` folder (as
  ``save_pretrained`` writes it, or a pipeline's ``vae/``): ``config.json`` and
  ``diffusion_pytorch_model.safetensors`` (or ``.bin``). ``dtype`` is the compute dtype.

  Raises:
    ConversionError: no config or weights, an unsupported config (naming the field), or weights
      that do not fit (naming the key and shapes).
  """
  config, path = read_diffusers_folder(directory)
  kwargs = model_kwargs_from_diffusers_config(config)
  scaling, shift = scaling_and_shift(config)
  params = convert_autoencoder_kl(read_state_dict(path), kwargs)
  model = nnx.eval_shape(lambda: AutoencoderKL(**kwargs, dtype=dtype, rngs=nnx.Rngs(0)))
  graphdef, _ = nnx.split(model)
  return nnx.merge(graphdef, params), scaling, shift
