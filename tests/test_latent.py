"""Codecs, the latent scale, and the scale-consistent VAE loss of Latent Wavelet Diffusion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from phipd_jax import evaluation, latent
from phipd_jax.models.autoencoder import Autoencoder


def _smooth_images(seed, n, size, channels=3):
  """Random smooth images in (-1, 1), float32 ``[n, size, size, channels]`` (NumPy, no compile):
  ``tanh`` of a sum of random plane waves with at most 2 cycles per image side."""
  rng = np.random.default_rng(seed)
  grid = np.arange(size) / size
  out = np.zeros((n, size, size, channels))
  for _ in range(6):
    fy, fx = rng.integers(-2, 3, (2, n, 1, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, channels))
    out += rng.normal(size=(n, 1, 1, channels)) * np.cos(
        2 * np.pi * (fy * grid[:, None, None] + fx * grid[None, :, None]) + phase)
  return np.tanh(0.6 * out).astype(np.float32)


def _checker(size, block):
  """``(-1)^(floor(i / block) + floor(j / block))`` on a ``size x size`` grid, ``[1, H, W, 1]``."""
  index = np.arange(size) // block
  return ((-1.0) ** (index[:, None] + index[None, :]))[None, :, :, None]


# ---------------------------------------------------------------------------------------------
# Codecs.


def test_identity_codec_round_trips_exactly():
  codec = latent.identity_codec(3)
  x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 12, 3)).astype(np.float32)
  z = codec.encode(x)
  assert codec.latent_shape(x.shape) == z.shape == x.shape
  assert codec.latent_shape((8, 12, 3)) == (8, 12, 3)
  np.testing.assert_array_equal(np.asarray(codec.decode(z)), np.asarray(x))
  with pytest.raises(ValueError, match='C=3'):
    codec.latent_shape((2, 8, 8, 1))


def test_codec_scale_is_static_and_checked():
  codec = latent.Codec(latent._identity, latent._identity, None, 3, 3, scale=jnp.float32(2.0))
  assert type(codec.scale) is float and codec.scale == 2.0  # Hashable: a jit-static field.
  with pytest.raises(ValueError, match='scale'):
    latent.Codec(latent._identity, latent._identity, None, 3, 3, scale=0.0)


@pytest.fixture(scope='module')
def small_f4():
  """``nnx.split`` of an f=4 autoencoder with 'tiny' widths quartered (few FLOPs, short compile
  on CPU), built once for the module."""
  return nnx.split(Autoencoder(downsample=4, channels=(8, 16, 16), rngs=nnx.Rngs(0)))


def test_autoencoder_codec_scales_shifts_and_jits(small_f4):
  graphdef, params = small_f4
  codec = latent.autoencoder_codec(graphdef, params, scale=2.0, shift=0.5)
  x = _smooth_images(1, 2, 16)

  @jax.jit
  def run(codec, params, x):  # The codec is a pytree argument: its params are traced.
    z = codec.encode(x)
    model = nnx.merge(graphdef, params)
    mean = model.encode(x)[0]
    return z, codec.decode(z), mean, model.decode(mean)

  z, x_hat, mean, reference = run(codec, params, x)
  assert z.shape == codec.latent_shape(x.shape) == (2, 4, 4, 4)
  assert codec.latent_shape((16, 16, 3)) == (4, 4, 4)
  np.testing.assert_allclose(z, (mean - 0.5) * 2.0, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(x_hat, reference, rtol=1e-4, atol=1e-5)
  assert len(jax.tree.leaves(codec)) == len(jax.tree.leaves(params)) > 0
  with pytest.raises(ValueError, match='f=4'):
    codec.encode(jnp.zeros((1, 18, 16, 3)))


def test_measure_latent_scale_matches_numpy():
  images = np.random.default_rng(2).normal(0.1, 0.3, (5, 4, 4, 3)).astype(np.float32)

  def encode(x):
    return 3.0 * x[..., :2] + 1.0

  scale = latent.measure_latent_scale(encode, images, batch_size=2)
  expected = 1.0 / np.std(3.0 * np.asarray(images, np.float64)[..., :2] + 1.0)
  assert isinstance(scale, float)
  assert scale == pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError, match='std'):
    latent.measure_latent_scale(lambda x: jnp.zeros_like(x), images)


# ---------------------------------------------------------------------------------------------
# The loss: closed forms on toy linear encoders.

_K = 3.0  # Decoder gain of the toy pair below.
_C0, _A, _B, _C = 0.1, 0.2, 0.3, 0.4  # Constant and checkerboard amplitudes (blocks 1, 2, 4).


def _toy_encode(x):
  return latent.avg_pool(x, 2), None  # f = 2, deterministic.


def _toy_decode(z):
  return _K * jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)


def _toy_image():
  x = _C0 + _A * _checker(16, 1) + _B * _checker(16, 2) + _C * _checker(16, 4)
  return jnp.asarray(np.tile(x, (2, 1, 1, 3)), jnp.float32)


# With E = pool_2 and D = 3 * up_2 the terms are sums of squared amplitudes of orthogonal
# patterns: D(E x) - x = 2 c + 2 B chk2 + 2 C chk4 - A chk1; for s = 2, D(pool_2 z) = 3 up_2(pool_4
# x) against pool_2 x = c + B chk1 + C chk2; for s = 4, D(pool_4 z) = 3 c against c + C chk1.
# Pooling the image after decoding instead would give 4 (c^2 + B^2 + C^2) for s = 2.
_REC = 4 * _C0**2 + _A**2 + 4 * _B**2 + 4 * _C**2
_SCALE = {2: 4 * _C0**2 + _B**2 + 4 * _C**2, 4: 4 * _C0**2 + _C**2}


@functools.lru_cache(maxsize=None)
def _jitted_toy_loss(**kw):
  return jax.jit(functools.partial(latent.scale_consistent_vae_loss, encode=_toy_encode,
                                   decode=_toy_decode, **kw))


def _toy_loss(key, **kw):
  return _jitted_toy_loss(**kw)(_toy_image(), key=key)


def test_without_extra_terms_loss_is_reconstruction_mse():
  x = _toy_image()
  loss, metrics = _toy_loss(jax.random.key(0), alpha=0.0, beta=0.0, lam=0.0)
  assert float(loss) == pytest.approx(_REC, rel=1e-5)
  assert float(loss) == pytest.approx(float(jnp.mean((_toy_decode(_toy_encode(x)[0]) - x)**2)))
  assert float(metrics['rec_mse']) == float(loss)
  assert float(metrics['scale_mse']) == float(metrics['kl']) == float(metrics['lpips']) == 0.0


def test_scale_term_same_s_for_latent_and_image_drawn_from_key():
  seen = set()
  for seed in range(12):
    key = jax.random.key(seed)
    loss, metrics = _toy_loss(key, alpha=0.5, lam=0.0)
    s = int(metrics['scale_s'])
    assert s in (2, 4)
    seen.add(s)
    assert float(metrics['scale_mse']) == pytest.approx(_SCALE[s], rel=1e-5)
    assert float(loss) == pytest.approx(_REC + 0.5 * _SCALE[s], rel=1e-5)
    _, again = _toy_loss(key, alpha=0.5, lam=0.0)
    assert int(again['scale_s']) == s  # Same key, same s.
  assert seen == {2, 4}
  for s in (2, 4):  # A single scale is always drawn.
    _, metrics = _toy_loss(jax.random.key(0), alpha=1.0, lam=0.0, scales=(s,))
    assert int(metrics['scale_s']) == s
    assert float(metrics['scale_mse']) == pytest.approx(_SCALE[s], rel=1e-5)


def test_scale_not_dividing_latent_raises():
  with pytest.raises(ValueError, match='s=3'):
    latent.scale_consistent_vae_loss(_toy_image(), _toy_encode, _toy_decode, jax.random.key(0),
                                     lam=0.0, scales=(2, 3))


def test_kl_term_closed_form():
  x = _toy_image()
  logvar = jnp.full((2, 8, 8, 3), -0.5)

  def encode(x):
    return latent.avg_pool(x, 2), logvar

  loss, metrics = latent.scale_consistent_vae_loss(x, encode, _toy_decode, jax.random.key(0),
                                                   alpha=0.0, beta=0.01, lam=0.0)
  mean = np.asarray(latent.avg_pool(x, 2), np.float64)
  kl = 0.5 * np.sum(mean**2 + np.exp(-0.5) - 1.0 + 0.5) / 2  # Sum over the latent, mean over B.
  assert float(metrics['kl']) == pytest.approx(kl, rel=1e-5)
  assert float(loss) == pytest.approx(_REC + 0.01 * kl, rel=1e-5)
  with pytest.raises(ValueError, match='logvar'):
    latent.scale_consistent_vae_loss(x, _toy_encode, _toy_decode, jax.random.key(0), beta=0.1,
                                     lam=0.0)


def test_lpips_term_is_vgg_lpips_on_unit_range_images_and_differentiable():
  # The released code feeds [0, 1] images to LPIPS (which expects [-1, 1]); so does the loss.
  x = _smooth_images(3, 2, 64)
  noise = 0.3 * np.random.default_rng(4).normal(size=x.shape).astype(np.float32)

  def decode(z, gain):
    return jnp.clip(gain * z + noise, -1, 1)

  @jax.jit
  def loss_and_grad(gain, weights):  # The gradient reaches the decoder through LPIPS.
    return jax.value_and_grad(lambda gain: latent.scale_consistent_vae_loss(
        x, lambda x: (x, None), lambda z: decode(z, gain), jax.random.key(0), alpha=0.0,
        lam=0.5, lpips_params=weights), has_aux=True)(gain)

  (loss, metrics), grad = loss_and_grad(jnp.float32(1.0), latent.lpips_vgg_weights())
  x_hat = decode(x, 1.0)
  unit = evaluation.lpips((x_hat + 1) / 2, (x + 1) / 2, net='vgg16')
  signed = evaluation.lpips(x_hat, x, net='vgg16')
  assert float(metrics['lpips']) == pytest.approx(float(np.mean(unit)), abs=1e-4)
  assert float(loss) == pytest.approx(float(metrics['rec_mse']) + 0.5 * float(np.mean(unit)),
                                      abs=1e-4)
  assert abs(float(np.mean(signed)) - float(np.mean(unit))) > 1e-3  # The mapping matters.
  # d rec_mse / d gain alone, to show the LPIPS term contributes to the gradient.
  rec_grad = jax.grad(lambda g: jnp.mean((decode(x, g) - x)**2))(1.0)
  assert np.isfinite(float(grad)) and abs(float(grad) - float(rec_grad)) > 1e-4


# ---------------------------------------------------------------------------------------------
# The loss on the real autoencoder.


def test_adam_training_lowers_reconstruction(small_f4):
  graphdef, params = small_f4
  images = _smooth_images(6, 16, 32)
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(params, opt_state, key):
    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      return latent.scale_consistent_vae_loss(images, model.encode, model.decode, key,
                                              alpha=0.25, beta=1e-4, lam=0.0)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    stats = dict(metrics, grad_norm=optax.global_norm(grads), grad_finite=finite)
    return optax.apply_updates(params, updates), opt_state, stats

  opt_state = jax.jit(optimizer.init)(params)
  history = []
  for i in range(30):
    params, opt_state, stats = step(params, opt_state, jax.random.key(i))
    # jax.grad of the full loss (reconstruction, scale and KL terms) w.r.t. the autoencoder.
    assert bool(stats['grad_finite']) and float(stats['grad_norm']) > 0
    assert float(stats['kl']) > 0 and float(stats['scale_mse']) > 0
    history.append(float(stats['rec_mse']))
  assert history[-1] < 0.5 * history[0], history
