r"""Benchmarks of the jit-compiled noise constructors, samplers and train step of a config.

  python benchmark.py --config configs/quickstart.py --what all --json benchmarks/quickstart.json
  # A run directory (trained, or converted by convert.py) with its own weights and sampler:
  python benchmark.py --workdir runs/dit_xl2_256 --what sample,noise --batch 4

Prints one table per section and writes JSON. Every figure is the median over ``--repeats``
timed calls (with min and max); compilation is timed apart; inputs are random data; outputs are
checked for NaN/Inf. MFU = achieved model FLOP/s / peak. Model FLOPs are the network's matrix
products counted from its jaxpr (``benchmarking.matmul_flops``; x3 for a train step; a sampler
run is (one network evaluation) x (evaluations)); XLA's own count is reported beside them as
``hardware_gflops_per_image``. The peak is ``--peak_flops``, else the data-sheet bf16 number of a
known GPU/TPU (``benchmarking.PEAK_FLOPS_BF16``), else (CPU) the best of 20 2048^3 matrix
products at the config's dtype, measured before the sections (``peak_source`` says which).

  python benchmark.py --config configs/edges2shoes_gaussian.py --config.model.dtype=float32 \
      --what compare --torch_python /path/to/torch-venv/bin/python \
      --dit_repo /path/to/facebookresearch/DiT --noise_repo /path/to/structured-noise

times the library side by side with its PyTorch originals (``benchmark_compare.py``).
"""

import phipd_jax

if __name__ == '__main__':  # First: re-executes once, before JAX loads.
  phipd_jax.use_huge_page_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position

import json
import os

from absl import flags
from ml_collections import config_flags

from phipd_jax import benchmarking, console, experiment, saved_run

import benchmark_compare as compare

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (or --workdir).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A run directory (train.py or convert.py) instead '
                               'of --config: its config, its codec and (sampling) its weights.')
_WHAT = flags.DEFINE_string('what', 'all', 'Sections: all, or a comma-separated subset of noise, '
                            'sample, train; or compare (side by side with the PyTorch originals, '
                            'see benchmark_compare.py).')
_JSON = flags.DEFINE_string('json', None, 'Write the results here as JSON.')
_REPEATS = flags.DEFINE_integer(
    'repeats', 5, 'Timed calls per measurement (--what compare: at least 25 for the noise cases).')
_BATCH = flags.DEFINE_integer('batch', 8, 'Images per sampling batch.')
_FRAMES = flags.DEFINE_integer('frames', 8, 'Frames of the video shape in the noise section.')
_PEAK = flags.DEFINE_float('peak_flops', 0.0, 'Peak FLOP/s for MFU (0: the data sheet of a known GPU/TPU, '
                            'else the best of 20 matmuls).')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Also write the tables as Markdown here.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')
_TORCH_PYTHON = flags.DEFINE_string('torch_python', None, 'compare: a Python with torch and timm.')
_DIT_REPO = flags.DEFINE_string('dit_repo', None, 'compare: a facebookresearch/DiT checkout.')
_NOISE_REPO = flags.DEFINE_string('noise_repo', None,
                                  'compare: a zengxianyu/structured-noise checkout.')
_COMPARE = flags.DEFINE_list('compare', ['train', 'forward', 'noise'],
                             'compare: cases, a subset of train, forward, noise.')
_SIZES = flags.DEFINE_list('sizes', ['S/4', 'B/4'], 'compare: DiT sizes as size/patch.')
flags.register_multi_flags_validator(
    ['config', 'workdir'], lambda f: (f['config'] is None) != (f['workdir'] is None),
    message='give exactly one of --config and --workdir')


def main(argv):
  del argv
  if _WHAT.value == 'compare':
    if _WORKDIR.value:
      raise ValueError('--what compare takes --config (it builds the PyTorch twin of a config)')
    sizes = [(s.split('/')[0], int(s.split('/')[1])) for s in _SIZES.value]
    results = compare.run_compare(_CONFIG.value, _TORCH_PYTHON.value, _DIT_REPO.value,
                                  _NOISE_REPO.value, _REPEATS.value, _COMPARE.value, sizes)
    text = benchmarking.format_table(results['compare'], compare.COMPARE_COLUMNS)
    print(text)
    _write(results, benchmarking.format_table(results['compare'], compare.COMPARE_COLUMNS,
                                              markdown=True))
    return
  params = None
  if _WORKDIR.value:
    _, exp, restored = saved_run.load_run(_WORKDIR.value)
    params = restored['ema_params']
  else:
    exp = experiment.build(_CONFIG.value)
  results = benchmarking.run_benchmarks(exp, _WHAT.value, _REPEATS.value, _BATCH.value,
                                        _FRAMES.value, _PEAK.value, params=params)
  print(benchmarking.report(results))
  _write(results, benchmarking.report(results, markdown=True))


def _write(results: dict, markdown: str):
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(results, f, indent=2, default=str)
    print(f'\nwrote {_JSON.value}')
  if _MARKDOWN.value:
    with open(_MARKDOWN.value, 'w') as f:
      f.write(markdown + '\n')
    print(f'wrote {_MARKDOWN.value}')


if __name__ == '__main__':
  console.run(main)
