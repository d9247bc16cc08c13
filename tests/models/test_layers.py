"""Shared model layers: every attention form equals the plain softmax formula (values and
gradients), the 'auto' choice per backend, and the shared embeddings used by DiT and JiT."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from phipd_jax.models import layers

# The package exports the functions dit() and jit_model(); these are the modules.
dit_lib = importlib.import_module('phipd_jax.models.dit')
jit_lib = importlib.import_module('phipd_jax.models.jit')


def _qkv(batch=3, length=20, heads=2, dim=8, keys=None, seed=0):
  kq, kk, kv, kw = jax.random.split(jax.random.key(seed), 4)
  keys = length if keys is None else keys
  q = jax.random.normal(kq, (batch, length, heads, dim))
  k = jax.random.normal(kk, (batch, keys, heads, dim))
  v = jax.random.normal(kv, (batch, keys, heads, dim))
  w = jax.random.normal(kw, (batch, length, heads, dim))  # A random linear functional.
  return q, k, v, w


def _numpy_attention(q, k, v):
  """``softmax(q k^T / sqrt(d)) v`` per (batch, head) in float64 NumPy."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  logits = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum('bhqk,bkhd->bqhd', probs, v)


def _jnp_attention(q, k, v):
  """The same formula in jnp (its gradient is the reference gradient)."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(q.shape[-1])
  return jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, axis=-1), v)


def _tpu_reference(q, k, v):
  """The 'tpu' form's layout and padding code around the Pallas module's reference kernel."""
  from jax.experimental.pallas.ops.tpu import flash_attention as pallas_flash
  return layers.attention_tpu(q, k, v, kernel=pallas_flash.mha_reference_no_custom_vjp)


# Every form that runs on CPU: the two public names, the 'cpu' form with its query-block
# chunking (tiles too small for one example) and batch chunking forced, and the TPU wrapper.
FORMS = {
    'xla': functools.partial(layers.attention, implementation='xla'),
    'cpu': functools.partial(layers.attention, implementation='cpu'),
    'cpu, batch chunks': functools.partial(layers.attention_cpu, tile_bytes=2 * 20 * 20 * 4),
    'cpu, query blocks': functools.partial(layers.attention_cpu, tile_bytes=2 * 5 * 20 * 4),
    'cudnn (falls back on CPU)': functools.partial(layers.attention, implementation='cudnn'),
    'tpu wrapper, reference kernel': _tpu_reference,
}


@pytest.mark.parametrize('form', list(FORMS))
def test_attention_forms_match_the_formula(form):
  q, k, v, _ = _qkv()
  out = jax.jit(FORMS[form])(q, k, v)
  assert out.shape == q.shape and out.dtype == jnp.float32
  np.testing.assert_allclose(out, _numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('form', [f for f in FORMS if not f.startswith('tpu')])
def test_attention_form_gradients_match_the_formula(form):
  q, k, v, w = _qkv(seed=1)
  loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v) * w)
  grads = jax.jit(jax.grad(loss(FORMS[form]), argnums=(0, 1, 2)))(q, k, v)
  expected = jax.grad(loss(_jnp_attention), argnums=(0, 1, 2))(q, k, v)
  for name, got, want in zip('qkv', grads, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f'd/d{name}')


def test_cpu_form_chunks_with_different_key_length_and_forward_mode():
  q, k, v, w = _qkv(batch=4, length=12, keys=7, seed=2)
  for tile_bytes in (1, 2 * 12 * 7 * 4, 2**30):
    np.testing.assert_allclose(layers.attention_cpu(q, k, v, tile_bytes=tile_bytes),
                               _numpy_attention(q, k, v), rtol=1e-5, atol=1e-5)
  # Plain JAX (no custom_vjp): forward-mode differentiation works too.
  got = jax.jvp(lambda q: layers.attention_cpu(q, k, v, tile_bytes=1), (q,), (w,))[1]
  want = jax.jvp(lambda q: _jnp_attention(q, k, v), (q,), (w,))[1]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_cpu_form_keeps_bfloat16_and_a_float32_softmax():
  q, k, v, _ = _qkv(seed=3)
  out = layers.attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), implementation='cpu')
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), _numpy_attention(q, k, v), atol=5e-2)


def test_tpu_wrapper_pads_to_the_kernel_block():
  """288 tokens (JiT: 256 + 32 in-context) pad to 384; the padded keys must get no weight."""
  q, k, v, _ = _qkv(batch=1, length=288, heads=1, dim=8, seed=4)
  np.testing.assert_allclose(_tpu_reference(q, k, v), _numpy_attention(q, k, v),
                             rtol=1e-5, atol=1e-5)


def test_auto_resolves_by_backend_and_dtype(monkeypatch):
  assert jax.default_backend() == 'cpu'
  for impl in (None, 'auto'):
    assert layers.resolve_attention_implementation(impl, jnp.float32) == 'cpu'
    assert layers.resolve_attention_implementation(impl, jnp.bfloat16) == 'cpu'
  assert layers.resolve_attention_implementation('cudnn', jnp.float32) == 'xla'
  assert layers.resolve_attention_implementation('cudnn', jnp.float16) == 'cudnn'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert layers.resolve_attention_implementation(None, jnp.bfloat16) == 'cudnn'
  assert layers.resolve_attention_implementation(None, jnp.float32) == 'xla'
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  assert layers.resolve_attention_implementation('auto', jnp.float32) == 'tpu'


def test_auto_on_cpu_runs_the_cpu_form(monkeypatch):
  calls = []
  original = layers.attention_cpu
  monkeypatch.setattr(layers, 'attention_cpu', lambda *a, **kw: calls.append(1) or original(*a))
  q, k, v, _ = _qkv()
  layers.attention(q, k, v)
  layers.attention(q, k, v, implementation='auto')
  assert len(calls) == 2
  layers.attention(q, k, v, implementation='xla')
  assert len(calls) == 2


def test_unknown_implementation_raises():
  q, k, v, _ = _qkv()
  with pytest.raises(ValueError, match="'xla'.*'cpu'.*'cudnn'.*'tpu'"):
    layers.attention(q, k, v, implementation='flash')
  with pytest.raises(ValueError, match='implementation'):
    dit_lib.DiT(in_channels=3, patch_size=2, hidden=32, depth=1, heads=2,
                attention_impl='fast', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'\[B, L, heads, d\]'):
    layers.attention(q, k[:, :, :1], v, implementation='xla')


@pytest.mark.parametrize('model', ['dit', 'jit', 'video_dit'])
def test_models_agree_across_attention_forms(model):
  """Every attention form gives one output (and the video DiT's remat forms one gradient)."""
  from phipd_jax.models import video_dit as video_lib
  make = {
      'dit': lambda impl: dit_lib.DiT(in_channels=3, patch_size=2, hidden=32, depth=2, heads=2,
                                      num_classes=3, attention_impl=impl, rngs=nnx.Rngs(0)),
      'jit': lambda impl: jit_lib.JiT(in_channels=3, patch_size=2, hidden=32, depth=2, heads=2,
                                      bottleneck=8, num_classes=3, in_context_len=4,
                                      attention_impl=impl, rngs=nnx.Rngs(0)),
      'video_dit': lambda impl, remat='none': video_lib.VideoDiT(
          in_channels=3, patch_size=2, hidden=32, depth=2, heads=2, temporal_patch_size=2,
          attention='factorised', num_classes=3, attention_impl=impl, remat=remat,
          rngs=nnx.Rngs(0)),
  }[model]
  shape = (2, 4, 8, 8, 3) if model == 'video_dit' else (2, 8, 8, 3)
  x = jax.random.normal(jax.random.key(5), shape)
  t, y = jnp.array([0.3, 0.7]), jnp.array([0, 2])
  outs = {}
  for impl in ('xla', 'cpu', 'auto'):
    net = make(impl)
    # Non-zero adaLN/final layers, so the output depends on the attention.
    state = nnx.state(net, nnx.Param)
    nnx.update(net, jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(6), p.shape), state))
    outs[impl] = net(x, t, y)
  assert float(jnp.abs(outs['xla']).max()) > 1e-3
  np.testing.assert_allclose(outs['cpu'], outs['xla'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outs['auto'], outs['cpu'], rtol=0, atol=0)
  if model == 'video_dit':  # Rematerialisation changes memory, not numbers.
    grads = {}
    for remat in ('none', 'dots', 'full'):
      net = make('xla', remat)
      graphdef, params, rest = nnx.split(net, nnx.Param, ...)
      params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(6), p.shape),
                            params)
      loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(x, t, y) ** 2)
      grads[remat] = jax.tree.leaves(jax.jit(jax.grad(loss))(params))
    for remat in ('dots', 'full'):
      for a, b in zip(grads[remat], grads['none']):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_shared_layers_are_the_models_layers():
  for name in ('timestep_embedding', 'sincos_positions_2d', 'modulate', 'check_input',
               'unpatchify', 'TimestepEmbedder'):
    assert getattr(dit_lib, name) is getattr(layers, name)
  assert jit_lib.TimestepEmbedder is layers.TimestepEmbedder


def test_timestep_embedding_and_positions():
  emb = layers.timestep_embedding(jnp.array([0.0, 3.0]), 6)
  freqs = 10000.0 ** (-np.arange(3) / 3)
  np.testing.assert_allclose(emb[1], np.concatenate([np.cos(3 * freqs), np.sin(3 * freqs)]),
                             rtol=1e-6)
  table = layers.sincos_positions_2d(2, 3, 8)
  assert table.shape == (6, 8)
  # Token (row 1, col 2) = index 5: first half encodes the column, second half the row.
  np.testing.assert_allclose(table[5, :4], [np.sin(2), np.sin(2e-2), np.cos(2), np.cos(2e-2)],
                             rtol=1e-6)
  np.testing.assert_allclose(table[5, 4:], [np.sin(1), np.sin(1e-2), np.cos(1), np.cos(1e-2)],
                             rtol=1e-6)
  with pytest.raises(ValueError, match='multiple of 4'):
    layers.sincos_positions_2d(2, 2, 6)


def test_unpatchify_inverts_row_major_patches():
  image = jnp.arange(1 * 4 * 6 * 2, dtype=jnp.float32).reshape(1, 4, 6, 2)
  p = 2
  tokens = image.reshape(1, 2, p, 3, p, 2).transpose(0, 1, 3, 2, 4, 5).reshape(1, 6, p * p * 2)
  np.testing.assert_array_equal(layers.unpatchify(tokens, 2, 3, p), image)
  with pytest.raises(ValueError, match='patch_size=4'):
    layers.check_input('M', jnp.ones((1, 6, 8, 3)), 4, 3)


def test_two_stage_softmax_equals_jax_softmax_value_gradient_and_jvp():
  """The 'cpu' form's softmax (reductions split in groups of 32) is jax.nn.softmax."""
  logits = 4 * jax.random.normal(jax.random.key(0), (2, 3, 5, 256))
  tangent = jax.random.normal(jax.random.key(1), logits.shape)
  np.testing.assert_allclose(layers.softmax_last(logits), jax.nn.softmax(logits, axis=-1),
                             rtol=1e-6, atol=1e-7)
  _, jvp = jax.jvp(layers.softmax_last, (logits,), (tangent,))
  _, want = jax.jvp(lambda x: jax.nn.softmax(x, axis=-1), (logits,), (tangent,))
  np.testing.assert_allclose(jvp, want, rtol=1e-5, atol=1e-6)
  loss = lambda fn: lambda x: jnp.sum(fn(x) * tangent)
  np.testing.assert_allclose(jax.grad(loss(layers.softmax_last))(logits),
                             jax.grad(loss(lambda x: jax.nn.softmax(x, axis=-1)))(logits),
                             rtol=1e-5, atol=1e-6)
  # Large logits: no overflow (the max is subtracted); a length that 32 does not divide.
  big = jnp.concatenate([1e4 * jnp.ones((1, 40)), jnp.zeros((1, 40))], axis=-1)
  np.testing.assert_allclose(layers.softmax_last(big), jax.nn.softmax(big), atol=1e-7)
  q, k, v, w = _qkv(batch=2, length=96, heads=2, dim=8, seed=3)
  np.testing.assert_allclose(layers.attention_cpu(q, k, v), _numpy_attention(q, k, v),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype,tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_linear_is_nnx_linear_on_flattened_tokens(dtype, tol):
  """layers.Linear: same parameters as nnx.Linear, and the same values and gradients (parameters
  and input; its backward pass is hand-written) on a [B, T, in] input, computed as one
  [B * T, in] product, in float32 and with bfloat16 compute; a 2-D input and a 1-D one (no
  leading axes) work too."""
  ours = layers.Linear(6, 5, dtype=dtype, rngs=nnx.Rngs(0))
  theirs = nnx.Linear(6, 5, dtype=dtype, rngs=nnx.Rngs(0))
  g_ours, p_ours = nnx.split(ours)
  g_theirs, p_theirs = nnx.split(theirs)
  assert jax.tree.map(jnp.shape, p_ours) == jax.tree.map(jnp.shape, p_theirs)
  p = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(1), a.shape), p_theirs)
  x = jax.random.normal(jax.random.key(2), (3, 4, 6))
  w = jax.random.normal(jax.random.key(3), (3, 4, 5))
  loss = lambda g: lambda p, x: jnp.sum(nnx.merge(g, p)(x) * w)
  out = nnx.merge(g_ours, p)(x)
  assert out.dtype == dtype
  np.testing.assert_allclose(np.float32(out), np.float32(nnx.merge(g_theirs, p)(x)), atol=tol)
  for a, b in zip(jax.tree.leaves(jax.grad(loss(g_ours), argnums=(0, 1))(p, x)),
                  jax.tree.leaves(jax.grad(loss(g_theirs), argnums=(0, 1))(p, x))):
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
  assert nnx.merge(g_ours, p)(x[0]).shape == (4, 5) and nnx.merge(g_ours, p)(x[0, 0]).shape == (5,)
