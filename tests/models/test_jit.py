"""JiT model, its objective (x-prediction, v-loss, clamp) and sampler (spec Sec. 2-3, 9)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax import diffusion, experiment, models, sharding
from phipd_jax.data import pipeline
from phipd_jax.models import jit as jit_lib

JIT_PROCESS = dict(time_sampler='logit_normal', logit_mean=0.8, logit_std=0.8, t_clamp=0.05)


@pytest.mark.parametrize('size, patch_size, image_size, expected_millions', [
    ('B', 16, 256, 131), ('B', 32, 512, 133), ('L', 16, 256, 459), ('H', 16, 256, 953)])
def test_parameter_counts_match_the_paper(size, patch_size, image_size, expected_millions):
  del image_size  # Counts depend on the patch size, not the grid (positions are not parameters).
  model = nnx.eval_shape(lambda: models.jit_model(size, patch_size=patch_size, num_classes=1000,
                                                  rngs=nnx.Rngs(0)))
  assert models.count_parameters(model) / 1e6 == pytest.approx(expected_millions, abs=0.6)


def test_rope_scores_depend_only_on_the_relative_position():
  head_dim, grid = 16, 6
  angles = jit_lib.rope_angles(grid, grid, head_dim)
  keys = jax.random.split(jax.random.key(0), 2)
  q = jnp.broadcast_to(jax.random.normal(keys[0], (head_dim,)), (1, grid * grid, 1, head_dim))
  k = jnp.broadcast_to(jax.random.normal(keys[1], (head_dim,)), (1, grid * grid, 1, head_dim))
  scores = jnp.einsum('btd,bsd->ts', jit_lib.apply_rope(q, angles)[:, :, 0],
                      jit_lib.apply_rope(k, angles)[:, :, 0]).reshape(grid, grid, grid, grid)
  # Same offset (dy, dx) = (1, 2) from two different query positions: equal scores.
  np.testing.assert_allclose(scores[0, 0, 1, 2], scores[3, 2, 4, 4], rtol=1e-5)
  np.testing.assert_allclose(scores[2, 1, 2, 1], scores[5, 5, 5, 5], rtol=1e-5)  # Offset 0.
  assert abs(float(scores[0, 0, 1, 2] - scores[0, 0, 2, 1])) > 1e-4  # Rows != columns.
  # Rotations keep norms.
  np.testing.assert_allclose(jnp.linalg.norm(jit_lib.apply_rope(q, angles), axis=-1),
                             jnp.linalg.norm(q, axis=-1), rtol=1e-5)


def _tiny(spectral_forcing=None, num_classes=0, patch_size=4, seed=0):
  return models.jit_model('tiny', patch_size=patch_size, num_classes=num_classes,
                          in_context_len=4, spectral_forcing=spectral_forcing,
                          rngs=nnx.Rngs(seed))


def _randomize_zero_layers(model, seed=1):
  """adaLN-Zero makes a fresh JiT output zeros; give every parameter a random value instead."""
  graphdef, params = nnx.split(model, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [0.05 * jax.random.normal(k, x.shape) + (x if x.ndim == 1 else 0)
            for k, x in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


@nnx.jit
def _forward(model, x_t, t, y=None):
  return model(x_t, t, y)


def test_forward_shapes_in_context_tokens_and_label_conditioning():
  model = _randomize_zero_layers(_tiny(num_classes=5))
  x = jax.random.normal(jax.random.key(0), (2, 32, 16, 3))
  t = jnp.array([0.2, 0.9])
  out = _forward(model, x, t, jnp.array([1, 2]))
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert not np.allclose(out, _forward(model, x, t, jnp.array([3, 4])), atol=1e-4)  # Labels.
  null = jnp.full((2,), model.null_label)
  np.testing.assert_allclose(_forward(model, x, t, None), _forward(model, x, t, null), atol=1e-6)
  assert not np.allclose(out, _forward(model, x, t, null), atol=1e-4)
  # In-context tokens take part in attention: changing their learned embedding changes the
  # image tokens' output, although the in-context tokens themselves are dropped at the end.
  model.in_context_embed[...] = model.in_context_embed[...] + 1.0
  assert not np.allclose(out, _forward(model, x, t, jnp.array([1, 2])), atol=1e-4)
  with pytest.raises(ValueError, match='patch_size=4'):
    model(jnp.zeros((1, 30, 16, 3)), t[:1])
  with pytest.raises(ValueError, match='in_context_start'):
    models.JiT(in_channels=3, patch_size=4, hidden=64, depth=2, heads=4, bottleneck=16,
               in_context_start=2, rngs=nnx.Rngs(0))


def test_spectral_forcing_filters_the_network_input_only():
  forcing = models.SpectralForcing()
  plain = _randomize_zero_layers(_tiny())
  forced = _randomize_zero_layers(_tiny(spectral_forcing=forcing))
  x0 = jax.random.uniform(jax.random.key(4), (4, 32, 32, 3), minval=-1, maxval=1)
  eps = jax.random.normal(jax.random.key(5), x0.shape)
  t = jnp.array([0.1, 0.4, 0.7, 0.95])
  x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
  # The SF model is the plain model applied to the filtered input (t_data = 1 - t).
  forced_out = _forward(forced, x_t, t)
  np.testing.assert_allclose(forced_out, _forward(plain, forcing(x_t, 1 - t), t), atol=1e-4)
  assert not np.allclose(forced_out, _forward(plain, x_t, t), atol=1e-3)
  # The JiT loss with a dummy network (a fresh model outputs zeros: adaLN-Zero): the target is
  # the unfiltered one, so the loss is the same with and without Spectral Forcing, and equals
  # the closed form mean(((x_t - 0) / max(t, .05) - (x_t - x0) / max(t, .05))^2).
  process = diffusion.FlowMatching(**JIT_PROCESS)
  noise_fn = lambda key, x: jax.random.normal(key, x.shape)
  key = jax.random.key(6)
  losses = []
  for spectral_forcing in (None, forcing, models.SpectralForcing(schedule='power_law')):
    model = _tiny(spectral_forcing=spectral_forcing)
    losses.append(float(diffusion.diffusion_loss(process, model, x0, key, noise_fn, 'x',
                                                 loss_space='v')))
  t_key, _ = jax.random.split(key)
  t = process.sample_time(t_key, 4)[:, None, None, None]
  closed_form = float(jnp.mean((x0 / jnp.maximum(t, 0.05))**2))
  np.testing.assert_allclose(losses, [closed_form] * 3, rtol=1e-5)


def test_v_loss_of_an_x_prediction_is_the_clamped_weighted_x_loss():
  process = diffusion.FlowMatching(**JIT_PROCESS)
  x0 = jax.random.uniform(jax.random.key(0), (64, 8, 8, 3), minval=-1, maxval=1)
  x_hat = x0 + 0.1 * jax.random.normal(jax.random.key(1), x0.shape)
  apply_fn = lambda x_t, t, y: x_hat
  noise_fn = lambda key, x: jax.random.normal(key, x.shape)
  key = jax.random.key(2)
  loss = diffusion.diffusion_loss(process, apply_fn, x0, key, noise_fn, 'x', loss_space='v')
  t = process.sample_time(jax.random.split(key)[0], 64)[:, None, None, None]
  expected = jnp.mean(((x_hat - x0) / jnp.maximum(t, 0.05))**2)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  # The conversion itself: v = eps - x0 = (x_t - x0) / t where t >= clamp (JiT's (x - z)/(1-t)
  # with the sign of the library's v).
  eps = jax.random.normal(jax.random.key(3), x0.shape)
  t = jnp.full((64,), 0.3)
  x_t = process.noisy(x0, eps, t)
  x0_hat, eps_hat = process.to_x0_eps(x0, x_t, t, 'x')
  np.testing.assert_allclose(eps_hat - x0_hat, eps - x0, atol=1e-4)
  with pytest.raises(ValueError, match='flow-matching'):
    diffusion.diffusion_loss(diffusion.DDPM(), apply_fn, x0, key, noise_fn, 'x', loss_space='v')


def test_time_sampler_median_is_jit_median_in_the_library_convention():
  t = diffusion.FlowMatching(**JIT_PROCESS).sample_time(jax.random.key(0), 200_000)
  # JiT: median t_data = sigmoid(-0.8) = 0.31 (noise-heavy); library t = 1 - t_data.
  assert float(jnp.median(1.0 - t)) == pytest.approx(1 / (1 + math.exp(0.8)), abs=3e-3)


@pytest.mark.parametrize('t_clamp, residual', [(1e-9, 0.0), (0.05, 0.0171)])
def test_heun_with_an_oracle_lands_on_the_data_up_to_the_clamp(t_clamp, residual):
  process = diffusion.FlowMatching(t_clamp=t_clamp)
  x_star = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3), minval=-1, maxval=1)
  z0 = jax.random.normal(jax.random.key(1), x_star.shape)
  oracle = diffusion.denoiser(process, lambda x_t, t, y: x_star, 'x')
  out = diffusion.solve(process, oracle, z0, process.time_grid(50), 'heun')
  # Spec Sec. 2: with the clamp the sampler ends 1.7% of (z0 - x*) away from x*.
  np.testing.assert_allclose(out, x_star + residual * (z0 - x_star), atol=2e-4)
  if residual:
    ratio = (out - x_star) / (z0 - x_star)
    assert float(jnp.median(ratio)) == pytest.approx(0.017136, abs=1e-4)


def test_guidance_applies_only_inside_the_interval():
  process = diffusion.FlowMatching()
  y = jnp.array([1, 2])
  # Conditional output 1, unconditional 0: the guided x0 is the scale where guidance is on.
  apply_fn = lambda x_t, t, labels: jnp.broadcast_to(
      (labels != 10).astype(jnp.float32)[:, None, None, None], x_t.shape)
  denoise = diffusion.denoiser(process, apply_fn, 'x', y=y, guidance_scale=3.0, null_label=10,
                               guidance_interval=(0.0, 0.9))  # JiT's t_data in (0.1, 1).
  x = jnp.zeros((2, 4, 4, 3))
  for t, expected in [(0.95, 1.0), (0.9, 1.0), (0.5, 3.0), (0.05, 3.0), (0.0, 1.0)]:
    x0_hat, _ = denoise(x, jnp.float32(t))
    np.testing.assert_allclose(x0_hat, expected, err_msg=f't={t}')


def test_sixty_jit_steps_with_spectral_forcing_lower_the_loss(tiny_config):
  from configs import common
  config = common.set_jit_recipe(tiny_config)
  config.model.size = 'tiny'
  config.model.patch_size = 4
  config.model.in_context_len = 4
  config.model.spectral_forcing.schedule = 'linear'
  config.optim.ema_decay = 0.99
  config.train.num_steps = 60
  config.optim.warmup_steps = 5
  config.optim.learning_rate = 2e-3
  exp = experiment.build(config)
  mesh = sharding.make_mesh()
  state = exp.create_train_state(mesh)
  train_step = exp.train_step(mesh, state)
  dataset = pipeline.train_dataset(config.data, 8, 0, 60)
  probe = jnp.asarray(np.concatenate([dataset[i]['image'] for i in range(4)]))
  process = exp.process
  assert process.t_clamp == 0.05
  noise_fn = lambda key, x: jax.random.normal(key, x.shape)

  def probe_loss(params):
    return float(np.mean([diffusion.diffusion_loss(
        process, exp.apply_fn(params), probe, jax.random.key(k), noise_fn, 'x',
        loss_space='v') for k in range(4)]))

  before = probe_loss(state.params)
  for step in range(60):
    state, metrics = train_step(state, sharding.global_batch(dataset[step], mesh))
    assert np.isfinite(float(metrics['loss']))
  after = probe_loss(state.params)
  assert after < 0.6 * before, (before, after)


def test_jit_configs_validate_and_bad_values_fail_early():
  from configs import jit_sf_fss, jit_spectral_forcing
  for arg in ('p4', 'p8,sf', 'p16,sf_power,cpu', 'p16,sf,runlocal'):
    config = jit_spectral_forcing.get_config(arg)
    experiment.build(config)
    assert config.model.name == 'jit' and config.diffusion.loss_space == 'v'
  assert jit_spectral_forcing.get_config('p8,sf').model.spectral_forcing.schedule == 'linear'
  assert jit_spectral_forcing.get_config('p8').model.spectral_forcing.schedule == ''
  fss = jit_sf_fss.get_config('p16,cpu')
  experiment.build(fss)
  assert fss.noise.kind == 'fss' and fss.model.spectral_forcing.schedule == 'linear'
  with pytest.raises(ValueError, match='unknown config option'):
    jit_spectral_forcing.get_config('p12')
  config = jit_spectral_forcing.get_config('p16,sf,cpu')
  config.model.spectral_forcing.window = 24
  with pytest.raises(ValueError, match='spectral_forcing.window'):
    experiment.build(config)
  config = jit_spectral_forcing.get_config('p16,cpu')
  config.model.name = 'dit'
  config.model.spectral_forcing.schedule = 'linear'
  with pytest.raises(ValueError, match="is not a setting of model.name='dit'"):
    config.model.size = 'S'
    experiment.build(config)
  config = jit_spectral_forcing.get_config('p16,cpu')
  config.sample.guidance_interval = (0.9, 0.1)
  with pytest.raises(ValueError, match='guidance_interval'):
    experiment.build(config)
