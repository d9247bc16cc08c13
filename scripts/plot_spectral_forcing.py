r"""Plots the Spectral Forcing patch-size ablation from evaluate.py's JSON.

  python scripts/plot_spectral_forcing.py docs/results/jit_sf.json docs/results/jit_sf.png

Two panels against the patch size, one line per Spectral Forcing setting: SWD (mean over the
pyramid levels, x 1e3) and the power-spectrum distance to the held-out photos; the dashed line
is the real-vs-real floor (``train photos`` row).
"""

import collections
import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def main(json_path: str, png_path: str):
  with open(json_path) as f:
    summary = json.load(f)
  rows = summary['rows']
  floor = {r['name']: r for r in rows if r.get('model') == 'reference'}['train photos']
  series = collections.defaultdict(list)
  for row in rows:
    if row.get('model') != 'reference':
      series[row['spectral_forcing']].append(row)
  metrics = [('swd_mean', 'SWD x 1e3 (mean of levels)'),
             ('spectrum_distance', 'spectrum distance (decades)')]
  figure, axes = plt.subplots(1, len(metrics), figsize=(9, 3.4))
  for axis, (metric, label) in zip(axes, metrics):
    for name, points in sorted(series.items()):
      points = sorted(points, key=lambda r: r['patch_size'])
      axis.plot([r['patch_size'] for r in points], [r[metric] for r in points], marker='o',
                label=f'Spectral Forcing: {name}')
    axis.axhline(floor[metric], color='gray', linestyle='--', label='held-out vs train photos')
    axis.set_xscale('log', base=2)
    axis.set_xticks([4, 8, 16], ['4', '8', '16'])
    axis.set_xlabel('patch size (pixels; 256, 64, 16 tokens at 64 px)')
    axis.set_ylabel(label)
    axis.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  figure.suptitle(f"JiT-tiny on {summary['reference']} 64x64, lower is better", fontsize=10)
  figure.tight_layout()
  figure.savefig(png_path, dpi=120)
  print(png_path)


if __name__ == '__main__':
  main(*sys.argv[1:3])
