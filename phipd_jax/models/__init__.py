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
from phipd_jax.models.dit import DIT_SIZES, DiT, count_parameters, dit
from phipd_jax.models.jit import JIT_SIZES, JiT, SpectralForcing, jit_model


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
              in_channels: int, image_size: int, rngs: nnx.Rngs) -> DiT:
  """DiT (Peebles & Xie 2023) of a named size for ``image_size``-pixel inputs.

  ``dtype`` is the compute dtype, ``param_dtype`` the storage dtype (:func:`cast_params`),
  ``attention_impl`` the attention form (:func:`phipd_jax.models.layers.attention`), ``remat``
  the per-block rematerialisation (:data:`phipd_jax.models.layers.REMAT_POLICIES`).
  """
  _check_patch(image_size, patch_size)
  return cast_params(dit(size, in_channels=in_channels, patch_size=patch_size,
                         num_classes=num_classes, dtype=jnp.dtype(dtype),
                         attention_impl=attention_impl, remat=remat, rngs=rngs), param_dtype)


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


MODELS: dict[str, Callable[..., nnx.Module]] = {'dit': build_dit, 'jit': build_jit,
                                                'autoencoder': build_autoencoder}
SIZES = {'dit': DIT_SIZES, 'jit': JIT_SIZES, 'autoencoder': AUTOENCODER_SIZES}
# The objective that trains each model (experiment.Experiment.loss_fn dispatches on it).
OBJECTIVES = {'dit': 'diffusion', 'jit': 'diffusion', 'autoencoder': 'autoencoder'}


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
