r"""Converted pretrained models against their PyTorch references, in one run on one machine.

  python scripts/benchmark_pretrained.py --out docs/benchmarks/pretrained_cpu

Times (medians over --repeats, compile time apart) the forward of a DiT-B/4 (latent 32x32x4,
learned sigma, 1000 classes: the 256-px latent model) and the encode + decode of the SD
AutoencoderKL at 256x256, each as the converted JAX model and as its torch reference (a
facebookresearch-layout torch DiT written in tests/torch_dit.py; diffusers' AutoencoderKL) on the
same random weights, and checks that the outputs agree. With ``--convert_xl`` it also converts a
random DiT-XL/2 state dict (675 M parameters) with ``convert.py`` and reports its wall time and
peak memory against the checkpoint's size. Writes ``<out>.json`` and ``<out>.md``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, 'tests'))
sys.path.insert(0, REPO_ROOT)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import nnx  # pylint: disable=g-import-not-at-top,wrong-import-position

import torch_dit  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax import benchmarking, models  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.convert import dit as dit_convert, vae as vae_convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.convert.reading import StateDict  # pylint: disable=g-import-not-at-top,wrong-import-position
from phipd_jax.models.autoencoder_kl import AutoencoderKL  # pylint: disable=g-import-not-at-top,wrong-import-position


def median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def jax_timing(fn, args, repeats, name):
  """``(median seconds, compile seconds)`` of ``jax.jit(fn)`` (phipd_jax.benchmarking)."""
  timing = benchmarking.time_compiled(fn, args, repeats, name)
  return timing.median_s, timing.compile_s


def bench_dit(batch, repeats):
  torch.manual_seed(0)
  module = torch_dit.DiT(input_size=32, patch_size=4, in_channels=4, hidden_size=768, depth=12,
                         num_heads=12, num_classes=1000, learn_sigma=True).eval()
  torch_dit.randomize_(module, std=0.02)
  state = StateDict({k: v.numpy() for k, v in module.state_dict().items()})
  model = dit_convert.model_settings(dit_convert.infer_dit(state), 'DiT-B/4')
  params = dit_convert.convert_dit(state, model, 4, 32)
  kwargs = dict(model)
  network = nnx.eval_shape(lambda: models.build(kwargs.pop('name'), rngs=nnx.Rngs(0),
                                                in_channels=4, image_size=32, **kwargs))
  forward = lambda p, x, t, y: models.apply_model(nnx.graphdef(network), p)(x, t, y)
  apply_fn = jax.jit(forward)
  rng = np.random.RandomState(0)
  x = rng.randn(batch, 32, 32, 4).astype(np.float32)
  steps = rng.randint(0, 1000, batch)
  labels = rng.randint(0, 1000, batch)
  args = (params, jnp.asarray(x), jnp.asarray(steps / 1000.0, jnp.float32), jnp.asarray(labels))
  jax_s, compile_s = jax_timing(forward, args, repeats, 'DiT-B/4 forward')
  xt, tt, yt = (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(steps),
                torch.from_numpy(labels))
  with torch.no_grad():
    module(xt, tt, yt)
    torch_s = median_time(lambda: module(xt, tt, yt), repeats)
    reference = module(xt, tt, yt).numpy().transpose(0, 2, 3, 1)
  error = float(np.abs(np.asarray(apply_fn(*args)) - reference).max() / np.abs(reference).max())
  return dict(what=f'DiT-B/4 forward, latent 32x32x4, batch {batch}', jax_s=jax_s,
              jax_compile_s=compile_s, torch_s=torch_s, ratio_torch_over_jax=torch_s / jax_s,
              max_relative_error=error)


def bench_vae(repeats, size=256):
  import diffusers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  vae = diffusers.AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                latent_channels=4,
                                down_block_types=('DownEncoderBlock2D',) * 4,
                                up_block_types=('UpDecoderBlock2D',) * 4).eval()
  config = dict(vae.config)
  state = StateDict({k: v.numpy() for k, v in vae.state_dict().items()})
  kwargs = vae_convert.model_kwargs_from_diffusers_config(config)
  params = vae_convert.convert_autoencoder_kl(state, kwargs)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: AutoencoderKL(**kwargs, rngs=nnx.Rngs(0))))

  def roundtrip(p, x):
    model = nnx.merge(graphdef, p)
    return model.decode(model.encode(x)[0])

  fn = jax.jit(roundtrip)
  x = np.random.RandomState(1).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
  jax_s, compile_s = jax_timing(roundtrip, (params, jnp.asarray(x)), repeats, 'VAE roundtrip')
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

  def torch_roundtrip():
    return vae.decode(vae.encode(xt).latent_dist.mean).sample

  with torch.no_grad():
    torch_roundtrip()
    torch_s = median_time(torch_roundtrip, repeats)
    reference = torch_roundtrip().numpy().transpose(0, 2, 3, 1)
  error = float(np.abs(np.asarray(fn(params, jnp.asarray(x))) - reference).max() /
                np.abs(reference).max())
  return dict(what=f'SD AutoencoderKL encode + decode, {size}x{size}, batch 1', jax_s=jax_s,
              jax_compile_s=compile_s, torch_s=torch_s, ratio_torch_over_jax=torch_s / jax_s,
              max_relative_error=error)


def bench_convert_xl():
  """convert.py on a random DiT-XL/2 state dict: wall time and the child's peak RSS."""
  with tempfile.TemporaryDirectory() as folder:
    module = torch_dit.DiT(input_size=32, patch_size=2, in_channels=4, hidden_size=1152,
                           depth=28, num_heads=16, num_classes=1000, learn_sigma=True)
    path = os.path.join(folder, 'DiT-XL-2-256x256.pt')
    torch.save(module.state_dict(), path)
    del module
    import diffusers  # pylint: disable=g-import-not-at-top
    from phipd_jax.convert import runs  # pylint: disable=g-import-not-at-top
    vae = diffusers.AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                  down_block_types=('DownEncoderBlock2D',) * 4,
                                  up_block_types=('UpDecoderBlock2D',) * 4)
    vae.save_pretrained(os.path.join(folder, 'sd-vae'))
    codec = os.path.join(folder, 'vae_run')
    runs.convert('diffusers_vae', os.path.join(folder, 'sd-vae'), codec)
    size = os.path.getsize(path)
    script = _PEAK_SCRIPT
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-c', script, 'convert.py', '--from', 'dit',
                             '--checkpoint', path, '--model', 'DiT-XL/2', '--codec', codec,
                             '--workdir',
                             os.path.join(folder, 'run')], cwd=REPO_ROOT, capture_output=True,
                            text=True, env=dict(os.environ, PHIPD_JAX_HOST_MALLOC='system'))
    seconds = time.perf_counter() - start
    peaks = dict(line.split()[1:] for line in result.stdout.splitlines()
                 if line.startswith('PEAK '))
    if result.returncode or len(peaks) != 3 or peaks['exit'] != '0':
      raise RuntimeError(result.stderr[-2000:])
  rss, anon = int(peaks['rss']), int(peaks['anon'])
  return dict(what='convert.py --from dit, DiT-XL/2 (675 M parameters)', seconds=seconds,
              checkpoint_bytes=size, peak_rss_bytes=rss, peak_over_checkpoint=rss / size,
              peak_anonymous_bytes=anon, peak_anonymous_over_checkpoint=anon / size)


# convert.py in-process, with a thread sampling /proc/self/status every 20 ms: the peak resident
# set (VmHWM: anonymous memory plus the memory-mapped checkpoint's file pages, which are page
# cache) and the peak anonymous memory (RssAnon: what the conversion itself holds).
_PEAK_SCRIPT = """
import runpy, sys, threading, time
sys.argv = sys.argv[1:]
peak = {'anon': 0}
def status():
  return {l.split(':')[0]: int(l.split()[1]) * 1024 for l in open('/proc/self/status')
          if l.startswith(('VmHWM', 'RssAnon'))}
def sample():
  while True:
    peak['anon'] = max(peak['anon'], status()['RssAnon'])
    time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
code = 0
try:
  runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit as exit_:
  code = exit_.code or 0
print('PEAK exit', code)
print('PEAK rss', status()['VmHWM'])
print('PEAK anon', max(peak['anon'], status()['RssAnon']))
"""


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='Output path without suffix.')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--convert_xl', action='store_true')
  args = parser.parse_args()
  torch.set_num_threads(os.cpu_count())
  rows = [bench_dit(args.batch, args.repeats), bench_vae(args.repeats)]
  result = {'device': jax.devices()[0].device_kind, 'cpu_count': os.cpu_count(),
            'torch': torch.__version__, 'jax': jax.__version__, 'repeats': args.repeats,
            'rows': rows}
  if args.convert_xl:
    result['conversion'] = bench_convert_xl()
  with open(args.out + '.json', 'w') as f:
    json.dump(result, f, indent=2)
  lines = [f'Device: {result["device"]} ({os.cpu_count()} cores), jax {jax.__version__}, torch '
           f'{torch.__version__}; medians of {args.repeats}, compile apart.', '',
           '| what | JAX (s) | compile (s) | PyTorch (s) | PyTorch / JAX | max rel. error |',
           '|---|---|---|---|---|---|']
  for row in rows:
    lines.append(f'| {row["what"]} | {row["jax_s"]:.3f} | {row["jax_compile_s"]:.1f} | '
                 f'{row["torch_s"]:.3f} | {row["ratio_torch_over_jax"]:.2f}x | '
                 f'{row["max_relative_error"]:.1e} |')
  if 'conversion' in result:
    c = result['conversion']
    lines += ['', f'{c["what"]}: {c["seconds"]:.0f} s; peak anonymous memory '
              f'{c["peak_anonymous_bytes"] / 2**30:.2f} GiB = '
              f'{c["peak_anonymous_over_checkpoint"]:.2f}x the {c["checkpoint_bytes"] / 2**30:.2f} '
              f'GiB checkpoint (peak RSS with the memory-mapped file\'s page cache '
              f'{c["peak_rss_bytes"] / 2**30:.2f} GiB = {c["peak_over_checkpoint"]:.2f}x).']
  with open(args.out + '.md', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
