"""The small KL autoencoder: shapes per downsampling factor, input checks, size table."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax.models import count_parameters
from phipd_jax.models.autoencoder import AUTOENCODER_SIZES, Autoencoder, autoencoder


@nnx.jit
def _run(model, x):
  mean, logvar = model.encode(x)
  return mean, logvar, model.decode(mean), model(x)


@pytest.fixture(scope='module')
def models():
  """'tiny' at f=8 (float32) and at f=4 (bfloat16 compute), 5 latent channels; built once."""
  return {f: autoencoder('tiny', latent_channels=5, downsample=f, dtype=dtype, rngs=nnx.Rngs(0))
          for f, dtype in ((8, jnp.float32), (4, jnp.bfloat16))}


@pytest.mark.parametrize('f', [4, 8])
def test_shapes(models, f):
  model = models[f]
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 24, 3)), jnp.float32)
  mean, logvar, x_hat, x_call = _run(model, x)
  assert mean.shape == logvar.shape == (2, 16 // f, 24 // f, 5)
  assert model.latent_shape(x.shape) == mean.shape
  assert x_hat.shape == x.shape
  assert mean.dtype == logvar.dtype == x_hat.dtype == jnp.float32
  assert jnp.allclose(x_call, x_hat)
  assert bool(jnp.all(jnp.isfinite(x_hat)))


def test_indivisible_size_raises(models):
  model = models[8]
  with pytest.raises(ValueError, match=r'20, 16, 3.*f=8'):
    _run(model, jnp.zeros((1, 20, 16, 3)))
  with pytest.raises(ValueError, match='C=3'):
    _run(model, jnp.zeros((1, 16, 16, 1)))
  with pytest.raises(ValueError, match='latent'):
    model.decode(jnp.zeros((1, 2, 2, 4)))


def test_bad_configuration_raises():
  with pytest.raises(ValueError, match='size'):
    autoencoder('huge', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='downsample=16'):
    autoencoder('tiny', downsample=16, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='downsample=2'):
    Autoencoder(downsample=2, channels=(8, 8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='entries'):
    Autoencoder(downsample=4, channels=(8, 8), rngs=nnx.Rngs(0))


@pytest.mark.parametrize('size,f,low,high', [
    ('tiny', 8, 0.3e6, 1e6), ('tiny', 4, 0.3e6, 1e6), ('base', 8, 10e6, 30e6),
    ('base', 4, 5e6, 30e6)])
def test_parameter_counts(size, f, low, high):
  assert set(AUTOENCODER_SIZES) == {'tiny', 'base'}
  model = nnx.eval_shape(lambda: autoencoder(size, downsample=f, rngs=nnx.Rngs(0)))
  assert low <= count_parameters(model) <= high
