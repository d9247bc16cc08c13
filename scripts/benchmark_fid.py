r"""FID feature-extraction throughput: the Flax FID Inception beside pytorch-fid, one process.

  python scripts/benchmark_fid.py --batch 50 --repeats 5 --out docs/benchmarks/fid_cpu

Both networks get the same weights (``--fid_weights``, or random ones in pytorch-fid's layout:
speed does not depend on the values) and the same 299x299 images (no resize on either side).
Times are per batch after warm-up: our jit-compiled forward (compile time reported apart) and
pytorch-fid's ``InceptionV3([3])`` under ``torch.no_grad`` with ``torch`` using every core.
Medians over ``--repeats``; images/s = batch / median. Needs torch and pytorch-fid (the test
requirements); writes ``<out>.json`` and ``<out>.md``.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time

from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from phipd_jax import console  # pylint: disable=wrong-import-position
from phipd_jax.evaluation import inception  # pylint: disable=wrong-import-position

_BATCH = flags.DEFINE_integer('batch', 50, 'Images per call (pytorch-fid\'s default 50).',
                              lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per side.', lower_bound=1)
_WEIGHTS = flags.DEFINE_string('fid_weights', None, 'Weights file (default: random weights).')
_OUT = flags.DEFINE_string('out', None, 'Write <out>.json and <out>.md.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  from pytorch_fid import inception as pytorch_fid_inception  # pylint: disable=g-import-not-at-top
  weights = _WEIGHTS.value
  if weights is None:
    rng = np.random.default_rng(0)
    state = {k: torch.from_numpy(rng.normal(0.0, 0.05, s).astype(np.float32))
             for k, s in inception.state_dict_shapes().items()}
    weights = os.path.join(tempfile.mkdtemp(), inception.WEIGHTS_FILE)
    torch.save(state, weights)
  images = np.random.default_rng(1).uniform(0, 1, (_BATCH.value, 299, 299, 3)).astype(np.float32)

  net = inception.extractor(weights)
  start = time.perf_counter()
  jax.block_until_ready(net(images))
  compile_seconds = time.perf_counter() - start
  ours, ours_all = _median_seconds(lambda: jax.block_until_ready(net(images)), _REPEATS.value)

  pytorch_fid_inception.load_state_dict_from_url = (
      lambda *a, **k: torch.load(weights, weights_only=True))
  torch.set_num_threads(os.cpu_count())
  reference = pytorch_fid_inception.InceptionV3([3]).eval()
  batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    reference(batch)  # Warm-up.
    theirs, theirs_all = _median_seconds(lambda: reference(batch), _REPEATS.value)

  result = {
      'batch': _BATCH.value, 'repeats': _REPEATS.value, 'image_size': 299,
      'ours_seconds': ours, 'ours_all': ours_all, 'ours_compile_seconds': compile_seconds,
      'ours_images_per_second': _BATCH.value / ours,
      'pytorch_fid_seconds': theirs, 'pytorch_fid_all': theirs_all,
      'pytorch_fid_images_per_second': _BATCH.value / theirs,
      'speedup_vs_pytorch_fid': theirs / ours,
      'device': str(jax.devices()[0].device_kind), 'devices': jax.device_count(),
      'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
      'jax': jax.__version__, 'torch': torch.__version__,
  }
  table = '\n'.join([
      f'FID Inception features, batch {_BATCH.value} at 299x299, median of {_REPEATS.value} '
      f'({result["device"]} x {result["devices"]}, {os.cpu_count()} cores)', '',
      '| network | s / batch | images / s | compile s |', '|---|---|---|---|',
      f'| phipd_jax (Flax, jit) | {ours:.3f} | {_BATCH.value / ours:.1f} | '
      f'{compile_seconds:.1f} |',
      f'| pytorch-fid {torch.__version__} | {theirs:.3f} | {_BATCH.value / theirs:.1f} | - |',
      '', f'ratio (pytorch-fid time / ours): {theirs / ours:.2f}x', ''])
  print(table)
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value + '.json', 'w') as f:
      json.dump(result, f, indent=1)
    with open(_OUT.value + '.md', 'w') as f:
      f.write(table)


if __name__ == '__main__':
  console.run(main)
