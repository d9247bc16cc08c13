r"""Benchmarks of the jit-compiled noise constructors, samplers and train step of a config.

  python benchmark.py --config configs/quickstart.py --what all --json benchmarks/quickstart.json

Prints one table per section and writes JSON. Every figure is the median over ``--repeats``
timed calls (with min and max); compilation is timed apart; inputs are random data; outputs are
checked for NaN/Inf. FLOPs come from XLA's cost analysis: a sampler's per-image FLOPs are
(FLOPs of one network evaluation) x (evaluations per run), because XLA counts a loop body once.
MFU = achieved FLOP/s / peak, with the peak from ``--peak_flops`` (e.g. the data-sheet number
of an accelerator) or else measured once with a 2048^3 matrix product (``peak_source`` says
which).
"""

import json
import os

from absl import flags
from ml_collections import config_flags

from phipd_jax import benchmarking, console

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_WHAT = flags.DEFINE_string('what', 'all', 'Sections: all, or a comma-separated subset of noise, '
                            'sample, train.')
_JSON = flags.DEFINE_string('json', None, 'Write the results here as JSON.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per measurement.')
_BATCH = flags.DEFINE_integer('batch', 8, 'Images per sampling batch.')
_FRAMES = flags.DEFINE_integer('frames', 8, 'Frames of the video shape in the noise section.')
_PEAK = flags.DEFINE_float('peak_flops', 0.0, 'Peak FLOP/s for MFU (0: measure a matmul).')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Also write the tables as Markdown here.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')
flags.mark_flag_as_required('config')


def main(argv):
  del argv
  results = benchmarking.run_benchmarks(_CONFIG.value, _WHAT.value, _REPEATS.value, _BATCH.value,
                                        _FRAMES.value, _PEAK.value)
  print(benchmarking.report(results))
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(results, f, indent=2, default=str)
    print(f'\nwrote {_JSON.value}')
  if _MARKDOWN.value:
    with open(_MARKDOWN.value, 'w') as f:
      f.write(benchmarking.report(results, markdown=True) + '\n')
    print(f'wrote {_MARKDOWN.value}')


if __name__ == '__main__':
  console.run(main)
