"""Issue acceptance, end to end: a random-initialised facebookresearch DiT-S/8 (32x32 latents, 10
classes, learned sigma) and a small random diffusers AutoencoderKL, converted with the documented
``convert.py`` commands, equal their references through ``phipd_jax.load``; ``sample.py``
generates and translates with them and ``train.py`` fine-tunes the converted DiT with FSS noise
(``configs/finetune_dit_phipd.py:runlocal``); a JiT checkpoint converts to a run that loads."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip('torch')
diffusers = pytest.importorskip('diffusers')

import helpers  # pylint: disable=g-import-not-at-top,wrong-import-position
import phipd_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch_dit  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCALE = 0.18215


def _run(script, *args):
  result = subprocess.run([sys.executable, script, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def relative_error(out, ref):
  return float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))


def _random_vae():
  """A small AutoencoderKL (f = 2, 4 latent channels), every weight perturbed from its init."""
  return helpers.random_diffusers_vae(5, block_out_channels=(32, 64), layers_per_block=1,
                                      norm_num_groups=8, latent_channels=4,
                                      scaling_factor=SCALE)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  folder = tmp_path_factory.mktemp('pretrained')
  vae = _random_vae()
  vae.save_pretrained(folder / 'sd-vae')
  torch.manual_seed(0)
  dit = torch_dit.DiT(input_size=32, patch_size=8, in_channels=4, hidden_size=384, depth=12,
                      num_heads=6, num_classes=10, learn_sigma=True).eval()
  torch_dit.randomize_(dit)
  torch.save(dit.state_dict(), folder / 'DiT-S-8.pt')  # A bare state dict, as released.
  vae_run, dit_run = str(folder / 'vae_run'), str(folder / 'dit_run')
  _run('convert.py', '--from', 'diffusers_vae', '--checkpoint', str(folder / 'sd-vae'),
       '--workdir', vae_run)
  printed = _run('convert.py', '--from', 'dit', '--checkpoint', str(folder / 'DiT-S-8.pt'),
                 '--model', 'DiT-S/8', '--codec', vae_run, '--workdir', dit_run).stdout
  assert 'M parameters' in printed
  return folder, vae, dit, vae_run, dit_run


def test_converted_pair_equals_the_references_through_load(converted):
  _, vae, dit, vae_run, dit_run = converted
  run = phipd_jax.load(dit_run)
  assert run.image_shape == (64, 64, 3) and run.model_shape == (32, 32, 4)
  assert json.load(open(os.path.join(vae_run, 'config.json')))['codec']['scale'] == SCALE
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    posterior = vae.encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist
    mean = posterior.mean.numpy().transpose(0, 2, 3, 1)
  assert relative_error(run.encode(images), mean * SCALE) < 1e-4
  z = rng.randn(2, 32, 32, 4).astype(np.float32)
  with torch.no_grad():
    decoded = vae.decode(torch.from_numpy(z / SCALE).permute(0, 3, 1, 2)).sample.numpy()
  assert relative_error(run.decode(z), decoded.transpose(0, 2, 3, 1)) < 1e-4
  steps, labels = np.array([5, 999]), np.array([0, 10])
  with torch.no_grad():
    reference = dit(torch.from_numpy(z).permute(0, 3, 1, 2), torch.from_numpy(steps),
                    torch.from_numpy(labels)).numpy().transpose(0, 2, 3, 1)
  assert relative_error(run.apply(z, steps / 1000.0, labels), reference) < 1e-4


def test_sample_translate_and_fine_tune_a_converted_dit(converted, shared_data):
  folder, _, _, _, dit_run = converted
  out = folder / 'generate'
  _run('sample.py', '--workdir', dit_run, '--mode', 'generate', '--num', '2', '--steps', '20',
       '--output', str(out))
  samples = np.load(out / 'samples.npz')
  images = samples[samples.files[0]]
  assert images.shape[1:] == (64, 64, 3) and np.isfinite(images.astype(np.float32)).all()
  photos = folder / 'photos'
  photos.mkdir()
  bsds = os.path.join(shared_data, 'bsds500', 'images', 'test')
  photo = Image.open(os.path.join(bsds, sorted(os.listdir(bsds))[0]))
  photo.convert('RGB').resize((64, 64)).save(photos / 'one.png')
  translated = folder / 'translated'
  _run('sample.py', '--workdir', dit_run, '--mode', 'translate', '--input', str(photos),
       '--method', 'phipd', '--radius', '4', '--steps', '10', '--target_class', '3',
       '--output', str(translated))
  assert os.path.exists(translated / 'one.png')
  finetuned = str(folder / 'finetuned')
  _run('train.py', '--config', f'configs/finetune_dit_phipd.py:runlocal,base={dit_run}',
       '--workdir', finetuned)
  config = json.load(open(os.path.join(finetuned, 'config.json')))
  assert config['init_from'] == dit_run and config['noise']['kind'] == 'fss'
  assert os.path.isdir(os.path.join(finetuned, 'checkpoints', '10'))
  assert os.path.isdir(os.path.join(finetuned, 'codec'))
  # The converted workdir itself is not a training workdir (no optimizer state): a clear error.
  result = subprocess.run([sys.executable, 'train.py', '--config',
                           f'configs/finetune_dit_phipd.py:runlocal,base={dit_run}',
                           '--workdir', dit_run], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 1 and 'converted pretrained model' in result.stderr


def test_a_spectral_forcing_checkpoint_converts_to_a_run_that_loads(tmp_path):
  """A Spectral Forcing training checkpoint (the torch JiT of tests/convert/test_jit_convert.py)
  through ``convert.py --from jit``: JiT's recipe, Spectral Forcing on, the forward equal to the
  torch network's at the library's time ``t = 1 - t_jit``."""
  sys.path.insert(0, os.path.join(REPO_ROOT, 'tests', 'convert'))
  import test_jit_convert as reference  # pylint: disable=g-import-not-at-top
  denoiser = reference.Denoiser(dct=True).eval()
  path = str(tmp_path / 'checkpoint-last.pth')
  reference.save_training_checkpoint(path, denoiser)
  workdir = str(tmp_path / 'run')
  _run('convert.py', '--from', 'jit', '--checkpoint', path, '--workdir', workdir)
  run = phipd_jax.load(workdir)
  assert run.config.model.name == 'jit'
  assert run.config.model.spectral_forcing.schedule == 'linear'
  x, labels = reference.inputs()
  t_jit = np.full((x.shape[0],), 0.3, np.float32)
  with torch.no_grad():
    expected = denoiser.net(torch.from_numpy(x), torch.from_numpy(t_jit),
                            torch.from_numpy(labels)).numpy().transpose(0, 2, 3, 1)
  ours = run.apply(x.transpose(0, 2, 3, 1), 1.0 - t_jit, labels)
  assert relative_error(ours, expected) < 1e-4
  assert run.sample(2, labels=[1, 2], num_steps=3).shape == (2,) + run.image_shape
