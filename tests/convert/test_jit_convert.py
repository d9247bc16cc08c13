"""JiT / Spectral Forcing checkpoint conversion (phipd_jax.convert.jit) against a torch JiT.

The torch network below is written here from the paper's description (arXiv:2511.13720, Sec. 4
and App. A) with the parameter names of the real checkpoints (``LTH14/JiT``, and the Spectral
Forcing variant of ``WeichenFan/Spectral_Forcing`` with its DCT patchify); its RoPE, sin-cos
table, DCT low-pass and unpatchify are computed independently of the library's code. It is
random-initialised with non-zero weights everywhere (adaLN and output layers included), saved
as a training checkpoint shaped like the real ones, read back and converted.

Time: JiT's ``t`` is 1 at data (``z = t x + (1 - t) e``); the library's is 0 at data, so the
torch network at ``t`` equals the converted model at ``1 - t``.
"""

import argparse
import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip('torch')
nn = torch.nn

from phipd_jax.convert import jit as convert_lib  # pylint: disable=g-import-not-at-top
from phipd_jax.convert.reading import (  # pylint: disable=g-import-not-at-top
    ConversionError, StateDict)
from phipd_jax.models import build_jit  # pylint: disable=g-import-not-at-top

# The library's 'tiny' size: depth 4, hidden 128, 4 heads, bottleneck 32, in-context start 1.
DEPTH, HIDDEN, HEADS, BOTTLENECK, START = 4, 128, 4, 32, 1
PATCH, IMAGE, CLASSES, CONTEXT = 4, 32, 10, 8
TOLERANCE = 1e-4  # max |library - torch| / max |torch|


# ---------------------------------------------------------------------------------------------
# A small torch JiT with the checkpoints' parameter names.


class RMSNorm(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.weight = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def sincos_table(grid: int, dim: int) -> np.ndarray:
  """[grid^2, dim]: sin/cos of the column in the first half of channels, of the row in the rest."""
  quarter = dim // 4
  omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
  rows, cols = np.divmod(np.arange(grid * grid), grid)
  halves = []
  for position in (cols, rows):
    angle = position[:, None].astype(np.float64) * omega[None]
    halves.append(np.concatenate([np.sin(angle), np.cos(angle)], axis=1))
  return np.concatenate(halves, axis=1).astype(np.float32)


def rope_tables(grid: int, head_dim: int, prefix: int):
  """cos, sin [prefix + grid^2, head_dim]: pairs (2k, 2k+1) share an angle; the first half of
  the pairs turns with the row, the second with the column; prefix tokens do not turn."""
  freqs = 10000.0 ** (-torch.arange(head_dim // 4, dtype=torch.float64) * 4 / head_dim)
  rows, cols = torch.div(torch.arange(grid * grid), grid, rounding_mode='floor'), \
      torch.arange(grid * grid) % grid
  angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)  # [T, head_dim/2]
  angles = angles.repeat_interleave(2, dim=1)
  angles = torch.cat([torch.zeros(prefix, head_dim, dtype=angles.dtype), angles])
  return angles.cos().float(), angles.sin().float()


def rotate_pairs(x):
  first, second = x[..., 0::2], x[..., 1::2]
  return torch.stack([-second, first], dim=-1).flatten(-2)


class Attention(nn.Module):

  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(dim, 3 * dim)
    self.q_norm = RMSNorm(dim // heads)
    self.k_norm = RMSNorm(dim // heads)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, rope):
    batch, tokens, dim = x.shape
    q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
    cos, sin = rope
    q, k = self.q_norm(q), self.k_norm(k)
    q, k = q * cos + rotate_pairs(q) * sin, k * cos + rotate_pairs(k) * sin
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class SwiGLU(nn.Module):

  def __init__(self, dim):
    super().__init__()
    inner = int(int(dim * 4.0) * 2 / 3)
    self.w12 = nn.Linear(dim, 2 * inner)
    self.w3 = nn.Linear(inner, dim)

  def forward(self, x):
    gate, value = self.w12(x).chunk(2, dim=-1)
    return self.w3(nn.functional.silu(gate) * value)


def modulate(x, shift, scale):
  return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):

  def __init__(self, dim, heads):
    super().__init__()
    self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
    self.attn = Attention(dim, heads)
    self.mlp = SwiGLU(dim)
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

  def forward(self, x, c, rope):
    shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
    x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), rope)
    return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class TimeEmbedder(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.mlp = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))

  def forward(self, t):
    freqs = torch.exp(-math.log(10000.0) * torch.arange(128, dtype=torch.float32) / 128)
    angle = t[:, None].float() * freqs[None]
    return self.mlp(torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1))


class LabelEmbedder(nn.Module):

  def __init__(self, classes, dim):
    super().__init__()
    self.embedding_table = nn.Embedding(classes + 1, dim)  # Row `classes`: the null label.


class PatchEmbed(nn.Module):
  """Bottleneck patch embedding; ``dct=True``: Spectral Forcing's low-pass + Linear patchify."""

  def __init__(self, channels, patch, bottleneck, dim, dct):
    super().__init__()
    self.patch, self.dct = patch, dct
    self.proj1 = (nn.Linear(channels * patch * patch, bottleneck, bias=False) if dct else
                  nn.Conv2d(channels, bottleneck, patch, stride=patch, bias=False))
    self.proj2 = nn.Conv2d(bottleneck, dim, 1)

  def forward(self, x, t):
    if not self.dct:
      return self.proj2(self.proj1(x)).flatten(2).transpose(1, 2)
    x = dct_lowpass(x, t)
    batch, channels, height, width = x.shape
    p = self.patch
    patches = x.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
    tokens = self.proj1(patches.reshape(batch, -1, channels * p * p))
    grid = tokens.transpose(1, 2).reshape(batch, -1, height // p, width // p)
    return self.proj2(grid).flatten(2).transpose(1, 2)


def dct_lowpass(x, t):
  """Spectral Forcing's released filter: orthonormal 2-D DCT of the whole image, mask
  ``sigmoid(30 (0.05 + 0.95 t - r))`` with ``r = |(u, v)| / (sqrt(2) (n - 1))``, inverse DCT."""
  n = x.shape[-1]
  k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)
  basis = torch.cos(math.pi / n * (i + 0.5) * k)
  basis[0] *= math.sqrt(1.0 / n)
  basis[1:] *= math.sqrt(2.0 / n)
  basis = basis.float()
  coefficients = basis @ x @ basis.T
  radius = torch.sqrt(k ** 2 + i ** 2).float() / (math.sqrt(2.0) * (n - 1))
  cutoff = 0.05 + 0.95 * t.clamp(0, 1)
  mask = torch.sigmoid(30.0 * (cutoff[:, None, None, None] - radius))
  return basis.T @ (coefficients * mask) @ basis


class FinalLayer(nn.Module):

  def __init__(self, dim, patch, channels):
    super().__init__()
    self.norm_final = RMSNorm(dim)
    self.linear = nn.Linear(dim, patch * patch * channels)
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

  def forward(self, x, c):
    shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
    return self.linear(modulate(self.norm_final(x), shift, scale))


class TorchJiT(nn.Module):

  def __init__(self, classes=CLASSES, dct=False, channels=3, out_channels=None):
    super().__init__()
    self.classes, self.channels = classes, channels
    self.out_channels = out_channels or channels
    self.grid = IMAGE // PATCH
    self.t_embedder = TimeEmbedder(HIDDEN)
    self.y_embedder = LabelEmbedder(classes, HIDDEN)
    self.x_embedder = PatchEmbed(channels, PATCH, BOTTLENECK, HIDDEN, dct)
    self.pos_embed = nn.Parameter(torch.from_numpy(sincos_table(self.grid, HIDDEN))[None],
                                  requires_grad=False)
    self.in_context_posemb = nn.Parameter(torch.zeros(1, CONTEXT, HIDDEN))
    self.blocks = nn.ModuleList([Block(HIDDEN, HEADS) for _ in range(DEPTH)])
    self.final_layer = FinalLayer(HIDDEN, PATCH, self.out_channels)
    generator = torch.Generator().manual_seed(0)
    for name, param in self.named_parameters():  # Non-zero everywhere, O(1) activations.
      if name == 'pos_embed':
        continue
      noise = torch.randn(param.shape, generator=generator)
      if 'norm' in name:
        param.data = 1.0 + 0.2 * noise
      elif name.endswith('bias'):
        param.data = 0.1 * noise
      elif param.ndim >= 2 and 'embedding_table' not in name and 'posemb' not in name:
        param.data = noise / math.sqrt(param[0].numel())
      else:
        param.data = 0.5 * noise

  def forward(self, x, t, y):
    y_emb = self.y_embedder.embedding_table(y)
    c = self.t_embedder(t) + y_emb
    x = self.x_embedder(x, t) + self.pos_embed
    head_dim = HIDDEN // HEADS
    for index, block in enumerate(self.blocks):
      if index == START:
        x = torch.cat([y_emb[:, None] + self.in_context_posemb, x], dim=1)
      prefix = CONTEXT if index >= START else 0
      x = block(x, c, rope_tables(self.grid, head_dim, prefix))
    x = self.final_layer(x[:, CONTEXT:], c)
    batch, p = x.shape[0], PATCH
    x = x.reshape(batch, self.grid, self.grid, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(batch, self.out_channels, self.grid * p, self.grid * p)


class Denoiser(nn.Module):
  """The training wrapper: the network is its ``net``."""

  def __init__(self, **kwargs):
    super().__init__()
    self.net = TorchJiT(**kwargs)


def perturbed(state_dict):
  return {k: (v if k.endswith('pos_embed') else v + 0.05 * torch.randn_like(v))
          for k, v in state_dict.items()}


def save_training_checkpoint(path, denoiser, **args):
  """``{'model', 'model_ema1', 'model_ema2', 'optimizer', 'epoch', 'args'}`` as JiT saves it;
  the network's own weights are the first EMA, the others differ."""
  ema1 = copy.deepcopy(denoiser.state_dict())
  torch.save({'model': perturbed(ema1), 'model_ema1': ema1, 'model_ema2': perturbed(ema1),
              'optimizer': {'state': {0: {'step': torch.tensor(7.0)}},
                            'param_groups': [{'lr': 1e-4, 'params': [0]}]},
              'epoch': 7, 'args': argparse.Namespace(img_size=IMAGE, class_num=CLASSES,
                                                     ema_decay1=0.9999, **args)}, path)


def relative_error(ours, reference) -> float:
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def load_converted(path):
  obj = convert_lib.read_jit_checkpoint(str(path))
  state = convert_lib.select_jit_state_dict(obj, str(path))
  kwargs = convert_lib.jit_model_kwargs(state, args=convert_lib.jit_checkpoint_args(obj))
  params = convert_lib.convert_jit(state, kwargs)
  model = nnx.eval_shape(lambda: build_jit(rngs=nnx.Rngs(0), **kwargs))
  return nnx.merge(nnx.graphdef(model), params), kwargs, state


def inputs(batch=3, seed=1, channels=3):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, channels, IMAGE, IMAGE)).astype(np.float32)
  labels = rng.integers(0, CLASSES, batch).astype(np.int64)
  return x, labels


# ---------------------------------------------------------------------------------------------
# Agreement.


@pytest.mark.parametrize('dct', [False, True], ids=['jit', 'spectral_forcing'])
def test_converted_model_matches_the_torch_network(tmp_path, dct):
  denoiser = Denoiser(dct=dct).eval()
  path = tmp_path / 'checkpoint-last.pth'
  save_training_checkpoint(path, denoiser)
  model, kwargs, state = load_converted(path)
  assert 'model_ema1' in state.source and 'net.' in state.source
  assert kwargs == dict(size='tiny', patch_size=PATCH, in_channels=3, image_size=IMAGE,
                        num_classes=CLASSES, in_context_len=CONTEXT,
                        spectral_forcing=(dict(schedule='linear', kappa=30.0, c_min=0.05,
                                               c_max=1.0, window=None) if dct else None))
  forward = jax.jit(lambda x, t, y: model(x, t, y))
  x, labels = inputs()
  x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
  null = np.full_like(labels, CLASSES)
  for t_jit in (0.3, 0.85):
    t = np.full((x.shape[0],), t_jit, np.float32)
    for y in (labels, null):
      with torch.no_grad():
        reference = denoiser.net(torch.from_numpy(x), torch.from_numpy(t),
                                 torch.from_numpy(y)).numpy().transpose(0, 2, 3, 1)
      # The library's t is 0 at data: t_library = 1 - t_jit.
      ours = np.asarray(forward(x_nhwc, jnp.asarray(1.0 - t), jnp.asarray(y, jnp.int32)))
      assert relative_error(ours, reference) < TOLERANCE, (t_jit, y)
      if y is null:  # y=None is the null label.
        ours_none = np.asarray(jax.jit(lambda x, t: model(x, t, None))(x_nhwc,
                                                                        jnp.asarray(1.0 - t)))
        assert relative_error(ours_none, reference) < TOLERANCE
    # Without the time mapping the outputs differ: the convention matters.
    unmapped = np.asarray(forward(x_nhwc, jnp.asarray(t), jnp.asarray(labels, jnp.int32)))
    with torch.no_grad():
      reference = denoiser.net(torch.from_numpy(x), torch.from_numpy(t),
                               torch.from_numpy(labels)).numpy().transpose(0, 2, 3, 1)
    assert relative_error(unmapped, reference) > 1e-2


def test_unconditional_null_row_is_folded_exactly():
  """JiT with 0 classes keeps a one-row label table; the library's unconditional JiT has none."""
  net = TorchJiT(classes=0).eval()
  state = StateDict({k: v for k, v in net.state_dict().items()}, 'uncond')
  kwargs = convert_lib.jit_model_kwargs(state)
  assert kwargs['num_classes'] == 0
  params = convert_lib.convert_jit(state, kwargs)
  model = nnx.merge(nnx.graphdef(nnx.eval_shape(lambda: build_jit(rngs=nnx.Rngs(0), **kwargs))),
                    params)
  x, _ = inputs(batch=2, seed=2)
  t = np.array([0.2, 0.7], np.float32)
  with torch.no_grad():
    reference = net(torch.from_numpy(x), torch.from_numpy(t),
                    torch.zeros(2, dtype=torch.int64)).numpy().transpose(0, 2, 3, 1)
  ours = np.asarray(jax.jit(lambda x, t: model(x, t, None))(jnp.asarray(x.transpose(0, 2, 3, 1)),
                                                            jnp.asarray(1.0 - t)))
  assert relative_error(ours, reference) < TOLERANCE


# ---------------------------------------------------------------------------------------------
# Checkpoint selection, inference and names.


def network_state(**kwargs) -> dict:
  return {k: v.clone() for k, v in TorchJiT(**kwargs).state_dict().items()}


def test_selection_prefers_ema1_and_strips_prefixes():
  weights = {f'module.net.{k}': v for k, v in network_state().items()}
  checkpoint = {'model': perturbed(weights), 'model_ema1': weights,
                'model_ema2': perturbed(weights), 'epoch': 1}
  assert convert_lib.EMA_KEYS[0] == 'model_ema1'
  state = convert_lib.select_jit_state_dict(checkpoint, 'ckpt.pth')
  assert 'model_ema1' in state.source and 'module.net.' in state.source
  assert 'blocks.0.attn.qkv.weight' in state
  np.testing.assert_array_equal(state.arrays['final_layer.linear.bias'],
                                weights['module.net.final_layer.linear.bias'].numpy())
  raw = convert_lib.select_jit_state_dict(checkpoint, 'ckpt.pth', which='model')
  assert not np.array_equal(raw.arrays['final_layer.linear.bias'],
                            state.arrays['final_layer.linear.bias'])
  bare = convert_lib.select_jit_state_dict(network_state(), 'bare.pth')
  assert bare.source == 'bare.pth' and 'pos_embed' in bare
  with pytest.raises(ConversionError, match=r'no state dict.*epoch'):
    convert_lib.select_jit_state_dict({'epoch': 3, 'args': None}, 'x.pth')
  with pytest.raises(ConversionError, match='no state dict'):
    convert_lib.select_jit_state_dict(checkpoint, 'x.pth', which='ema')


def test_inferred_settings():
  settings = convert_lib.infer_jit_settings(StateDict(network_state()))
  assert settings == dict(patch_size=PATCH, in_channels=3, hidden=HIDDEN, depth=DEPTH,
                          heads=HEADS, bottleneck=BOTTLENECK, num_classes=CLASSES,
                          in_context_len=CONTEXT, image_size=IMAGE, dct_patchify=False,
                          size='tiny')


@pytest.mark.parametrize('name, expected', [('JiT-B/16', ('B', 16)), ('JiT-L/32', ('L', 32)),
                                            ('JiT-H/16', ('H', 16)), ('JiT-B/8', ('B', 8))])
def test_model_names(name, expected):
  assert convert_lib.parse_jit_model_name(name) == expected


@pytest.mark.parametrize('name', ['JiT-7B', 'JiT-700M', 'DiT-XL/2', 'JiT-B', 'jit-b/16'])
def test_unknown_model_name_raises(name):
  with pytest.raises(ConversionError, match='unknown JiT model name'):
    convert_lib.parse_jit_model_name(name)
  with pytest.raises(ConversionError, match='unknown JiT model name'):
    convert_lib.jit_model_kwargs(StateDict(network_state()), name)


def test_model_name_disagreeing_with_the_weights_raises():
  state = StateDict(network_state(), 'ckpt.pth [model_ema1 (EMA)]')
  with pytest.raises(ConversionError, match=r"'JiT-B/4' has depth 12, the state dict depth 4"):
    convert_lib.jit_model_kwargs(state, 'JiT-B/4')
  with pytest.raises(ConversionError, match=r"'JiT-B/16' has depth 12"):
    convert_lib.jit_model_kwargs(state, args={'model': 'JiT-B/16'})
  with pytest.raises(ConversionError, match='class_num 1000 given, the state dict has '
                                            'num_classes 10'):
    convert_lib.jit_model_kwargs(state, args={'class_num': 1000})


def test_spectral_forcing_arguments():
  state = StateDict(network_state(dct=True))
  fixed = convert_lib.jit_model_kwargs(state, args={'disable_dct_scale_schedule': True,
                                                    'dct_fixed_scale': 0.5, 'window_size': 16})
  assert fixed['spectral_forcing'] == dict(schedule='linear', kappa=30.0, c_min=0.525,
                                           c_max=0.525, window=16)
  whole = convert_lib.jit_model_kwargs(state, args={'window_size': IMAGE})
  assert whole['spectral_forcing']['window'] is None
  kwargs = dict(whole, spectral_forcing=None)
  with pytest.raises(ConversionError, match='Spectral Forcing model.*spectral_forcing=None'):
    convert_lib.convert_jit(state, kwargs)
  plain = StateDict(network_state())
  with pytest.raises(ConversionError, match='plain JiT'):
    convert_lib.convert_jit(plain, dict(convert_lib.jit_model_kwargs(plain),
                                        spectral_forcing=whole['spectral_forcing']))


# ---------------------------------------------------------------------------------------------
# Errors of the conversion.


def tiny_kwargs() -> dict:
  return convert_lib.jit_model_kwargs(StateDict(network_state()))


def test_missing_key_raises():
  weights = network_state()
  del weights['blocks.2.mlp.w3.bias']
  with pytest.raises(ConversionError, match=r"ckpt: missing key 'blocks\.2\.mlp\.w3\.bias'"):
    convert_lib.convert_jit(StateDict(weights, 'ckpt'), tiny_kwargs())


def test_wrongly_shaped_key_raises_naming_both_shapes():
  weights = network_state()
  weights['blocks.1.attn.proj.weight'] = torch.zeros(HIDDEN, HIDDEN + 1)
  with pytest.raises(ConversionError, match=r"'blocks\.1\.attn\.proj\.weight' has shape "
                                            r'\(128, 129\), the model needs \(128, 128\)'):
    convert_lib.convert_jit(StateDict(weights, 'ckpt'), tiny_kwargs())


def test_unexpected_key_raises():
  weights = network_state()
  weights['blocks.0.attn.extra_scale'] = torch.ones(3)
  weights['feat_rope.freqs_cos'] = torch.ones(4, 8)  # A recomputed buffer: skipped, not refused.
  with pytest.raises(ConversionError, match=r'1 unexpected key.*blocks\.0\.attn\.extra_scale'):
    convert_lib.convert_jit(StateDict(weights, 'ckpt'), tiny_kwargs())


def test_settings_disagreeing_with_the_weights_raise():
  weights = network_state()
  kwargs = dict(tiny_kwargs(), image_size=2 * IMAGE)  # pos_embed has 64 tokens, not 256.
  with pytest.raises(ConversionError, match=r"'pos_embed' has shape \(1, 64, 128\), the model "
                                            r'needs \(1, 256, 128\)'):
    convert_lib.convert_jit(StateDict(weights), kwargs)
  kwargs = dict(tiny_kwargs(), size='small')
  with pytest.raises(ConversionError, match='has shape'):
    convert_lib.convert_jit(StateDict(weights), kwargs)


def test_learned_position_table_raises():
  weights = network_state()
  weights['pos_embed'] = weights['pos_embed'] + 0.1
  with pytest.raises(ConversionError, match='sin-cos'):
    convert_lib.convert_jit(StateDict(weights), tiny_kwargs())


def test_hybrid_output_head_raises():
  with pytest.raises(ConversionError, match='hybrid'):
    convert_lib.infer_jit_settings(StateDict(network_state(out_channels=6)))
