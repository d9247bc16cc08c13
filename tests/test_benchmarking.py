"""benchmark.py's sections run on a tiny config and report consistent, finite figures.

The config is a tiny JiT with Spectral Forcing (the sections are model-agnostic; this also
covers the Spectral Forcing row).
"""

import json
import math

import jax
import numpy as np
import pytest

from phipd_jax import benchmarking, experiment, video_noise


def test_benchmark_sections_and_json(tiny_config, tmp_path):
  tiny_config.sample.num_steps = 2
  from configs import common
  common.set_jit_recipe(tiny_config)
  tiny_config.model.size, tiny_config.model.patch_size = 'tiny', 4
  tiny_config.model.in_context_len = 4
  tiny_config.model.spectral_forcing.schedule = 'linear'
  tiny_config.optim.warmup_steps = 2
  tiny_config.sample.num_steps = 2
  results = benchmarking.run_benchmarks(experiment.build(tiny_config), 'all', repeats=2, batch=2, frames=2,
                                     given_peak=1e11)
  assert results['peak_source'].startswith('given') and results['peak_flops'] == 1e11
  samplers = {(r['sampler'], r['start']) for r in results['sample']}
  assert samplers == {('euler', 'gaussian'), ('euler', 'phipd'), ('heun', 'gaussian'),
                      ('heun', 'phipd')}
  for row in results['sample']:
    assert row['evaluations'] == (3 if row['sampler'] == 'heun' else 2)
    assert row['run_min_ms'] <= row['run_median_ms'] <= row['run_max_ms']
    assert row['gflops_per_image'] > 0 and 0 < row['mfu'] < 10
  assert 'compile_s_at_2x_steps' in results['sample'][0]
  names = {(r['noise'], r['shape']) for r in results['noise']}
  assert ('fss_reference', '2x16x16x3') in names and ('fss_paper', '2x2x16x16x3') in names
  shares = [r['share_of_sampling_run'] for r in results['noise'] if 'share_of_sampling_run' in r]
  assert len(shares) == 5 and all(s > 0 for s in shares)
  assert ('spectral_forcing', '2x16x16x3') in names
  train = results['train']
  assert train['images_per_s'] > 0 and train['gflops_per_image'] > 0
  # The train step's FLOPs are about 3x the forward pass (forward + backward).
  forward = results['sample'][0]['gflops_per_image'] / results['sample'][0]['evaluations']
  assert 2.0 < train['gflops_per_image'] / forward < 4.5
  assert benchmarking.sections('noise') == {'noise'}  # --what noise runs only the noise.
  assert benchmarking.sections('all') == {'noise', 'sample', 'train'}
  with pytest.raises(ValueError, match='--what'):
    benchmarking.sections('noise,speed')
  path = tmp_path / 'out.json'
  path.write_text(json.dumps(results, default=str))
  assert math.isfinite(json.loads(path.read_text())['train']['step_median_ms'])


def test_matmul_flops_equals_the_dit_formula():
  """The jaxpr count of a DiT forward equals the hand count of its matrix products."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from phipd_jax.models.dit import DiT
  batch, size, patch, channels, hidden, depth, heads = 2, 16, 4, 3, 64, 2, 4
  model = DiT(in_channels=channels, patch_size=patch, hidden=hidden, depth=depth,
              heads=heads, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  x = jnp.ones((batch, size, size, channels))
  t = jnp.full((batch,), 0.5)
  counted = benchmarking.matmul_flops(lambda p, x, t: nnx.merge(graphdef, p)(x, t), params, x, t)
  tokens = (size // patch) ** 2
  per_token_block = 2 * hidden * (3 * hidden + hidden + 2 * 4 * hidden)  # qkv, proj, MLP.
  attention = 2 * 2 * tokens * hidden  # q k^T and p v, per token.
  per_sample = (2 * 256 * hidden + 2 * hidden * hidden  # Time embedding MLP.
                + depth * 2 * hidden * 6 * hidden + 2 * hidden * 2 * hidden)  # adaLN.
  per_token = (2 * patch * patch * channels * hidden  # Patch embedding.
               + depth * (per_token_block + attention) + 2 * hidden * patch * patch * channels)
  assert counted == batch * (tokens * per_token + per_sample)
  # A scan body counts once per iteration; a cond its most expensive branch.
  a = jnp.ones((8, 8))
  scanned = lambda a: jax.lax.scan(lambda c, _: (c @ a, None), a, None, length=5)[0]
  assert benchmarking.matmul_flops(scanned, a) == 5 * 2 * 8**3
  branch = lambda a, i: jax.lax.cond(i > 0, lambda: a @ a @ a, lambda: a)
  assert benchmarking.matmul_flops(branch, a, 1) == 2 * 2 * 8**3


def test_peak_flops_sources():
  assert benchmarking.peak_flops(5e12) == (5e12, 'given (--peak_flops)')
  assert benchmarking.datasheet_peak_flops('NVIDIA H100 PCIe') == 756e12
  assert benchmarking.datasheet_peak_flops('NVIDIA H100 80GB HBM3') == 989e12
  assert benchmarking.datasheet_peak_flops('TPU v5 lite') == 197e12
  assert benchmarking.datasheet_peak_flops('some cpu') is None


def test_compare_checks_its_references_and_runs_the_jax_worker(tmp_path):
  """benchmark.py --what compare: missing references fail before any timing; the JAX worker
  (a fresh process per case) prints its timings and peak memory as one JSON line."""
  import sys
  import benchmark_compare as compare
  with pytest.raises(ValueError, match='--torch_python'):
    compare.check_references(str(tmp_path / 'python'), '', '')
  with pytest.raises(ValueError, match='--dit_repo'):
    compare.check_references(sys.executable, str(tmp_path), '')
  (tmp_path / 'models.py').write_text('')
  with pytest.raises(ValueError, match='--noise_repo'):
    compare.check_references(sys.executable, str(tmp_path), str(tmp_path))
  result = compare._run([sys.executable, compare._JAX_SCRIPT, '--case', 'noise',
                         '--batch', '2', '--channels', '3', '--image', '16', '--repeats', '2',
                         '--warmup', '1'])
  assert result['side'] == 'jax' and len(result['calls_s']) == 2
  assert result['median_s'] > 0 and result['peak_rss_mb'] > 50


def test_importing_the_library_turns_off_xla_cpu_ynnpack_fusions():
  """phipd_jax/__init__.py: faster and correct on XLA:CPU (docs/benchmarks.md); a flag the
  user already set in XLA_FLAGS is kept."""
  import os
  import subprocess
  import sys
  script = 'import os, phipd_jax; print(os.environ["XLA_FLAGS"])'
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True)
  assert out.stdout.split() == ['--xla_cpu_experimental_ynn_fusion_type=']
  env['XLA_FLAGS'] = '--xla_cpu_experimental_ynn_fusion_type=dot'
  out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True)
  assert out.stdout.split() == ['--xla_cpu_experimental_ynn_fusion_type=dot']


def test_host_malloc_reuse_keeps_freed_host_memory_for_reuse():
  """phipd_jax/__init__.py: with PHIPD_JAX_HOST_MALLOC=reuse a freed 64 MB block is reused without
  first-touch page faults (XLA:CPU allocates each call's temporaries afresh); by default
  (unset, or 'system') glibc is left alone."""
  import os
  import subprocess
  import sys
  script = '\n'.join([
      'import resource, numpy as np, phipd_jax',
      'np.ones(1 << 24, np.float32).sum()',  # 64 MB, touched, freed.
      'before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt',
      'for _ in range(4): np.ones(1 << 24, np.float32).sum()',
      'print(phipd_jax.HOST_MALLOC_TUNED, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)'])
  faults = {}
  for setting in ['reuse', 'system', None]:
    env = {k: v for k, v in os.environ.items() if k != 'PHIPD_JAX_HOST_MALLOC'}
    if setting:
      env['PHIPD_JAX_HOST_MALLOC'] = setting
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True)
    tuned, faults[setting] = out.stdout.split()
    assert tuned == str(setting == 'reuse'), out.stderr
  pages = 4 * (64 << 20) // 4096  # 65536 pages of 4 kB (fewer faults where the kernel uses huge pages).
  assert int(faults['reuse']) < 0.01 * pages, faults
  assert int(faults['system']) > 20 * (int(faults['reuse']) + 10), faults


def test_use_huge_page_malloc_reexecutes_once_and_backs_large_blocks_with_huge_pages():
  """phipd_jax.use_huge_page_malloc (called first by every entry point): the command runs again,
  once, with glibc.malloc.hugetlb=1 added to the tunables already set, and a freshly touched
  256 MB block then faults once per 2 MB huge page, not once per 4 kB page;
  PHIPD_JAX_HOST_MALLOC=system leaves the process alone. Where huge pages are unavailable
  (glibc < 2.35, transparent huge pages "never") the default leaves it alone too."""
  import os
  import subprocess
  import sys
  import phipd_jax
  script = '\n'.join([
      'import ctypes, os, resource, phipd_jax',
      'print("start", flush=True)',
      'phipd_jax.use_huge_page_malloc()',
      'libc = ctypes.CDLL("libc.so.6"); libc.malloc.restype = ctypes.c_void_p',
      'before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt',
      # 256 MB from malloc itself (numpy asks for huge pages on its own), touched.
      'block = libc.malloc(256 << 20); ctypes.memset(block, 1, 256 << 20)',
      'faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before',
      'print(os.environ.get("GLIBC_TUNABLES", ""), faults)'])
  pages = (256 << 20) // 4096
  results = {}
  for setting in ['hugepages', 'system']:
    env = dict(os.environ, PHIPD_JAX_HOST_MALLOC=setting,
               GLIBC_TUNABLES='glibc.malloc.trim_threshold=1000000')
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True)
    lines = out.stdout.split('\n')
    assert out.returncode == 0, out.stderr
    results[setting] = lines
  if phipd_jax._huge_pages_available():
    # Re-executed once: 'start' twice, the result once.
    assert results['hugepages'][:2] == ['start', 'start'], results
    tunables, faults = results['hugepages'][2].split()
    assert tunables == 'glibc.malloc.trim_threshold=1000000:glibc.malloc.hugetlb=1'
    assert int(faults) < 0.05 * pages, results
  else:  # Not re-executed, tunables untouched.
    assert results['hugepages'][0] == 'start' and results['hugepages'][1].split()[0] == (
        'glibc.malloc.trim_threshold=1000000'), results
  assert results['system'][0] == 'start' and results['system'][1].split()[0] == (
      'glibc.malloc.trim_threshold=1000000')
  assert int(results['system'][1].split()[1]) > 0.9 * pages, results


def test_compare_times_both_sides_with_the_same_calls_and_more_for_the_noise(tmp_path, monkeypatch):
  """run_compare: each pair of workers gets the same --repeats; the noise cases (5-1300 ms per
  call) get at least NOISE_MIN_REPEATS, the DiT cases the --repeats asked for."""
  import sys
  import benchmark_compare as compare
  from configs import edges2shoes_gaussian
  (tmp_path / 'models.py').write_text('')
  (tmp_path / 'structured_noise').mkdir()
  (tmp_path / 'structured_noise' / 'structured_noise_pytorch.py').write_text('')
  commands = []

  def fake_run(command, env=None):
    commands.append(list(command))
    return {'median_s': 0.5, 'peak_rss_mb': 100.0, 'calls_s': [0.5], 'version': 'x'}

  monkeypatch.setattr(compare, '_run', fake_run)
  result = compare.run_compare(edges2shoes_gaussian.get_config(), sys.executable, str(tmp_path),
                               str(tmp_path), repeats=3, what=('forward', 'noise'),
                               sizes=(('S', 4),), progress=lambda _: None)
  # The value of each command's --repeats.
  repeats = [int([v for f, v in zip(c, c[1:]) if f == '--repeats'][-1]) for c in commands]
  cases = [c[c.index('--case') + 1] for c in commands]
  assert cases == ['dit_forward'] * 2 + ['noise'] * 6
  assert repeats == [3, 3] + [compare.NOISE_MIN_REPEATS] * 6
  assert result['noise_repeats'] == compare.NOISE_MIN_REPEATS and len(result['compare']) == 4


def test_a_clip_run_times_each_clip_noise_option_and_its_train_step_with_flow():
  """benchmark.py on configs/clips_phipd.py: one noise row per clip option (with its share of a
  sampling run), and a train step fed clips with their flow (the flow-warped option reads it)."""
  from configs import clips_phipd
  config = clips_phipd.get_config('runlocal,video=flow_warped')
  config.data.frames, config.data.image_size = 2, 16
  config.sample.num_steps = 2
  exp = experiment.build(config)
  results = benchmarking.run_benchmarks(exp, 'noise,train', repeats=1, batch=2)
  names = [row['noise'] for row in results['noise']]
  assert names == ['gaussian'] + [f'fss_{o}' for o in video_noise.VIDEO_OPTIONS]
  assert all(row['shape'] == '2x2x16x16x3' for row in results['noise'])
  assert results['train']['step_median_ms'] > 0
  flow = np.asarray(benchmarking.random_flow(jax.random.key(0), (3, 4, 8, 8, 3)))
  assert flow.shape == (3, 3, 8, 8, 2) and np.all(np.abs(flow) <= 2.0 + 0.05 * 4)
  np.testing.assert_array_equal(flow[:, 0], flow[:, 2])  # The same camera motion every frame.
