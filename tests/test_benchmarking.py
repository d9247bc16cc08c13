"""benchmark.py's sections run on a tiny config and report consistent, finite figures.

The config is a tiny JiT with Spectral Forcing (the sections are model-agnostic; this also
covers the Spectral Forcing row).
"""

import json
import math

import pytest

from phipd_jax import benchmarking


def test_benchmark_sections_and_json(tiny_config, tmp_path):
  tiny_config.sample.num_steps = 2
  from configs import common
  common.set_jit_recipe(tiny_config)
  tiny_config.model.size, tiny_config.model.patch_size = 'tiny', 4
  tiny_config.model.in_context_len = 4
  tiny_config.model.spectral_forcing.schedule = 'linear'
  tiny_config.optim.warmup_steps = 2
  tiny_config.sample.num_steps = 2
  results = benchmarking.run_benchmarks(tiny_config, 'all', repeats=2, batch=2, frames=2,
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
