r"""Tables and the frontier plot of the LoRA-into-phi-PD study (scripts/lora_study.sh).

  python scripts/lora_study_report.py --runs runs/lora_study \
      --eval runs/lora_study/eval.json,runs/lora_study/eval_steps.json

Reads the ``evaluate.py --mode translate`` JSON of every run (``base``, ``lora_r<R>_lr<X>_s<S>``,
``full_s<S>``, ``scratch_s<S>``, and shorter fine-tunes ``<variant>_n<steps>_s<S>``), groups the seeds of each variant (mean and sample standard
deviation over seeds), measures each variant's train step on this machine in one process
(median of ``--repeats`` steps, compile apart, XLA's step memory, trainable parameters; the
first seed's run directory, its LoRA base loaded), and writes under ``docs/results/``:

* ``<name>.json``: the per-variant summary and every evaluation row;
* ``<name>.md``: the tables;
* ``<name>.png``: structure (gradient correlation) against realism (FD-VGG) of phi-PD over the
  radius, one curve per variant with the seeds' spread, per task;

and replaces the part of ``docs/results.md`` between ``<!-- <name>:begin -->`` and
``<!-- <name>:end -->`` (the reading lives outside the markers).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # configs/
RESULTS = os.path.join(REPO_ROOT, 'docs', 'results')
METRICS = ('gradient_correlation', 'edge_f', 'lpips_input', 'fd_vgg', 'swd_mean')
TASK_TITLES = {'photo': 're-rendering (photo -> photo)', 'edges': 'edge map -> photo'}


def variant_of(name: str) -> tuple[str, int | None]:
  """``'lora_r16_lr1e-3_s2'`` -> ``('lora_r16_lr1e-3', 2)``; ``'base'`` -> ``('base', None)``."""
  match = re.fullmatch(r'(.+)_s(\d+)', name)
  return (match.group(1), int(match.group(2))) if match else (name, None)


def setting_key(row: dict) -> str:
  return row['setting']


def aggregate(rows: list[dict]) -> list[dict]:
  """One row per (variant, task, setting): mean and std over seeds of :data:`METRICS`."""
  groups = collections.defaultdict(list)
  for row in rows:
    if row.get('method') == 'reference':
      continue
    variant, _ = variant_of(row['name'])
    groups[(variant, row['task'], setting_key(row))].append(row)
  out = []
  for (variant, task, setting), members in groups.items():
    summary = {'variant': variant, 'task': task, 'setting': setting, 'seeds': len(members),
               'method': members[0]['method'], 'radius': members[0].get('radius'),
               'strength': members[0].get('strength')}
    for metric in METRICS:
      values = [m[metric] for m in members]
      summary[metric] = statistics.fmean(values)
      summary[metric + '_std'] = statistics.stdev(values) if len(values) > 1 else 0.0
    out.append(summary)
  return out


def measure_steps(runs_dir: str, variants: list[str], repeats: int) -> dict:
  """``{variant: {step_median_ms, step_gb, temp_gb, trainable}}`` from each variant's first run."""
  import jax  # pylint: disable=g-import-not-at-top
  from phipd_jax import benchmarking, experiment, saved_run, sharding  # pylint: disable=g-import-not-at-top
  measured = {}
  for variant in variants:
    names = sorted(n for n in os.listdir(runs_dir) if variant_of(n)[0] == variant and
                   os.path.isfile(os.path.join(runs_dir, n, 'config.json')))
    if not names:
      continue
    exp = experiment.build(saved_run.run_config(os.path.join(runs_dir, names[0])))
    mesh = sharding.make_mesh(exp.spec.mesh.data, exp.spec.mesh.fsdp)
    if exp.lora is not None:
      exp = exp.with_lora_base(saved_run.load_lora_base(exp, mesh))
    result = benchmarking.train_section(exp, mesh, peak=1.0, repeats=repeats)
    trainable = sum(x.size for x in jax.tree.leaves(exp.init_params(jax.random.key(0))))
    measured[variant] = {'step_median_ms': result['step_median_ms'],
                         'step_gb': result.get('step_gb'), 'temp_gb': result.get('temp_gb'),
                         'compile_s': result['compile_s'], 'trainable': int(trainable),
                         'batch': result['batch']}
    print(f'{variant}: {result["step_median_ms"]:.0f} ms/step, '
          f'{result.get("step_gb", 0):.3f} GB, {trainable} trainable', flush=True)
  return measured


def budget_of(variant: str) -> tuple[str, int]:
  """``'lora_r16_lr4e-3_n50'`` -> ``('lora_r16_lr4e-3', 50)``; without ``_n``: the study's
  fine-tune length (:data:`configs.lora_study.FINETUNE_STEPS`; ``base``: 0)."""
  from configs import lora_study  # pylint: disable=g-import-not-at-top
  match = re.fullmatch(r'(.+)_n(\d+)', variant)
  if match:
    return match.group(1), int(match.group(2))
  return variant, 0 if variant == 'base' else lora_study.FINETUNE_STEPS


def order(variant: str) -> tuple:
  variant, steps = budget_of(variant)
  if variant == 'base':
    return (0, 0, 0.0, steps)
  match = re.fullmatch(r'lora_r(\d+)_lr(.+)', variant)
  if match:
    return (1, int(match.group(1)), float(match.group(2)), steps)
  return ({'full': 2, 'scratch': 3}.get(variant, 4), 0, 0.0, steps)


def label(variant: str) -> str:
  variant, _ = budget_of(variant)
  match = re.fullmatch(r'lora_r(\d+)_lr(.+)', variant)
  if match:
    return f'LoRA r={match.group(1)}, lr {match.group(2)}'
  return {'base': 'Gaussian base (0 steps)', 'full': 'full fine-tune',
          'scratch': 'FSS from scratch'}.get(variant, variant)


def plus_minus(row: dict, metric: str, fmt: str) -> str:
  return f'{row[metric]:{fmt}} ± {row[metric + "_std"]:{fmt}}'


def tables(summary: list[dict], measured: dict, radius: float,
           references: dict[str, dict]) -> str:
  """``references``: ``{task: the 'ground truth' reference row}`` (the paired photo's scores)."""
  variants = sorted({row['variant'] for row in summary if not re.search(r'_n\d+$', row['variant'])},
                    key=order)
  by = {(r['variant'], r['task'], r['setting']): r for r in summary}
  setting = f'phipd r={radius:g}'
  lines = [f'**phi-PD at r = {radius:g} (mean ± std over seeds)**', '',
           '| variant | seeds | trainable | ms / step | step memory (MB) | photo gc | photo FD-VGG '
           '| edges gc | edges edge-F | edges FD-VGG | edges SWD |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for variant in variants:
    photo, edges = by.get((variant, 'photo', setting)), by.get((variant, 'edges', setting))
    if photo is None or edges is None:
      continue
    m = measured.get(variant)
    step = (f'{m["trainable"]:,} | {m["step_median_ms"]:.0f} | {1024 * m["step_gb"]:.1f}'
            if m else '- | - | -')
    lines.append(
        f'| {label(variant)} | {photo["seeds"]} | {step} | '
        f'{plus_minus(photo, "gradient_correlation", ".3f")} | {plus_minus(photo, "fd_vgg", ".1f")} | '
        f'{plus_minus(edges, "gradient_correlation", ".3f")} | {plus_minus(edges, "edge_f", ".3f")} | '
        f'{plus_minus(edges, "fd_vgg", ".1f")} | {plus_minus(edges, "swd_mean", ".1f")} |')
  photo, edges = references.get('photo'), references.get('edges')
  if photo and edges:
    lines.append(f'| paired ground-truth photo (reference) | - | - | - | - | '
                 f'{photo["gradient_correlation"]:.3f} | {photo["fd_vgg"]:.1f} | '
                 f'{edges["gradient_correlation"]:.3f} | {edges["edge_f"]:.3f} | '
                 f'{edges["fd_vgg"]:.1f} | {edges["swd_mean"]:.1f} |')
  lines += ['', '**Structure over the radius (gradient correlation, mean ± std over seeds)**', '']
  radii = sorted({r['radius'] for r in summary if r['method'] == 'phipd'})
  for task in ('photo', 'edges'):
    lines += [f'*{TASK_TITLES[task]}*', '',
              '| variant | ' + ' | '.join(f'r={r:g}' for r in radii) + ' | SDEdit s=0.6 |',
              '|---|' + '---|' * (len(radii) + 1)]
    for variant in variants:
      cells = []
      for r in radii:
        row = by.get((variant, task, f'phipd r={r:g}'))
        cells.append(plus_minus(row, 'gradient_correlation', '.3f') if row else '')
      sdedit = [row for key, row in by.items() if key[:2] == (variant, task) and
                row['method'] == 'sdedit']
      cells.append(plus_minus(sdedit[0], 'gradient_correlation', '.3f') if sdedit else '')
      lines.append(f'| {label(variant)} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  lines += steps_table(summary, radius)
  return '\n'.join(lines) + '\n'


def steps_table(summary: list[dict], radius: float) -> list[str]:
  """Structure and realism of phi-PD at ``radius`` against fine-tune steps (0 = the Gaussian
  base) for each family that has shorter runs (``_n<steps>`` variants)."""
  families = sorted({budget_of(r['variant'])[0] for r in summary
                     if re.search(r'_n\d+$', r['variant'])}, key=order)
  if not families:
    return []
  setting = f'phipd r={radius:g}'
  by = {(r['variant'], r['task'], r['setting']): r for r in summary}
  lines = [f'**Fine-tune steps until the structure dial works: phi-PD at r = {radius:g}, '
           'mean ± std over seeds (0 steps = the Gaussian base)**', '',
           '| variant | steps | seeds | photo gc | photo FD-VGG | edges gc | edges FD-VGG |',
           '|---|---|---|---|---|---|---|']
  for family in families:
    members = sorted({r['variant'] for r in summary if budget_of(r['variant'])[0] == family},
                     key=lambda v: budget_of(v)[1])
    for variant in ['base'] + members:
      photo, edges = by.get((variant, 'photo', setting)), by.get((variant, 'edges', setting))
      if photo is None or edges is None:
        continue
      lines.append(f'| {label(family)} | {budget_of(variant)[1]} | {photo["seeds"]} | '
                   f'{plus_minus(photo, "gradient_correlation", ".3f")} | '
                   f'{plus_minus(photo, "fd_vgg", ".1f")} | '
                   f'{plus_minus(edges, "gradient_correlation", ".3f")} | '
                   f'{plus_minus(edges, "fd_vgg", ".1f")} |')
  return lines + ['']


def plot(summary: list[dict], path: str):
  from phipd_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  figure, axes = report.new_figure(1, 2, (13, 5))
  variants = sorted({row['variant'] for row in summary if not re.search(r'_n\d+$', row['variant'])},
                    key=order)
  for axis, task in zip(axes[0], ('photo', 'edges')):
    for variant in variants:
      rows = sorted((r for r in summary if r['variant'] == variant and r['task'] == task and
                     r['method'] == 'phipd'), key=lambda r: r['radius'])
      if not rows:
        continue
      style = dict(marker='o', capsize=2, lw=1.2)
      if not variant.startswith('lora'):
        style.update(lw=2.2, marker='s')
      axis.errorbar([r['fd_vgg'] for r in rows], [r['gradient_correlation'] for r in rows],
                    xerr=[r['fd_vgg_std'] for r in rows],
                    yerr=[r['gradient_correlation_std'] for r in rows], label=label(variant),
                    **style)
    axis.set_title(f'{TASK_TITLES[task]}: phi-PD over r (mean ± std over seeds)')
    axis.set_xlabel('FD-VGG to held-out photos (lower = more realistic)')
    axis.set_ylabel('gradient correlation with the structure reference')
    axis.grid(alpha=0.3)
  axes[0][1].legend(fontsize=7)
  report.save_figure(figure, path)


def replace_section(name: str, text: str):
  path = os.path.join(REPO_ROOT, 'docs', 'results.md')
  with open(path) as f:
    doc = f.read()
  begin, end = f'<!-- {name}:begin -->', f'<!-- {name}:end -->'
  if begin not in doc or end not in doc:
    print(f'docs/results.md has no {begin} ... {end} markers: section not replaced')
    return
  head, rest = doc.split(begin, 1)
  _, tail = rest.split(end, 1)
  with open(path, 'w') as f:
    f.write(head + begin + '\n' + text + end + tail)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--eval', required=True,
                      help='evaluate.py --mode translate JSON files, comma-separated')
  parser.add_argument('--runs', required=True, help='the study runs directory')
  parser.add_argument('--name', default='lora_study')
  parser.add_argument('--radius', type=float, default=8.0, help='the radius of the main table')
  parser.add_argument('--repeats', type=int, default=20, help='timed train steps per variant')
  args = parser.parse_args()
  evaluation = None
  for path in args.eval.split(','):  # Rows of every file; the first file's header.
    with open(path) as f:
      part = json.load(f)
    if evaluation is None:
      evaluation = part
    else:
      evaluation['rows'] += [r for r in part['rows'] if r.get('method') != 'reference']
  summary = aggregate(evaluation['rows'])
  variants = sorted({row['variant'] for row in summary}, key=order)
  measured = measure_steps(args.runs, [v for v in variants if v != 'base' and
                                       not re.search(r'_n\d+$', v)], args.repeats)
  references = {r['task']: r for r in evaluation['rows']
                if r.get('method') == 'reference' and r['name'] == 'ground truth'}
  text = tables(summary, measured, args.radius, references)
  image = os.path.join(RESULTS, f'{args.name}.png')
  plot(summary, image)
  from phipd_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  report.write_study(RESULTS, args.name, {'data': evaluation['data'],
                                          'num_inputs': evaluation['num_inputs'],
                                          'variants': summary, 'steps': measured,
                                          'rows': evaluation['rows']}, text)
  replace_section(args.name, f'![LoRA study frontier](results/{args.name}.png)\n\n' + text)
  print(text)


if __name__ == '__main__':
  main()
