r"""Plots and tables of the phi-PD vs SDEdit study from evaluate.py --mode translate JSON files.

  python scripts/phipd_study_report.py runs/study_eval/*.json --name phipd_study

Merges the per-checkpoint JSON files (reference rows are taken once per task) into
``docs/results/<name>.json`` and writes, under ``docs/results/``:

* ``<name>_<task>.png``: the structure-vs-appearance frontier, one panel per checkpoint, every
  method a curve (phi-PD over the radius, structured SDEdit and SDEdit over the strength) and
  the reference rows as grey markers. x: ``lpips_input`` (appearance change) for re-rendering,
  ``fd_vgg`` to held-out photos (realism, lower is better) for the other tasks; y: the
  gradient correlation with the structure reference.
* ``<name>_radius.png``: phi-PD structure and realism against the radius for every checkpoint
  and task (does structure rise with r; does the training r0 matter).
* ``<name>.md``: every row of every task as a table;

and replaces the part of ``docs/results.md`` between ``<!-- <name>:begin -->`` and
``<!-- <name>:end -->`` with the plots and the compact tables (the hand-written reading lives
outside the markers).
"""

from __future__ import annotations

import argparse
import json
import os
import re

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO_ROOT, 'docs', 'results')
TASK_TITLES = {'photo': 're-rendering (photo -> photo)',
               'flat_shaded': 'sim-to-real (flat-shaded -> photo)',
               'edges': 'edge map -> photo'}
COLUMNS = ('edge_f', 'gradient_correlation', 'lpips_input', 'lpips_target', 'lpips_vgg_target',
           'ssim_target', 'psnr_target', 'swd_mean', 'fd_vgg')
STYLE = {'phipd': ('tab:red', 'o', 'phi-PD (r)'),
         'structured_sdedit': ('tab:orange', 's', 'structured SDEdit r=4 (s)'),
         'sdedit': ('tab:blue', '^', 'SDEdit (s)'),
         'generate': ('black', 'x', 'unconditional')}


def x_metric(task: str) -> str:
  return 'lpips_input' if task == 'photo' else 'fd_vgg'


def merge(paths: list[str]) -> dict:
  merged = {'sources': paths, 'rows': []}
  seen_reference = set()
  for path in paths:
    with open(path) as f:
      data = json.load(f)
    for key in ('num_inputs', 'seed', 'structure', 'reference_images'):
      merged.setdefault(key, {})
      if isinstance(data.get(key), dict):
        merged[key].update(data[key])
      else:
        merged[key] = data.get(key)
    merged.setdefault('data', {})[data['data']] = True
    for row in data['rows']:
      if row.get('method') == 'reference':
        marker = (row['task'], row['setting'], data['data'])
        if marker in seen_reference:
          continue
        seen_reference.add(marker)
      merged['rows'].append(dict(row, data=data['data']))
  merged['data'] = sorted(merged['data'])
  return merged


def checkpoints(rows):
  names = []
  for row in rows:
    if row['method'] != 'reference' and row['name'] not in names:
      names.append(row['name'])
  return names


def frontier_plot(rows, task, path):
  names = [n for n in checkpoints(rows) if any(r['task'] == task and r['name'] == n
                                               for r in rows)]
  if not names:
    return False
  x_key = x_metric(task)
  figure, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), sharex=True,
                              sharey=True, squeeze=False)
  references = [r for r in rows if r['task'] == task and r['method'] == 'reference']
  for axis, name in zip(axes[0], names):
    mine = [r for r in rows if r['task'] == task and r['name'] == name]
    for method, (colour, marker, label) in STYLE.items():
      points = [r for r in mine if r['method'] == method]
      points.sort(key=lambda r: (r.get('radius') or 0, r['strength']))
      if not points:
        continue
      axis.plot([p[x_key] for p in points], [p['gradient_correlation'] for p in points],
                marker=marker, color=colour, label=label)
      for p in points:
        tag = f'{p["radius"]:g}' if method == 'phipd' else (
            f'{p["strength"]:g}' if method != 'generate' else '')
        axis.annotate(tag, (p[x_key], p['gradient_correlation']), fontsize=7,
                      textcoords='offset points', xytext=(3, 3), color=colour)
    for r in references:
      axis.scatter(r[x_key], r['gradient_correlation'], color='grey', marker='d', s=18)
      axis.annotate(r['setting'], (r[x_key], r['gradient_correlation']), fontsize=6,
                    color='grey', textcoords='offset points', xytext=(3, -8))
    axis.set_title(name, fontsize=9)
    axis.set_xlabel(x_key + (' (change)' if x_key == 'lpips_input' else ' (lower = realer)'))
    axis.grid(alpha=0.3)
  axes[0][0].set_ylabel('gradient correlation (structure)')
  axes[0][0].legend(fontsize=7, loc='lower left')
  figure.suptitle(TASK_TITLES.get(task, task), fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return True


def radius_plot(rows, tasks, path):
  names = checkpoints(rows)
  figure, axes = plt.subplots(2, len(tasks), figsize=(3.6 * len(tasks), 6.2), squeeze=False)
  for column, task in enumerate(tasks):
    for name in names:
      points = sorted((r for r in rows if r['task'] == task and r['name'] == name
                       and r['method'] == 'phipd'), key=lambda r: r['radius'])
      if not points:
        continue
      radii = [p['radius'] for p in points]
      axes[0][column].plot(radii, [p['gradient_correlation'] for p in points], marker='o',
                           label=name)
      axes[1][column].plot(radii, [p['fd_vgg'] for p in points], marker='o', label=name)
    axes[0][column].set_title(TASK_TITLES.get(task, task), fontsize=9)
    for row in range(2):
      axes[row][column].set_xscale('log', base=2)
      axes[row][column].set_xlabel('phi-PD radius r (frequency index)')
      axes[row][column].grid(alpha=0.3)
  axes[0][0].set_ylabel('gradient correlation (structure)')
  axes[1][0].set_ylabel('fd_vgg (lower = realer)')
  axes[0][0].legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def table(rows, columns=COLUMNS) -> str:
  header = ['checkpoint', 'setting'] + list(columns)
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in rows:
    cells = [row['name'] if row['method'] != 'reference' else '*reference*', row['setting']]
    cells += ['' if row.get(c) is None else f'{row[c]:.3g}' for c in columns]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def compact_rows(rows, task):
  """Per checkpoint: phi-PD at r = 4, 8, 16, structured SDEdit s=0.6, SDEdit s=0.6 and 0.8."""
  keep = {'phipd r=4', 'phipd r=8', 'phipd r=16', 'structured_sdedit r=4 s=0.6', 'sdedit s=0.6',
          'sdedit s=0.8', 'generate'}
  chosen = [r for r in rows if r['task'] == task and r['method'] != 'reference'
            and r['setting'] in keep]
  return chosen + [r for r in rows if r['task'] == task and r['method'] == 'reference']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('inputs', nargs='+', help='evaluate.py --mode translate JSON files')
  parser.add_argument('--name', default='phipd_study')
  parser.add_argument('--results_md', default=os.path.join(REPO_ROOT, 'docs', 'results.md'))
  args = parser.parse_args()
  merged = merge(args.inputs)
  rows = merged['rows']
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{args.name}.json'), 'w') as f:
    json.dump(merged, f, indent=1)
  tasks = [t for t in TASK_TITLES if any(r['task'] == t for r in rows)]
  sections, full = [], [f'# {args.name}: every row\n']
  for task in tasks:
    for data in merged['data']:
      subset = [r for r in rows if r['task'] == task and r['data'] == data]
      if not subset:
        continue
      tag = f'{task}_{data.split("/")[0]}'
      image = f'{args.name}_{tag}.png'
      frontier_plot(subset, task, os.path.join(RESULTS, image))
      title = f'{TASK_TITLES[task]}, {data}'
      sections.append(f'#### {title}\n\n![{title}](results/{image})\n\n'
                      + table(compact_rows(subset, task)))
      full.append(f'\n## {title}\n\n' + table(subset))
  radius_plot(rows, tasks, os.path.join(RESULTS, f'{args.name}_radius.png'))
  with open(os.path.join(RESULTS, f'{args.name}.md'), 'w') as f:
    f.write('\n'.join(full))
  generated = (f'<!-- {args.name}:begin (generated by scripts/phipd_study_report.py) -->\n\n'
               + f'![phi-PD against the radius](results/{args.name}_radius.png)\n\n'
               + '\n'.join(sections)
               + f'\nEvery row of every task: [`results/{args.name}.md`](results/{args.name}.md);'
               + f' JSON: [`results/{args.name}.json`](results/{args.name}.json).\n\n'
               + f'<!-- {args.name}:end -->')
  with open(args.results_md) as f:
    text = f.read()
  pattern = re.compile(rf'<!-- {args.name}:begin.*?<!-- {args.name}:end -->', re.S)
  if pattern.search(text):
    text = pattern.sub(lambda _: generated, text)
  else:
    text = text.rstrip('\n') + '\n\n' + generated + '\n'
  with open(args.results_md, 'w') as f:
    f.write(text)
  print(f'wrote {RESULTS}/{args.name}.{{json,md}}, {len(sections)} frontier plots, '
        f'{args.results_md}')


if __name__ == '__main__':
  main()
