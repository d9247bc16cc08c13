r"""Plots the training loss of runs on one figure, from each run's ``metrics.jsonl``.

  python scripts/plot_loss_curves.py docs/results/quickstart_precision.png \
      runs/quickstart:float32 runs/quickstart_bf16:bfloat16

Each argument after the output path is ``WORKDIR[:LABEL]``. The logged loss is the mean over the
``train.log_every`` steps before each point. Prints each run's final loss, the mean of its last
five points (and their spread) and its images per second.
"""

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def read_metrics(workdir: str) -> list[dict]:
  """The rows of ``<workdir>/metrics.jsonl`` that carry a loss. Raises FileNotFoundError."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: not a train.py run (no metrics.jsonl)')
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if 'loss' in r]


def main(png_path: str, runs: list[str]):
  figure, axis = plt.subplots(figsize=(6, 3.6))
  for run in runs:
    workdir, _, label = run.partition(':')
    rows = read_metrics(workdir)
    steps, losses = [r['step'] for r in rows], [r['loss'] for r in rows]
    axis.plot(steps, losses, label=label or workdir)
    tail = losses[-5:]
    speed = statistics.median(r['images_per_second'] for r in rows if 'images_per_second' in r)
    print(f'{label or workdir}: final loss {losses[-1]:.4f}; last five {statistics.mean(tail):.4f}'
          f' +- {statistics.stdev(tail):.4f}; median {speed:.0f} images/s')
  axis.set_yscale('log')
  axis.set_xlabel('step')
  axis.set_ylabel('training loss (mean over the log interval)')
  axis.grid(alpha=0.3)
  axis.legend()
  figure.tight_layout()
  figure.savefig(png_path, dpi=120)
  print(f'wrote {png_path}')


if __name__ == '__main__':
  if len(sys.argv) < 3:
    sys.exit(__doc__)
  main(sys.argv[1], sys.argv[2:])
