"""Networks and the registry that builds them by name: ``build(name, **config.model)``.

Denoisers are called as ``model(x_t [B, H, W, C], t [B], y=None) -> prediction``. Each registered
name declares the objective that trains it (:data:`OBJECTIVES`): ``'diffusion'`` for the
denoisers, ``'autoencoder'`` for the autoencoder (``model(x) -> reconstruction``), so the
experiment chooses its loss by this table, never by the model's type.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from phipd_jax.models.autoencoder import AUTOENCODER_SIZES, Autoencoder, autoencoder
from phipd_jax.models.autoencoder_kl import AutoencoderKL
from phipd_jax.models.dit import DIT_SIZES, DiT, count_parameters, dit
from phipd_jax.models.jit import JIT_SIZES, JiT, SpectralForcing, jit_model
from phipd_jax.models.video_dit import VIDEO_ATTENTION, VideoDiT


def _check_patch(image_size: int, patch_size: int):
  if image_size <= 0 or image_size % patch_size:
    raise ValueError(f'data.image_size={image_size} must be a positive multiple of '
                     f'model.patch_size={patch_size}')


PARAM_DTYPES = ('float32', 'bfloat16')


def cast_params(model: nnx.Module, param_dtype: str) -> nnx.Module:
  """Stores ``model``'s floating-point ``nnx.Param`` leaves in ``param_dtype`` (in place).

  ``'float32'`` (the default) is the mixed-precision recipe: float32 parameters and optimizer
  state with the compute in ``model.dtype`` (layers cast their parameters to it). ``'bfloat16'``
  halves parameter and optimizer memory at the cost of bf16 updates (pure bf16 training).

  Raises:
    ValueError: ``param_dtype`` not in :data:`PARAM_DTYPES`.
  """
  if param_dtype not in PARAM_DTYPES:
    raise ValueError(f'model.param_dtype={param_dtype!r} must be one of {list(PARAM_DTYPES)}')
  if param_dtype != 'float32':
    state = nnx.state(model, nnx.Param)
    cast = lambda x: x.astype(param_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    nnx.update(model, jax.tree.map(cast, state))
  return model


def build_dit(*, size: str, patch_size: int, num_classes: int = 0, dtype: str = 'float32',
              param_dtype: str = 'float32', attention_impl: str = 'auto', remat: str = 'none',
              learn_sigma: bool = False, time_frequency_shift: int = 0, depth: int = 0,
              hidden: int = 0, heads: int = 0,
              in_channels: int, image_size: int, rngs: nnx.Rngs) -> DiT:
  """DiT (Peebles & Xie 2023) of a named size for ``image_size``-pixel inputs.

  ``dtype`` is the compute dtype, ``param_dtype`` the storage dtype (:func:`cast_params`),
  ``attention_impl`` the attention form (:func:`phipd_jax.models.layers.attention`), ``remat``
  the per-block rematerialisation (:data:`phipd_jax.models.layers.REMAT_POLICIES`).
  ``learn_sigma`` adds DiT's learned-variance head (``2 C`` outputs: prediction, then ``v``);
  ``time_frequency_shift`` is 1 only for weights converted from diffusers (see
  :class:`phipd_jax.models.dit.DiT`). ``size='custom'`` takes ``depth``, ``hidden`` and
  ``heads`` (a converted checkpoint of no named size); they must be 0 with a named size.
  """
  _check_patch(image_size, patch_size)
  if size == 'custom':
    if min(depth, hidden, heads) < 1:
      raise ValueError(f"model.size='custom' needs model.depth, model.hidden and model.heads "
                       f'>= 1 (got {depth}, {hidden}, {heads})')
  elif depth or hidden or heads:
    raise ValueError(f'model.depth/hidden/heads={depth, hidden, heads} are for '
                     f"model.size='custom' only (model.size={size!r} fixes them)")
  elif size not in DIT_SIZES:
    raise ValueError(f'model.size={size!r} must be one of {sorted(DIT_SIZES)}')
  else:
    depth, hidden, heads = DIT_SIZES[size]
  if time_frequency_shift not in (0, 1):
    raise ValueError(f'model.time_frequency_shift={time_frequency_shift} must be 0 or 1')
  return cast_params(DiT(in_channels=in_channels, patch_size=patch_size, hidden=hidden,
                         depth=depth, heads=heads, num_classes=num_classes,
                         out_channels=2 * in_channels if learn_sigma else None,
                         dtype=jnp.dtype(dtype), attention_impl=attention_impl, remat=remat,
                         time_frequency_shift=time_frequency_shift, rngs=rngs), param_dtype)


def build_video_dit(*, size: str, patch_size: int, temporal_patch_size: int = 1,
                    attention: str = 'full', num_classes: int = 0, dtype: str = 'float32',
                    param_dtype: str = 'float32', attention_impl: str = 'auto',
                    remat: str = 'none', in_channels: int, image_size: int,
                    rngs: nnx.Rngs) -> VideoDiT:
  """The spatio-temporal DiT (:class:`phipd_jax.models.video_dit.VideoDiT`) of a DiT size for
  clips of ``image_size``-pixel frames: ``temporal_patch_size`` frames per token,
  ``attention`` ``'full'`` or ``'factorised'`` (space, then time); the other settings as
  :func:`build_dit`. The clip length is the data's (``data.frames``), a multiple of
  ``temporal_patch_size``."""
  _check_patch(image_size, patch_size)
  if size not in DIT_SIZES:
    raise ValueError(f'model.size={size!r} must be one of {sorted(DIT_SIZES)}')
  if attention not in VIDEO_ATTENTION:
    raise ValueError(f'model.attention={attention!r} must be one of {list(VIDEO_ATTENTION)}')
  if temporal_patch_size < 1:
    raise ValueError(f'model.temporal_patch_size={temporal_patch_size} must be >= 1')
  depth, hidden, heads = DIT_SIZES[size]
  return cast_params(VideoDiT(
      in_channels=in_channels, patch_size=patch_size, hidden=hidden, depth=depth, heads=heads,
      temporal_patch_size=temporal_patch_size, attention=attention, num_classes=num_classes,
      dtype=jnp.dtype(dtype), attention_impl=attention_impl, remat=remat, rngs=rngs),
      param_dtype)


def spectral_forcing_from_settings(settings: Optional[dict]) -> Optional[SpectralForcing]:
  """``SpectralForcing`` of a ``model.spectral_forcing`` dict (None when its schedule is '')."""
  if not settings or not settings.get('schedule'):
    return None
  settings = dict(settings)
  settings['window'] = settings.get('window') or None
  return SpectralForcing(**settings)


def build_jit(*, size: str, patch_size: int, num_classes: int = 0, dtype: str = 'float32',
              param_dtype: str = 'float32', attention_impl: str = 'auto', remat: str = 'none',
              in_context_len: int = 32, spectral_forcing: Optional[dict] = None,
              in_channels: int, image_size: int, rngs: nnx.Rngs) -> JiT:
  """JiT (Li & He 2025) of a named size, with optional Spectral Forcing (a settings dict);
  ``dtype``, ``param_dtype``, ``attention_impl`` and ``remat`` as :func:`build_dit`."""
  _check_patch(image_size, patch_size)
  forcing = spectral_forcing_from_settings(spectral_forcing)
  if forcing is not None and forcing.window and image_size % forcing.window:
    raise ValueError(f'model.spectral_forcing.window={forcing.window} must divide '
                     f'data.image_size={image_size}')
  return cast_params(jit_model(
      size, in_channels=in_channels, patch_size=patch_size, num_classes=num_classes,
      in_context_len=in_context_len, spectral_forcing=forcing, dtype=jnp.dtype(dtype),
      attention_impl=attention_impl, remat=remat, rngs=rngs), param_dtype)


def build_autoencoder(*, size: str, downsample: int = 8, latent_channels: int = 4,
                      num_classes: int = 0, dtype: str = 'float32', param_dtype: str = 'float32',
                      in_channels: int, image_size: int, rngs: nnx.Rngs) -> Autoencoder:
  """The KL autoencoder (Rombach et al. 2022, arXiv:2112.10752) of a named size, spatial factor
  ``downsample`` (4 or 8), for ``image_size``-pixel images. Unconditional: ``num_classes`` must
  be 0 (it is there because every run config has the field)."""
  if num_classes:
    raise ValueError(f'model.num_classes={num_classes} must be 0: the autoencoder is '
                     'unconditional')
  if image_size <= 0 or image_size % downsample:
    raise ValueError(f'data.image_size={image_size} must be a positive multiple of '
                     f'model.downsample={downsample}')
  return cast_params(autoencoder(size, in_channels=in_channels, latent_channels=latent_channels,
                                 downsample=downsample, dtype=jnp.dtype(dtype), rngs=rngs),
                     param_dtype)


def build_autoencoder_kl(*, latent_channels: int = 4,
                         block_out_channels: tuple = (128, 256, 512, 512),
                         layers_per_block: int = 2, norm_num_groups: int = 32,
                         out_channels: int = 3, use_quant_conv: bool = True,
                         use_post_quant_conv: bool = True, mid_block_add_attention: bool = True,
                         num_classes: int = 0, dtype: str = 'float32',
                         param_dtype: str = 'float32', in_channels: int, image_size: int,
                         rngs: nnx.Rngs) -> AutoencoderKL:
  """diffusers' ``AutoencoderKL`` layout (the SD / SDXL / SD3 / FLUX VAEs; a ``convert.py
  --from diffusers_vae`` run), with diffusers' config names; ``f = 2 ** (levels - 1)``."""
  if num_classes:
    raise ValueError(f'model.num_classes={num_classes} must be 0: the autoencoder is '
                     'unconditional')
  factor = 2 ** (len(block_out_channels) - 1)
  if image_size <= 0 or image_size % factor:
    raise ValueError(f'data.image_size={image_size} must be a positive multiple of the '
                     f'autoencoder\'s factor {factor}')
  return cast_params(AutoencoderKL(
      in_channels=in_channels, out_channels=out_channels, latent_channels=latent_channels,
      block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
      norm_num_groups=norm_num_groups, use_quant_conv=use_quant_conv,
      use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention,
      dtype=jnp.dtype(dtype), rngs=rngs), param_dtype)


MODELS: dict[str, Callable[..., nnx.Module]] = {'dit': build_dit, 'jit': build_jit,
                                                'video_dit': build_video_dit,
                                                'autoencoder': build_autoencoder,
                                                'autoencoder_kl': build_autoencoder_kl}
SIZES = {'dit': DIT_SIZES, 'jit': JIT_SIZES, 'video_dit': DIT_SIZES,
         'autoencoder': AUTOENCODER_SIZES}
# Size names a model also takes besides its SIZES: DiT's 'custom' (explicit depth, hidden, heads:
# a converted checkpoint of no named size).
EXTRA_SIZES = {'dit': ('custom',)}


def size_names(name: str) -> list[str]:
  """The ``model.size`` values model ``name`` takes (empty for a model without sizes)."""
  return sorted(SIZES.get(name, ())) + list(EXTRA_SIZES.get(name, ()))


def parameter_shapes(params) -> dict[str, tuple[int, ...]]:
  """``{dotted parameter path: shape}`` of an ``nnx.State`` (concrete or abstract), e.g.
  ``{'blocks.0.attn.qkv.kernel': (384, 1152), ...}``: what two models must share to take the
  same weights."""
  return {'.'.join(map(str, path)): tuple(leaf.shape)
          for path, leaf in nnx.to_flat_state(params)}
# The objective that trains each model (experiment.Experiment.loss_fn dispatches on it).
OBJECTIVES = {'dit': 'diffusion', 'jit': 'diffusion', 'video_dit': 'diffusion',
              'autoencoder': 'autoencoder',
              'autoencoder_kl': 'autoencoder'}


def build(name: str, *, rngs: nnx.Rngs, in_channels: int, image_size: int,
          **kwargs: Any) -> nnx.Module:
  """The network ``name`` of :data:`MODELS` with ``kwargs`` (the run's ``config.model``).

  Raises:
    ValueError: an unknown name, or a keyword the model does not take (named as
      ``model.<field>``), or a value its builder rejects.
  """
  if name not in MODELS:
    raise ValueError(f'model.name={name!r} must be one of {sorted(MODELS)}')
  builder = MODELS[name]
  accepted = set(inspect.signature(builder).parameters)
  unknown = sorted(set(kwargs) - accepted)
  if unknown:
    raise ValueError(f'model.{unknown[0]} is not a setting of model.name={name!r} (it takes '
                     f'{sorted(accepted - {"rngs", "in_channels", "image_size"})})')
  return builder(rngs=rngs, in_channels=in_channels, image_size=image_size, **kwargs)


def downsample_factor(model: dict) -> int:
  """The spatial factor ``f`` of an autoencoder's ``config.model`` section: ``downsample`` of
  the small autoencoder, ``2 ** (levels - 1)`` of a diffusers-layout ``autoencoder_kl``."""
  if model.get('name') == 'autoencoder_kl':
    return 2 ** (len(model.get('block_out_channels', (128, 256, 512, 512))) - 1)
  return int(model['downsample'])


def objective(name: str) -> str:
  """The objective that trains model ``name`` (:data:`OBJECTIVES`).

  Raises:
    ValueError: an unknown name.
  """
  if name not in MODELS:
    raise ValueError(f'model.name={name!r} must be one of {sorted(MODELS)}')
  return OBJECTIVES[name]


def register(name: str, builder: Callable[..., nnx.Module], objective: str = 'diffusion'):
  """Adds a model builder (keyword-only, taking ``rngs``, ``in_channels``, ``image_size``) and
  the objective that trains it (``'diffusion'`` or ``'autoencoder'``)."""
  MODELS[name] = builder
  OBJECTIVES[name] = objective


def apply_model(graphdef: nnx.GraphDef, params) -> Callable:
  """``(x_t, t, y) -> prediction`` of the model ``graphdef`` with ``params`` (an ``nnx.State``),
  merged where it is called (inside a trace: one compiled function over the parameters)."""
  model = nnx.merge(graphdef, params)
  return lambda x_t, t, y: model(x_t, t, y)
