"""DiT shapes, parameter counts (DiT paper Table 1) and input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax import models


@pytest.mark.parametrize('size, expected_millions', [('S', 33.0), ('B', 130.5)])
def test_parameter_counts_match_the_dit_paper(size, expected_millions):
  """DiT-S/2 and B/2 at 32x32x4 latents, 1000 classes, learned-sigma head (8 channels)."""
  model = nnx.eval_shape(lambda: models.dit(size, in_channels=4, patch_size=2, num_classes=1000,
                                            out_channels=8, rngs=nnx.Rngs(0)))
  count = models.count_parameters(model) / 1e6
  assert abs(count - expected_millions) / expected_millions < 0.01, count


@pytest.mark.parametrize('patch_size', [2, 4])
def test_shapes_any_multiple_of_the_patch(patch_size):
  model = models.dit('tiny', in_channels=3, patch_size=patch_size, rngs=nnx.Rngs(0))
  forward = nnx.jit(lambda m, x, t: m(x, t))  # One compile per shape, not one per op.
  for size in [(16, 16), (8, 24)]:
    x = jnp.ones((2,) + size + (3,))
    out = forward(model, x, jnp.array([0.1, 0.9]))
    chex.assert_shape(out, (2,) + size + (3,))
    chex.assert_type(out, jnp.float32)


def test_zero_initialised_output_and_time_and_label_conditioning():
  model = models.dit('tiny', in_channels=3, patch_size=2, num_classes=5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  np.testing.assert_array_equal(model(x, jnp.zeros(2)), 0.0)  # adaLN-Zero final layer.
  # Perturb the zero-initialised layers so the conditioning paths carry signal.
  state = nnx.state(model, nnx.Param)
  state = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), state)
  nnx.update(model, state)
  base = model(x, jnp.array([0.5, 0.5]), jnp.array([1, 1]))
  assert not np.allclose(base, model(x, jnp.array([0.1, 0.1]), jnp.array([1, 1])))
  assert not np.allclose(base, model(x, jnp.array([0.5, 0.5]), jnp.array([2, 2])))
  # y=None means the null label (index num_classes), the unconditional branch of CFG.
  np.testing.assert_allclose(model(x, jnp.array([0.5, 0.5])),
                             model(x, jnp.array([0.5, 0.5]), jnp.array([5, 5])), atol=1e-6)
  assert model.null_label == 5


def test_bfloat16_compute_keeps_float32_params_and_output():
  model = models.dit('tiny', in_channels=3, patch_size=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  chex.assert_type(model(jnp.ones((1, 8, 8, 3)), jnp.ones(1)), jnp.float32)


def test_bad_sizes_raise():
  model = models.dit('tiny', in_channels=3, patch_size=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='patch_size'):
    model(jnp.ones((1, 18, 16, 3)), jnp.ones(1))
  with pytest.raises(ValueError, match='model.size'):
    models.dit('huge', in_channels=3, patch_size=2, rngs=nnx.Rngs(0))


def test_remat_policies_compute_the_same_function_and_gradient():
  """model.remat trades memory for recomputation: value and gradient equal the plain model's."""
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  t = jnp.array([0.3, 0.8])
  results = {}
  for remat in ('none', 'dots', 'full'):
    model = models.build('dit', size='tiny', patch_size=4, remat=remat, in_channels=3,
                         image_size=16, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    # Non-zero final layers, so the gradient reaches every block.
    params = jax.tree.map(lambda p: p + 0.01, params)
    loss = lambda p: jnp.sum(nnx.merge(graphdef, p)(x, t) ** 2)
    results[remat] = jax.jit(jax.value_and_grad(loss))(params)
  for remat in ('dots', 'full'):
    chex.assert_trees_all_close(results[remat], results['none'], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='model.remat'):
    models.build('dit', size='tiny', patch_size=4, remat='some', in_channels=3, image_size=16,
                 rngs=nnx.Rngs(0))


def test_param_dtype_bfloat16_stores_parameters_in_bf16():
  model = models.build('dit', size='tiny', patch_size=4, dtype='bfloat16', param_dtype='bfloat16',
                       in_channels=3, image_size=16, rngs=nnx.Rngs(0))
  dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}
  out = model(jnp.ones((1, 16, 16, 3)), jnp.array([0.5]))
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
  mixed = models.build('dit', size='tiny', patch_size=4, dtype='bfloat16', in_channels=3,
                       image_size=16, rngs=nnx.Rngs(0))
  assert {p.dtype for p in jax.tree.leaves(nnx.state(mixed, nnx.Param))} == {jnp.dtype('float32')}
  with pytest.raises(ValueError, match='model.param_dtype'):
    models.build('dit', size='tiny', patch_size=4, param_dtype='float16', in_channels=3,
                 image_size=16, rngs=nnx.Rngs(0))
