r"""Side by side with the PyTorch originals: ``benchmark.py --what compare``.

Times the library against the code it re-implements, on the same machine in one process tree:

* the DiT train step (loss, backward, clip, AdamW, EMA) and forward against
  ``facebookresearch/DiT``'s ``models.py`` (DiT-S/4 and DiT-B/4, batch 32, 64x64x3, fp32);
* reference-mode FSS noise against ``generate_structured_noise_batch_vectorized`` of
  ``zengxianyu/structured-noise`` at 64x3x64x64, 16x3x256x256 and 16x4x32x32 (NCHW).

Each measurement is a fresh subprocess (so the peak RSS is the case's own): the torch side runs
``benchmark_compare_torch.py`` under ``--torch_python`` (an interpreter with torch and timm; an
optional extra, never a dependency), the JAX side ``python benchmark_compare.py`` under this
interpreter with the run's config. The pair of each case runs back to back; figures are medians
of the timed calls after warm-up (JAX: compile excluded). ratio = torch time / ours (above 1:
we are faster); memory ratio = torch peak RSS / ours (above 1: we use less).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

import phipd_jax

# (name, size, patch) of the DiT cases; (N, C, H) of the noise cases.
DIT_CASES = (('S', 4), ('B', 4))
NOISE_SHAPES = ((64, 3, 64), (16, 3, 256), (16, 4, 32))
NOISE_RADIUS = 8.0  # Library units (frequency index of the unpadded image).
# Timed calls per side for the noise cases at least: a draw takes 3-1300 ms, and the median of 5
# calls of a few ms moved by 30 % between runs on a shared 2-core machine.
NOISE_MIN_REPEATS = 25
# The workers, by path (beside this file at the repo root; not part of the phipd_jax package).
_JAX_SCRIPT = os.path.abspath(__file__)
_TORCH_SCRIPT = os.path.join(os.path.dirname(_JAX_SCRIPT), 'benchmark_compare_torch.py')


# ---------------------------------------------------------------------------------------------
# The JAX side (runs in its own process).


def _jax_case(case: str, config, repeats: int, warmup: int, channels: int, image: int,
              batch: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from phipd_jax import benchmarking, experiment as experiment_lib, noise as noise_lib, sharding  # pylint: disable=g-import-not-at-top
  if case == 'noise':
    fn = noise_lib.noise_fn('fss', mode='reference', magnitude='gaussian')
    x = benchmarking.random_images(jax.random.key(1), (batch, image, image, channels))
    timing = benchmarking.time_compiled(lambda key, x: fn(key, x, NOISE_RADIUS),
                                        (jax.random.key(2), x), repeats, 'noise', warmup=warmup)
  else:
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    exp = experiment_lib.build(config, sharding.data_parallel_size(mesh))
    batch = config.train.batch_size
    if case == 'dit_forward':
      params = exp.init_params(jax.random.key(0))
      x = benchmarking.random_images(jax.random.key(1), (batch,) + exp.model_shape)
      t = jax.random.uniform(jax.random.key(2), (batch,))
      # Parameters are an argument, not constants closed over (XLA:CPU folds and fuses those
      # differently, and its YNNPACK fusions returned garbage on them; see docs/benchmarks.md).
      timing = benchmarking.time_compiled(lambda params, x, t: exp.apply_fn(params)(x, t, None),
                                          (params, x, t), repeats, 'forward', warmup=warmup)
    else:
      state = exp.create_train_state(mesh)
      step = exp.train_step(mesh, state)
      images = benchmarking.random_images(jax.random.key(5), (batch,) + exp.image_shape)
      data = sharding.global_batch({'image': jax.device_get(images),
                                    'label': jax.device_get(jnp.zeros((batch,), jnp.int32))}, mesh)
      timing = benchmarking.time_compiled(step, (state, data), repeats, 'train step',
                                          warmup=warmup, donate=True)
  return {'calls_s': timing.calls_s, 'compile_s': timing.compile_s,
          'version': f'jax {jax.__version__}'}


def _worker(argv: Sequence[str]):
  parser = argparse.ArgumentParser()
  parser.add_argument('--case', required=True)
  parser.add_argument('--config_pickle', default='')
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--channels', type=int, default=3)
  parser.add_argument('--image', type=int, default=64)
  args = parser.parse_args(argv)
  from phipd_jax import console  # pylint: disable=g-import-not-at-top
  console.configure(verbose=False)
  config = None
  if args.config_pickle:
    with open(args.config_pickle, 'rb') as f:
      config = pickle.load(f)
  result = _jax_case(args.case, config, args.repeats, args.warmup, args.channels, args.image,
                     args.batch)
  result.update(side='jax', median_s=statistics.median(result['calls_s']),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# The orchestrator (benchmark.py --what compare).


def _run(command: Sequence[str], env: Optional[dict] = None) -> dict:
  """Runs a worker; returns the JSON of its last stdout line. Raises RuntimeError on failure."""
  proc = subprocess.run(list(command), capture_output=True, text=True, env=env)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
  if proc.returncode or not lines:
    raise RuntimeError(f'compare: {" ".join(command[:4])} ... failed (exit {proc.returncode}):\n'
                       f'{proc.stderr[-3000:]}')
  return json.loads(lines[-1])


def check_references(torch_python: str, dit_repo: str, noise_repo: str):
  """Raises ``ValueError`` unless the interpreter and both checkouts exist (before any timing)."""
  if not torch_python or not os.path.exists(torch_python):
    raise ValueError(f'--torch_python={torch_python!r}: an interpreter with torch and timm is '
                     'needed (e.g. a venv with `pip install torch timm`)')
  if not os.path.isfile(os.path.join(dit_repo or '', 'models.py')):
    raise ValueError(f'--dit_repo={dit_repo!r} must be a checkout of facebookresearch/DiT '
                     '(with models.py)')
  upstream = os.path.join(noise_repo or '', 'structured_noise', 'structured_noise_pytorch.py')
  if not os.path.isfile(upstream):
    raise ValueError(f'--noise_repo={noise_repo!r} must be a checkout of '
                     'zengxianyu/structured-noise (with structured_noise/'
                     'structured_noise_pytorch.py)')


def dit_config(config, size: str, patch: int, batch: int = 32, image: int = 64):
  """``config`` (a copy) at DiT-``size``/``patch``, ``batch`` images of ``image`` px."""
  config = config.copy_and_resolve_references()
  config.model.name, config.model.size, config.model.patch_size = 'dit', size, patch
  config.train.batch_size = batch
  config.data.image_size = config.data.resize = image
  return config


def run_compare(config, torch_python: str, dit_repo: str, noise_repo: str, repeats: int = 7,
                what: Sequence[str] = ('train', 'forward', 'noise'),
                sizes: Sequence[tuple[str, int]] = DIT_CASES,
                noise_shapes: Sequence[tuple[int, int, int]] = NOISE_SHAPES,
                progress=print) -> dict:
  """Times each case on both sides (fresh processes, torch first); returns JSON-ready results.

  Args:
    config: the library's run config for the DiT cases (its model dtype, attention, remat...);
      size, patch, batch and image size are set per case by :func:`dit_config`.
    torch_python, dit_repo, noise_repo: see :func:`check_references`.
    repeats: timed calls per case and side (at least ``NOISE_MIN_REPEATS`` for the noise).
    what: subset of ``('train', 'forward', 'noise')``.

  Raises:
    ValueError: a missing interpreter or checkout (checked first).
    RuntimeError: a worker failed (its stderr is in the message).
  """
  from phipd_jax import noise as noise_lib  # pylint: disable=g-import-not-at-top
  check_references(torch_python, dit_repo, noise_repo)
  rows = []
  noise_repeats = max(repeats, NOISE_MIN_REPEATS)
  # The torch side runs with glibc as its users have it: without the huge-page tunable that
  # our entry points add (phipd_jax.use_huge_page_malloc); docs/benchmarks.md has torch with it.
  tunables = [t for t in os.environ.get('GLIBC_TUNABLES', '').split(':')
               if t and t != phipd_jax.HUGE_PAGE_TUNABLE]
  torch_env = dict(os.environ, GLIBC_TUNABLES=':'.join(tunables))
  with tempfile.TemporaryDirectory() as tmp:
    cases = []
    for size, patch in sizes:
      path = os.path.join(tmp, f'{size}_{patch}.pkl')
      with open(path, 'wb') as f:
        pickle.dump(dit_config(config, size, patch), f)
      for kind in ('train', 'forward'):
        if kind in what:
          cases.append((f'DiT-{size}/{patch} {kind}', f'dit_{kind}', '32x3x64x64', repeats,
                        ['--size', size, '--patch', str(patch), '--dit_repo', dit_repo],
                        ['--config_pickle', path]))
    if 'noise' in what:
      for n, c, h in noise_shapes:
        padded = h + noise_lib.reference_padding(h)
        radius = float(noise_lib.to_padded_units(NOISE_RADIUS, h, padded))
        shape = ['--batch', str(n), '--channels', str(c), '--image', str(h)]
        cases.append(('FSS noise reference', 'noise', f'{n}x{c}x{h}x{h}', noise_repeats,
                      shape + ['--radius_padded', str(radius), '--noise_repo', noise_repo],
                      shape + (['--config_pickle', os.path.join(tmp, 'noise.pkl')])))
      with open(os.path.join(tmp, 'noise.pkl'), 'wb') as f:
        pickle.dump(config, f)
    for name, case, shape, calls, torch_args, jax_args in cases:
      progress(f'compare: {name} {shape} ...')
      common = ['--case', case, '--repeats', str(calls)]
      theirs = _run([torch_python, _TORCH_SCRIPT] + common + torch_args, env=torch_env)
      ours = _run([sys.executable, _JAX_SCRIPT] + common + jax_args)
      rows.append({'what': name, 'shape': shape,
                   'torch_ms': 1e3 * theirs['median_s'], 'ours_ms': 1e3 * ours['median_s'],
                   'ratio': theirs['median_s'] / ours['median_s'],
                   'torch_peak_rss_gb': theirs['peak_rss_mb'] / 1024,
                   'ours_peak_rss_gb': ours['peak_rss_mb'] / 1024,
                   'memory_ratio': theirs['peak_rss_mb'] / ours['peak_rss_mb'],
                   'ours_compile_s': ours.get('compile_s'), 'torch_calls_s': theirs['calls_s'],
                   'ours_calls_s': ours['calls_s'], 'torch': theirs['version'],
                   'jax': ours['version']})
      progress(f"  torch {rows[-1]['torch_ms']:.0f} ms, ours {rows[-1]['ours_ms']:.0f} ms, "
               f"ratio {rows[-1]['ratio']:.2f}")
  return {'compare': rows, 'repeats': repeats,
          'noise_repeats': noise_repeats,
          'glibc_tunables': {'torch': torch_env['GLIBC_TUNABLES'],
                             'ours': os.environ.get('GLIBC_TUNABLES', '')}}


COMPARE_COLUMNS = ('what', 'shape', 'torch_ms', 'ours_ms', 'ratio', 'torch_peak_rss_gb',
                   'ours_peak_rss_gb', 'memory_ratio')


if __name__ == '__main__':
  _worker(sys.argv[1:])
