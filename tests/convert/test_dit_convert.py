"""DiT conversion (facebookresearch layout and diffusers' DiTTransformer2DModel) against torch
references, DiT's sampling (learned-variance ancestral DDPM, respacing, guidance on 3 channels)
against the improved-DDPM formulas, and the conversion's errors."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import nnx  # pylint: disable=g-import-not-at-top,wrong-import-position

import phipd_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_dit  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.convert import dit as dit_convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.convert import runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.convert.reading import ConversionError, StateDict  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.diffusion import processes, samplers  # pylint: disable=g-import-not-at-top,wrong-import-position


def relative_error(out, ref):
  return float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))


def torch_nhwc(module, x, t, y):
  with torch.no_grad():
    out = module(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(y))
  return out.numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope='module')
def dit_s8(tmp_path_factory):
  """A random facebookresearch-layout DiT-S/8 (pixels, 32x32, 10 classes, learned sigma),
  saved as a training checkpoint and converted with the documented function."""
  torch.manual_seed(0)
  module = torch_dit.DiT(input_size=32, patch_size=8, in_channels=3, hidden_size=384, depth=12,
                         num_heads=6, num_classes=10, learn_sigma=True).eval()
  torch_dit.randomize_(module)
  folder = tmp_path_factory.mktemp('dit')
  path = str(folder / 'checkpoint.pt')
  raw = {k: v + 1.0 for k, v in module.state_dict().items()}  # 'model' differs from 'ema'.
  torch.save({'model': raw, 'ema': module.state_dict(), 'opt': {}, 'args': None}, path)
  workdir = str(folder / 'run')
  note = runs.convert('dit', path, workdir, model_name='DiT-S/8')
  return module, path, workdir, note


def test_facebookresearch_dit_s8_equals_the_reference_through_load(dit_s8):
  module, _, workdir, note = dit_s8
  assert note['model']['size'] == 'S' and note['model']['learn_sigma']
  assert note['checkpoint'].endswith('[ema]')  # EMA weights preferred over 'model'.
  run = phipd_jax.load(workdir)
  rng = np.random.RandomState(0)
  x = rng.randn(3, 32, 32, 3).astype(np.float32)
  steps = np.array([0, 417, 999])
  labels = np.array([3, 9, 10])  # 10 = the null class.
  reference = torch_nhwc(module, x, steps, labels)
  out = run.apply(x, steps / 1000.0, labels)
  assert out.shape == (3, 32, 32, 6)
  assert relative_error(out, reference) < 1e-4


def test_converted_run_samples_with_dits_own_settings(dit_s8):
  _, _, workdir, _ = dit_s8
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['diffusion']['process'] == 'ddpm'
  assert config['diffusion']['ddpm']['schedule'] == 'linear'
  assert (config['sample']['sampler'], config['sample']['num_steps']) == ('ddpm', 250)
  assert not os.path.exists(workdir + '.tmp')
  items = set(os.listdir(os.path.join(workdir, 'checkpoints', '0')))
  assert {'ema_params', 'meta', 'params'} <= items and 'opt_state' not in items


def test_dit_respacing_is_the_linspace_grid():
  process = processes.DDPM(schedule='linear', num_steps=1000)
  for count in (25, 50, 100, 250, 1000):
    grid = np.asarray(process.time_grid(count))
    assert grid[-1] == -1
    assert sorted(grid[:-1].tolist()) == torch_dit.respaced_steps(1000, count)


def test_linear_schedule_is_dits():
  process = processes.DDPM(schedule='linear', num_steps=1000)
  reference = np.cumprod(1.0 - torch_dit.linear_betas(1000))
  assert relative_error(process.alpha_bar, reference) < 1e-5


@pytest.mark.parametrize('position', [0, 1, 120, 248])
def test_learned_variance_ancestral_step_equals_improved_ddpm(position):
  """One ancestral step on the 250-step respaced chain: ours (steps k -> k_next of the original
  1000) against ``p_sample`` on the respaced betas at chain index ``i``."""
  process = processes.DDPM(schedule='linear', num_steps=1000)
  grid = np.asarray(process.time_grid(250))  # Decreasing: 999 ... 0, -1.
  kept = torch_dit.respaced_steps(1000, 250)
  betas = torch_dit.respaced_betas(torch_dit.linear_betas(1000), kept)
  k, k_next = int(grid[position]), int(grid[position + 1])
  index = kept.index(k)
  rng = np.random.RandomState(position)
  x = rng.randn(2, 4, 8, 8)
  model_out = np.concatenate([rng.randn(2, 4, 8, 8), rng.uniform(-1, 1, (2, 4, 8, 8))], 1)
  noise = rng.randn(2, 4, 8, 8)
  reference = torch_dit.p_sample_reference(betas, index, x, model_out, noise)
  nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1), jnp.float32)
  x0_hat, _ = process.to_x0_eps(nhwc(model_out[:, :4]), nhwc(x), k, 'eps')
  mean, log_variance = samplers.ddpm_posterior(process, nhwc(x), x0_hat, nhwc(model_out[:, 4:]),
                                               jnp.int32(k), jnp.int32(k_next))
  ours = mean + (k_next >= 0) * jnp.exp(0.5 * log_variance) * nhwc(noise)
  assert relative_error(ours, reference.transpose(0, 2, 3, 1)) < 1e-4


def test_guidance_on_three_channels_is_dits_forward_with_cfg():
  """A 4-channel DiT: the variance denoiser's guided eps / v against ``forward_with_cfg``."""
  torch.manual_seed(1)
  module = torch_dit.DiT(input_size=16, patch_size=4, in_channels=4, hidden_size=64, depth=2,
                         num_heads=4, num_classes=5, learn_sigma=True).eval()
  torch_dit.randomize_(module, seed=1)
  state = StateDict({k: v.numpy() for k, v in module.state_dict().items()})
  inferred = dit_convert.infer_dit(state)
  model = dit_convert.model_settings(inferred, heads=4)
  assert model['size'] == 'custom' and inferred['grid'] == 4
  params = dit_convert.convert_dit(state, model, 4, 16)
  kwargs = dict(model)
  network = nnx.eval_shape(lambda: models.build(kwargs.pop('name'), rngs=nnx.Rngs(0),
                                                in_channels=4, image_size=16, **kwargs))
  apply_fn = models.apply_model(nnx.graphdef(network), params)
  process = processes.DDPM(schedule='linear', num_steps=1000)
  rng = np.random.RandomState(2)
  x = rng.randn(2, 16, 16, 4).astype(np.float32)
  labels = np.array([1, 4])
  denoise = samplers.variance_denoiser(process, apply_fn, 'eps', jnp.asarray(labels), 3.0,
                                       null_label=5, guidance_channels=3)
  k = 600
  x0_hat, eps_hat, v = denoise(jnp.asarray(x), jnp.int32(k))
  doubled = np.concatenate([x, x]).transpose(0, 3, 1, 2)
  with torch.no_grad():
    guided = module.forward_with_cfg(torch.from_numpy(doubled), torch.full((4,), k),
                                     torch.tensor([1, 4, 5, 5]), 3.0).numpy()[:2]
  guided = guided.transpose(0, 2, 3, 1)
  assert relative_error(eps_hat, guided[..., :4]) < 1e-4
  assert relative_error(v, guided[..., 4:]) < 1e-4


def test_diffusers_dit_folder_equals_diffusers(tmp_path):
  diffusers = pytest.importorskip('diffusers')
  torch.manual_seed(2)
  module = diffusers.DiTTransformer2DModel(
      num_attention_heads=2, attention_head_dim=32, in_channels=3, out_channels=6, num_layers=2,
      sample_size=16, patch_size=4, num_embeds_ada_norm=7).eval()
  torch_dit.randomize_(module, seed=2)
  with torch.no_grad():  # One embedder for every block, as in every converted DiT checkpoint.
    source = module.transformer_blocks[0].norm1.emb
    for block in module.transformer_blocks[1:]:
      block.norm1.emb.load_state_dict(source.state_dict())
  module.save_pretrained(tmp_path / 'transformer')
  note = runs.convert('diffusers_dit', str(tmp_path), str(tmp_path / 'run'))
  assert note['model']['time_frequency_shift'] == 1
  run = phipd_jax.load(str(tmp_path / 'run'))
  rng = np.random.RandomState(3)
  x = rng.randn(2, 16, 16, 3).astype(np.float32)
  steps, labels = np.array([3, 801]), np.array([2, 7])
  with torch.no_grad():
    reference = module(torch.from_numpy(x).permute(0, 3, 1, 2), timestep=torch.from_numpy(steps),
                       class_labels=torch.from_numpy(labels)).sample.numpy().transpose(0, 2, 3, 1)
  assert relative_error(run.apply(x, steps / 1000.0, labels), reference) < 1e-4
  # Per-block embedders that differ cannot be one embedder: refused, nothing written.
  with torch.no_grad():
    module.transformer_blocks[1].norm1.emb.timestep_embedder.linear_1.bias.add_(1.0)
  module.save_pretrained(tmp_path / 'other' / 'transformer')
  with pytest.raises(ConversionError, match='differs from block 0'):
    runs.convert('diffusers_dit', str(tmp_path / 'other'), str(tmp_path / 'run2'))
  assert not os.path.exists(tmp_path / 'run2')


def _save(tmp_path, state_dict, name='bad.pt'):
  path = str(tmp_path / name)
  torch.save(state_dict, path)
  return path


@pytest.mark.parametrize('change, message', [
    ('drop', r"missing key 'blocks\.1\.attn\.proj\.weight'"),
    ('shape', r"key 'blocks\.1\.attn\.proj\.weight' has shape \(384, 383\), the model needs "
              r'\(384, 384\)'),
    ('extra', r'unexpected key.*decoder\.extra \(3,\)'),
])
def test_bad_state_dicts_are_refused_naming_the_key(tmp_path, change, message):
  module = torch_dit.DiT(input_size=16, patch_size=8, in_channels=3, hidden_size=384, depth=12,
                         num_heads=6, num_classes=5, learn_sigma=False)
  state = dict(module.state_dict())
  if change == 'drop':
    del state['blocks.1.attn.proj.weight']
  elif change == 'shape':
    state['blocks.1.attn.proj.weight'] = torch.zeros(384, 383)
  else:
    state['decoder.extra'] = torch.zeros(3)
  path = _save(tmp_path, state)
  with pytest.raises(ConversionError, match=message):
    runs.convert('dit', path, str(tmp_path / 'run'), model_name='DiT-S/8')
  assert not os.path.exists(tmp_path / 'run') and not os.path.exists(tmp_path / 'run.tmp')


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, dit_s8):
  _, path, workdir, _ = dit_s8
  garbage = tmp_path / 'garbage.pt'
  garbage.write_bytes(b'not a checkpoint')
  cases = [
      (dict(source='dit', checkpoint_path=str(garbage)), 'not a readable PyTorch checkpoint'),
      (dict(source='dit', checkpoint_path=str(tmp_path / 'none.pt')), 'no such checkpoint'),
      (dict(source='dit', checkpoint_path=str(tmp_path / 'x.npy')), 'unknown checkpoint suffix'),
      (dict(source='dit', checkpoint_path=path, model_name='DiT-B/8'),
       'has hidden size 768, the checkpoint 384'),
      (dict(source='dit', checkpoint_path=path, model_name='DiT-S/4'),
       'has patch size 4, the checkpoint 8'),
      (dict(source='dit', checkpoint_path=path, model_name='DiT-M/8'), 'expected DiT-S/2'),
      (dict(source='dit', checkpoint_path=path), 'heads are not in a DiT state dict'),
      (dict(source='dit', checkpoint_path=path, model_name='DiT-S/8', codec=str(tmp_path)),
       'not a run directory'),
      (dict(source='vqgan', checkpoint_path=path), 'must be one of'),
      (dict(source='diffusers_dit', checkpoint_path=str(tmp_path)), 'no config.json'),
  ]
  (tmp_path / 'x.npy').write_bytes(b'')
  for kwargs, message in cases:
    with pytest.raises(ConversionError, match=message):
      runs.convert(workdir=str(tmp_path / 'run'), **kwargs)
    assert not os.path.exists(tmp_path / 'run')
  before = sorted(os.listdir(workdir))
  with pytest.raises(ConversionError, match='exists and is not empty'):
    runs.convert('dit', path, workdir, model_name='DiT-S/8')
  assert sorted(os.listdir(workdir)) == before


def test_training_in_a_converted_workdir_is_refused(dit_s8):
  """A converted run has no optimizer state: resuming it would fail; fine-tuning goes to a new
  workdir with init_from."""
  from phipd_jax import checkpoint  # pylint: disable=g-import-not-at-top
  _, _, workdir, _ = dit_s8
  assert not checkpoint.latest_has_optimizer_state(workdir)


def test_every_sampler_and_translation_runs_on_a_converted_dit(dit_s8):
  """DiT's own ancestral sampler is seeded and stochastic per seed; DDIM, inversion and OVG (the
  DDIM branch) run on the same converted model."""
  _, _, workdir, _ = dit_s8
  run = phipd_jax.load(workdir)
  first = run.sample(2, labels=[1, 2], seed=3, num_steps=6)
  assert np.array_equal(first, run.sample(2, labels=[1, 2], seed=3, num_steps=6))
  assert not np.allclose(first, run.sample(2, labels=[1, 2], seed=4, num_steps=6))
  ddim = run.sample(2, labels=[1, 2], seed=3, num_steps=6, method='ddim')
  assert ddim.shape == first.shape and np.isfinite(ddim).all()
  images = np.random.RandomState(5).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  for method, setting in (('phipd', dict(radius=4.0, target=1, guidance_scale=2.0)),
                          ('sdedit', dict(strength=0.5)),
                          ('invert', dict(source=0, target=1)),
                          ('ovg', dict(source=0, target=1))):
    out = run.translate(images, method, num_steps=5, seed=1, **setting)
    assert out.shape == images.shape and np.isfinite(out).all(), method
  assert run.invert(images, source=0, num_steps=5).shape == (2, 32, 32, 3)
