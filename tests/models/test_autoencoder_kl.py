"""AutoencoderKL against diffusers' AutoencoderKL on converted random weights, and the converter's
errors (missing / wrongly shaped / unexpected keys, unsupported configs) and presets."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import helpers
from phipd_jax.convert.reading import ConversionError, StateDict
from phipd_jax.convert.vae import (autoencoder_kl_from_diffusers, convert_autoencoder_kl,
                                   model_kwargs_from_diffusers_config, scaling_and_shift)
from phipd_jax.models.autoencoder_kl import AUTOENCODER_KL_PRESETS, AutoencoderKL, preset_kwargs

torch = pytest.importorskip('torch')
diffusers = pytest.importorskip('diffusers')

TOLERANCE = 1e-4  # max |ours - diffusers| / max |diffusers|
# Small diffusers configs: SD-like (4 channels, quant convs, 8 groups, f=2); SD3/FLUX-like (16
# channels, no quant convs, 32 groups); three levels (f=4, 2 blocks a level, no mid attention).
CONFIGS = {
    'sd_like': dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                    latent_channels=4),
    'sd3_like': dict(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
                     latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                     scaling_factor=1.5305, shift_factor=0.0609),
    'f4': dict(block_out_channels=(16, 32, 32), layers_per_block=2, norm_num_groups=8,
               latent_channels=4, mid_block_add_attention=False),
}
IMAGE = (2, 32, 32, 3)  # [B, H, W, C]


def _diffusers_vae(name: str):
  """A random diffusers AutoencoderKL of ``CONFIGS[name]``, every weight perturbed."""
  return helpers.random_diffusers_vae(sum(map(ord, name)), **CONFIGS[name])


def _state_dict(vae) -> dict:
  return {k: v.detach().numpy() for k, v in vae.state_dict().items()}


def _nchw(x: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(x) -> np.ndarray:
  return x.detach().numpy().transpose(0, 2, 3, 1)


def _relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  assert ours.shape == reference.shape, (ours.shape, reference.shape)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


@nnx.jit
def _encode(model, x):
  return model.encode(x)


@nnx.jit
def _decode(model, z):
  return model.decode(z)


@pytest.fixture(scope='module')
def compared():
  """Per config: (diffusers vae, converted params, {output: (ours, diffusers)})."""
  rng = np.random.default_rng(0)
  out = {}
  for name in CONFIGS:
    vae = _diffusers_vae(name)
    kwargs = model_kwargs_from_diffusers_config(dict(vae.config))
    params = convert_autoencoder_kl(StateDict(_state_dict(vae), name), kwargs)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: AutoencoderKL(**kwargs, rngs=nnx.Rngs(0))))
    model = nnx.merge(graphdef, params)
    x = rng.uniform(-1, 1, IMAGE).astype(np.float32)
    z = rng.standard_normal(model.latent_shape(IMAGE)).astype(np.float32)
    mean, logvar = _encode(model, jnp.asarray(x))
    # model(x) is decode(mean): the decoder compiled for z (same shape) runs it.
    ours = [np.asarray(a) for a in (mean, logvar, _decode(model, jnp.asarray(z)),
                                    _decode(model, mean))]
    with torch.no_grad():
      posterior = vae.encode(_nchw(x)).latent_dist
      theirs = [_nhwc(posterior.mean), _nhwc(posterior.logvar), _nhwc(vae.decode(_nchw(z)).sample),
                _nhwc(vae(_nchw(x)).sample)]
    out[name] = (vae, params, dict(zip(('mean', 'logvar', 'decode', 'forward'),
                                       zip(ours, theirs))))
  return out


@pytest.mark.parametrize('name', list(CONFIGS))
def test_outputs_match_diffusers(compared, name):
  _, _, outputs = compared[name]
  errors = {k: _relative_error(ours, theirs) for k, (ours, theirs) in outputs.items()}
  print(f'{name}: max relative error ' + ', '.join(f'{k} {v:.2e}' for k, v in errors.items()))
  assert max(errors.values()) <= TOLERANCE, errors
  f = 2 ** (len(CONFIGS[name]['block_out_channels']) - 1)
  latent = CONFIGS[name]['latent_channels']
  assert outputs['mean'][0].shape == (2, 32 // f, 32 // f, latent)
  assert outputs['decode'][0].shape == outputs['forward'][0].shape == IMAGE
  assert all(ours.dtype == np.float32 for ours, _ in outputs.values())
  # Not trivially passing: the outputs vary and the attention / residual paths are exercised.
  assert all(np.std(theirs) > 0.05 for _, theirs in outputs.values())


def test_shapes_and_input_errors():
  model = nnx.eval_shape(lambda: AutoencoderKL(
      block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=6,
      out_channels=1, rngs=nnx.Rngs(0)))  # The checks raise before any computation.
  assert model.downsample == 4 and model.latent_channels == 6 and model.in_channels == 3
  assert model.latent_shape((5, 16, 24, 3)) == (5, 4, 6, 6)
  with pytest.raises(ValueError, match=r'18, 16, 3.*f=4'):
    model.encode(jnp.zeros((1, 18, 16, 3)))
  with pytest.raises(ValueError, match='C=3'):
    model.latent_shape((1, 16, 16, 1))
  with pytest.raises(ValueError, match='latent'):
    model.decode(jnp.zeros((1, 2, 2, 4)))
  with pytest.raises(ValueError, match='norm_num_groups=32'):
    AutoencoderKL(block_out_channels=(16, 48), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='block_out_channels'):
    AutoencoderKL(block_out_channels=(), rngs=nnx.Rngs(0))


def _state(compared, name='sd_like') -> dict:
  return _state_dict(compared[name][0])


def _kwargs(compared, name='sd_like') -> dict:
  return model_kwargs_from_diffusers_config(dict(compared[name][0].config))


def test_missing_key_is_named(compared):
  arrays = _state(compared)
  key = 'decoder.up_blocks.1.resnets.1.conv2.weight'
  del arrays[key]
  with pytest.raises(ConversionError, match=rf"missing key '{key}'.*\(32, 32, 3, 3\)"):
    convert_autoencoder_kl(StateDict(arrays), _kwargs(compared))
  arrays = _state(compared)
  del arrays['encoder.mid_block.attentions.0.to_out.0.bias']
  with pytest.raises(ConversionError, match=r"'encoder.mid_block.attentions.0.to_out.0.bias'"):
    convert_autoencoder_kl(StateDict(arrays), _kwargs(compared))


def test_wrong_shape_names_key_and_both_shapes(compared):
  arrays = _state(compared)
  arrays['encoder.conv_in.weight'] = np.zeros((32, 3, 1, 1), np.float32)
  with pytest.raises(ConversionError,
                     match=r"'encoder.conv_in.weight' has shape \(32, 3, 1, 1\).*\(32, 3, 3, 3\)"):
    convert_autoencoder_kl(StateDict(arrays), _kwargs(compared))
  arrays = _state(compared)
  arrays['decoder.mid_block.attentions.0.to_k.weight'] = np.zeros((64, 32), np.float32)
  with pytest.raises(ConversionError, match=r"to_k.weight' has shape \(64, 32\).*\(64, 64\)"):
    convert_autoencoder_kl(StateDict(arrays), _kwargs(compared))


def test_unexpected_keys_are_refused(compared):
  arrays = _state(compared)
  arrays['encoder.extra.weight'] = np.zeros((3,), np.float32)
  with pytest.raises(ConversionError, match=r'unexpected.*encoder\.extra\.weight'):
    convert_autoencoder_kl(StateDict(arrays), _kwargs(compared))
  kwargs = dict(_kwargs(compared), use_quant_conv=False)  # Weights with a quant conv: refused.
  with pytest.raises(ConversionError, match=r'unexpected.*quant_conv\.bias'):
    convert_autoencoder_kl(StateDict(_state(compared)), kwargs)


def test_legacy_attention_names_and_conv_weights(compared):
  arrays = _state(compared)
  legacy = {}
  for key, value in arrays.items():
    for new, old in (('to_q', 'query'), ('to_k', 'key'), ('to_v', 'value'),
                     ('to_out.0', 'proj_attn')):
      key = key.replace(f'.{new}.', f'.{old}.')
    if key.startswith('decoder.mid_block.attentions') and value.ndim == 2:
      value = value[:, :, None, None]  # The LDM layout: 1x1 convs.
    legacy[key] = value
  assert 'encoder.mid_block.attentions.0.proj_attn.weight' in legacy
  params = convert_autoencoder_kl(StateDict(legacy), _kwargs(compared))
  reference = compared['sd_like'][1]
  for (path, ours), (_, theirs) in zip(nnx.to_flat_state(params), nnx.to_flat_state(reference)):
    np.testing.assert_array_equal(np.asarray(ours.get_value()), np.asarray(theirs.get_value()),
                                  err_msg=str(path))


def test_unsupported_config_names_the_field(compared):
  config = dict(compared['sd_like'][0].config)
  for field, value in (('down_block_types', ['DownEncoderBlock2D', 'AttnDownEncoderBlock2D']),
                       ('up_block_types', ['UpDecoderBlock2D', 'AttnUpDecoderBlock2D']),
                       ('act_fn', 'gelu'), ('down_block_types', ['DownEncoderBlock2D']),
                       ('_class_name', 'AutoencoderKLFlux2'), ('patch_size', 2)):
    with pytest.raises(ConversionError, match=field):
      model_kwargs_from_diffusers_config(dict(config, **{field: value}))
  assert model_kwargs_from_diffusers_config(dict(config, act_fn='swish', force_upcast=False))
  assert model_kwargs_from_diffusers_config({})['block_out_channels'] == (64,)  # Defaults.


def test_scaling_and_shift(compared):
  assert scaling_and_shift(dict(compared['sd3_like'][0].config)) == (1.5305, 0.0609)
  assert scaling_and_shift(dict(compared['sd_like'][0].config)) == (0.18215, 0.0)  # shift None.
  assert scaling_and_shift({'scaling_factor': 0.13025}) == (0.13025, 0.0)
  with pytest.raises(ConversionError, match='latents_mean'):
    scaling_and_shift({'latents_mean': [0.0] * 4, 'latents_std': [1.0] * 4})


def test_from_a_diffusers_folder(compared, tmp_path):
  vae, params, _ = compared['sd3_like']
  vae.save_pretrained(tmp_path)
  model, scaling, shift = autoencoder_kl_from_diffusers(str(tmp_path))
  assert (scaling, shift) == (1.5305, 0.0609) and model.quant_conv is None
  for (path, ours), (_, theirs) in zip(nnx.to_flat_state(nnx.state(model, nnx.Param)),
                                       nnx.to_flat_state(params)):
    np.testing.assert_array_equal(np.asarray(ours.get_value()), np.asarray(theirs.get_value()),
                                  err_msg=str(path))
  (tmp_path / 'config.json').write_text(json.dumps(dict(vae.config, act_fn='relu')))
  with pytest.raises(ConversionError, match='act_fn'):
    autoencoder_kl_from_diffusers(str(tmp_path))


def test_presets_match_diffusers_architecture():
  """Each preset has the published scaling numbers and builds diffusers' network: the config
  round trip, and the same parameter count as diffusers' model (built on the meta device) for
  the two layouts (4 channels with quant convs: 83.65M; 16 channels without: 83.82M)."""
  expected = {'sd': (4, 0.18215, 0.0, True), 'sdxl': (4, 0.13025, 0.0, True),
              'sd3': (16, 1.5305, 0.0609, False), 'flux': (16, 0.3611, 0.1159, False)}
  assert sorted(AUTOENCODER_KL_PRESETS) == sorted(expected)
  blocks = dict(down_block_types=('DownEncoderBlock2D',) * 4,
                up_block_types=('UpDecoderBlock2D',) * 4)
  counted = {}
  for name, preset in AUTOENCODER_KL_PRESETS.items():
    latent, scaling, shift, quant = expected[name]
    assert (preset['latent_channels'], preset['scaling_factor'], preset['shift_factor'],
            preset['use_quant_conv'], preset['use_post_quant_conv']) == (latent, scaling, shift,
                                                                          quant, quant)
    assert preset['block_out_channels'] == (128, 256, 512, 512)
    assert preset['layers_per_block'] == 2 and preset['mid_block_add_attention']
    kwargs = preset_kwargs(name)
    with torch.device('meta'):
      vae = diffusers.AutoencoderKL(**blocks, **preset)
    assert model_kwargs_from_diffusers_config(dict(vae.config)) == kwargs
    assert scaling_and_shift(dict(vae.config)) == (scaling, shift)
    layout = (latent, quant)
    if layout not in counted:
      abstract = nnx.eval_shape(lambda kw=kwargs: AutoencoderKL(**kw, rngs=nnx.Rngs(0)))
      counted[layout] = sum(int(np.prod(x.shape))
                            for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert counted[layout] == sum(p.numel() for p in vae.parameters()), name
  assert counted[(4, True)] == 83_653_863
  with pytest.raises(ValueError, match='preset'):
    preset_kwargs('sd2')
