r"""The three-seed reports of the spectral-collapse / OVG and LWD claims.

  python scripts/seed_study_report.py collapse --runs_dir docs/results/collapse_seeds \
      --out_dir docs/results/collapse_seeds
  python scripts/seed_study_report.py lwd --runs_dir docs/results/lwd_seeds \
      --out_dir docs/results/lwd_seeds
  python scripts/seed_study_report.py clips --runs_dir docs/results/clip_study \
      --out_dir docs/results/clip_study

``collapse`` reads, per seed folder ``s<S>``, the ``evaluate.py --mode inversion`` JSON
(``ovg_study.json``: plain inversion and OVG of each run on held-out edge maps) and the
``--mode collapse`` JSON (``collapse_sweep.json``: every source inverted, per-map diagnostics).
Runs are named ``<variant>_s<S>`` (``edm``, ``ddim_eps``, ``ddim_x0``). ``lwd`` reads
``autoencoders/lwd_study.json`` (the base, ``ae_ft_sc_s<S>`` and ``ae_ft_plain_s<S>``) and, per
seed folder, ``lwd_study.json`` (cells ``<codec>_<option>_s<S>`` with convergence rows).

``clips`` reads, per seed folder, ``clip_study.json`` (``evaluate.py --mode clips``: one clip run
per seed, every row of ``phipd_jax.evaluation.clip_study``) and compares each noise option with
per-frame noise (phi-PD) and flow-warped with i.i.d. SDEdit.

Every number is the mean and the sample standard deviation over seeds; a difference between two
variants comes with Welch's t-test p-value over the seeds (3 against 3: a screen, not proof).
Writes ``<kind>_seeds.json``, ``<kind>_seeds.md`` and the figures into ``--out_dir``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import statistics
import sys

import numpy as np
import scipy.stats

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from phipd_jax.evaluation import clip_study, report  # pylint: disable=wrong-import-position

VARIANT_TITLES = {'edm': 'EDM', 'ddim_eps': 'DDIM, eps target', 'ddim_x0': 'DDIM, x0 target'}
FRONTIER_METRICS = ('gradient_correlation', 'edge_f', 'lowpass_structure_corr', 'fd_vgg',
                    'swd_mean', 'hf_texture_ratio', 'noise_hf_power_ratio',
                    'noise_lf_power_ratio', 'noise_dc_power_ratio', 'noise_pca_effective_rank')
SWEEP_METRICS = ('noise_hf_power_ratio', 'noise_lf_power_ratio', 'noise_lag1_decorrelation',
                 'source_decorrelation', 'pca_effective_rank', 'hf_texture_ratio',
                 'lowpass_structure_corr')
LWD_METRICS = ('swd_mean', 'swd_16', 'fd_vgg', 'spectrum_distance', 'high_frequency_share',
               'final_train_loss')
AE_METRICS = ('psnr', 'ssim', 'lpips', 'latent_high_frequency_share', 'latent_scale')


def variant_of(name: str) -> tuple[str, int | None]:
  """``'ddim_eps_s2'`` -> ``('ddim_eps', 2)``; a name without a seed -> ``(name, None)``."""
  match = re.fullmatch(r'(.+)_s(\d+)', name)
  return (match.group(1), int(match.group(2))) if match else (name, None)


def stats(values) -> dict:
  """``{'mean', 'std', 'n', 'values'}`` of finite values (std 0 for one value)."""
  values = [float(v) for v in values if v is not None and np.isfinite(v)]
  if not values:
    return {'mean': None, 'std': None, 'n': 0, 'values': []}
  return {'mean': statistics.fmean(values),
          'std': statistics.stdev(values) if len(values) > 1 else 0.0,
          'n': len(values), 'values': values}


def welch(a: dict, b: dict) -> float | None:
  """Welch's t-test p-value of two :func:`stats` (None below 2 values each, or no spread)."""
  if a['n'] < 2 or b['n'] < 2 or (a['std'] == 0 and b['std'] == 0):
    return None
  return float(scipy.stats.ttest_ind(a['values'], b['values'], equal_var=False).pvalue)


def fmt(summary: dict | None, spec: str = '.3f') -> str:
  if not summary or summary['mean'] is None:
    return ''
  if abs(summary['mean']) >= 1e4:  # A diverged inversion: orders of magnitude, not decimals.
    spec = '.2e'
  return f"{summary['mean']:{spec}} ± {summary['std']:{spec}}"


def pvalue(p: float | None) -> str:
  return '' if p is None else f'{p:.2g}'


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def seed_dirs(runs_dir: str) -> list[str]:
  found = sorted(d for d in glob.glob(os.path.join(runs_dir, 's[0-9]*')) if os.path.isdir(d))
  if not found:
    raise FileNotFoundError(f'{runs_dir}: no seed folders s<S> (run the study script first)')
  return found


# ----------------------------------------------------------------------------- collapse / OVG


def collapse_report(runs_dir: str, out_dir: str) -> dict:
  frontier_rows, sweeps = [], []
  for folder in seed_dirs(runs_dir):
    frontier_rows += [r for r in read_json(os.path.join(folder, 'ovg_study.json'))['rows']
                      if r.get('method') in ('invert', 'ovg')]
    sweeps += read_json(os.path.join(folder, 'collapse_sweep.json'))['runs']
  # The frontier: (variant, task, method) -> metric -> stats over seeds.
  groups = collections.defaultdict(list)
  for row in frontier_rows:
    groups[(variant_of(row['name'])[0], row['task'], row['method'])].append(row)
  frontier = []
  for (variant, task, method), members in sorted(groups.items()):
    entry = {'variant': variant, 'task': task, 'method': method, 'seeds': len(members)}
    for metric in FRONTIER_METRICS:
      entry[metric] = stats(m.get(metric) for m in members)
    frontier.append(entry)
  by_key = {(e['variant'], e['task'], e['method']): e for e in frontier}
  ovg_vs_invert = []
  for (variant, task, method), entry in by_key.items():
    if method != 'ovg' or (variant, task, 'invert') not in by_key:
      continue
    base = by_key[(variant, task, 'invert')]
    ovg_vs_invert.append({
        'variant': variant, 'task': task,
        **{f'delta_{m}': entry[m]['mean'] - base[m]['mean'] for m in FRONTIER_METRICS
           if entry[m]['mean'] is not None and base[m]['mean'] is not None},
        **{f'p_{m}': welch(entry[m], base[m]) for m in FRONTIER_METRICS}})
  # The source sweep: (variant, source) -> metric -> stats; correlations per variant.
  sweep_groups = collections.defaultdict(list)
  corr_groups = collections.defaultdict(list)
  gaussian_rank = None
  for sweep in sweeps:
    variant = variant_of(sweep['run'])[0]
    gaussian_rank = sweep['gaussian_pca_effective_rank']
    for source, row in sweep['sources'].items():
      sweep_groups[(variant, source)].append(row)
    corr_groups[variant].append(sweep['correlations'])
  sources = list(sweeps[0]['sources']) if sweeps else []
  sweep_summary = []
  for (variant, source), members in sweep_groups.items():
    entry = {'variant': variant, 'source': source, 'seeds': len(members)}
    for metric in SWEEP_METRICS:
      entry[metric] = stats(m[metric] for m in members)
    sweep_summary.append(entry)
  correlations = {}
  for variant, members in corr_groups.items():
    correlations[variant] = {
        key: {kind: stats(m[key][kind] for m in members) for kind in ('pearson', 'spearman')}
        for key in members[0]}
  # Fig. 3: does the PCA rank fall with the down-sampling factor, seed by seed?
  pca_trend = {}
  blocks = [s for s in sources if re.fullmatch(r'x\d+', s)]
  for variant in sorted({variant_of(s['run'])[0] for s in sweeps}):
    falling = 0
    seeds = [s for s in sweeps if variant_of(s['run'])[0] == variant]
    for sweep in seeds:
      ranks = [sweep['sources'][b]['pca_effective_rank'] for b in blocks]
      falling += all(a > b for a, b in zip(ranks, ranks[1:]))
    pca_trend[variant] = {'blocks': blocks, 'seeds_strictly_falling': falling,
                          'seeds': len(seeds)}
  # eps vs x0 target, source by source.
  target = []
  for source in sources:
    eps = next((e for e in sweep_summary if e['variant'] == 'ddim_eps' and e['source'] == source),
               None)
    x0 = next((e for e in sweep_summary if e['variant'] == 'ddim_x0' and e['source'] == source),
              None)
    if eps and x0:
      target.append({'source': source, **{
          f'p_{m}': welch(eps[m], x0[m]) for m in SWEEP_METRICS}})
  summary = {'seeds': len(seed_dirs(runs_dir)), 'frontier': frontier,
             'ovg_vs_invert': ovg_vs_invert, 'sweep': sweep_summary,
             'correlations': correlations, 'pca_trend': pca_trend, 'target': target,
             'gaussian_pca_effective_rank': gaussian_rank, 'sources': sources}
  os.makedirs(out_dir, exist_ok=True)
  report.write_study(out_dir, 'collapse_seeds', summary, collapse_markdown(summary))
  plot_collapse(summary, sweeps, os.path.join(out_dir, 'collapse_seeds.png'))
  return summary


def collapse_markdown(summary: dict) -> str:
  seeds = summary['seeds']
  lines = [f'**OVG frontier** (held-out edge maps -> photos; mean ± std over {seeds} training '
           'seeds)', '',
           '| run | method | grad corr | edge F | FD-VGG | SWD | HF tex | noise HF | noise LF | '
           'noise DC | PCA rank |', '|---|---|' + '---:|' * 9]
  for e in summary['frontier']:
    lines.append(f"| {VARIANT_TITLES.get(e['variant'], e['variant'])} | {e['method']} | "
                 f"{fmt(e['gradient_correlation'])} | {fmt(e['edge_f'])} | "
                 f"{fmt(e['fd_vgg'], '.1f')} | {fmt(e['swd_mean'], '.0f')} | "
                 f"{fmt(e['hf_texture_ratio'], '.2f')} | {fmt(e['noise_hf_power_ratio'])} | "
                 f"{fmt(e['noise_lf_power_ratio'], '.2f')} | "
                 f"{fmt(e['noise_dc_power_ratio'], '.2f')} | "
                 f"{fmt(e['noise_pca_effective_rank'])} |")
  lines += ['', '**OVG minus plain inversion** (Welch p over seeds)', '',
            '| run | Δ grad corr (p) | Δ edge F (p) | Δ FD-VGG (p) | Δ HF tex (p) |',
            '|---|---:|---:|---:|---:|']
  for d in summary['ovg_vs_invert']:
    cells = [f"{d[f'delta_{m}']:+.3f} ({pvalue(d[f'p_{m}'])})" for m in
             ('gradient_correlation', 'edge_f', 'fd_vgg', 'hf_texture_ratio')]
    lines.append(f"| {VARIANT_TITLES.get(d['variant'], d['variant'])} | " + ' | '.join(cells)
                 + ' |')
  lines += ['', f'**Source sweep** (plain inversion of each source, mean ± std over {seeds} '
            f"seeds; N(0, I) PCA rank {summary['gaussian_pca_effective_rank']:.3f})", '',
            '| run | source | noise HF | noise LF | lag-1 dec | S_DC | PCA rank | HF tex | S_LF |',
            '|---|---|' + '---:|' * 7]
  for e in summary['sweep']:
    lines.append(f"| {VARIANT_TITLES.get(e['variant'], e['variant'])} | {e['source']} | " +
                 ' | '.join(fmt(e[m]) for m in SWEEP_METRICS) + ' |')
  tested = [t for t in summary['target'] if any(t[f'p_{m}'] is not None for m in SWEEP_METRICS)]
  if tested:
    lines += ['', '**eps vs x0 target** (DDIM runs, Welch p of the difference per source)', '',
              '| source | ' + ' | '.join(SWEEP_METRICS) + ' |',
              '|---|' + '---:|' * len(SWEEP_METRICS)]
    for t in tested:
      lines.append(f"| {t['source']} | " + ' | '.join(pvalue(t[f'p_{m}'])
                                                     for m in SWEEP_METRICS) + ' |')
  elif summary['target']:
    lines += ['', '**eps vs x0 target**: fewer than 2 seeds of one of them, no test.']
  lines += ['', '**Fig. 4 correlations** (per map, all sources pooled; Pearson, mean ± std over '
            'seeds)', '', '| run | S_DC vs noise HF | S_DC vs HF tex | S_DC vs S_LF |',
            '|---|---:|---:|---:|']
  for variant, corr in summary['correlations'].items():
    lines.append(f'| {VARIANT_TITLES.get(variant, variant)} | ' + ' | '.join(
        fmt(corr[k]['pearson']) for k in ('noise_hf_power_ratio', 'hf_texture_ratio',
                                           'lowpass_structure_corr')) + ' |')
  lines += ['', '**Fig. 3 trend**: seeds whose PCA rank falls strictly from x4 to x8 to x16: ' +
            ', '.join(f"{VARIANT_TITLES.get(v, v)} {t['seeds_strictly_falling']} of {t['seeds']}"
                      for v, t in summary['pca_trend'].items()), '']
  return '\n'.join(lines)


def plot_collapse(summary: dict, sweeps: list[dict], path: str) -> str:
  figure, axes = report.new_figure(1, 3, (16, 4.6))
  colors = {'edm': 'tab:blue', 'ddim_eps': 'tab:orange', 'ddim_x0': 'tab:green'}
  axis = axes[0, 0]
  for e in summary['frontier']:
    if e['task'] != 'edges':
      continue
    axis.errorbar(e['gradient_correlation']['mean'], e['fd_vgg']['mean'],
                  xerr=e['gradient_correlation']['std'], yerr=e['fd_vgg']['std'],
                  fmt='s' if e['method'] == 'invert' else '*', markersize=9,
                  color=colors.get(e['variant']), capsize=3,
                  label=f"{VARIANT_TITLES.get(e['variant'], e['variant'])} {e['method']}")
  axis.set(title='edge map -> photo: structure vs realism', xlabel='gradient correlation',
           ylabel='FD-VGG (lower = more photo-like)')
  axis.legend(fontsize=7)
  axis = axes[0, 1]
  blocks = summary['sources']
  for variant in colors:
    entries = {e['source']: e for e in summary['sweep'] if e['variant'] == variant}
    if not entries:
      continue
    axis.errorbar(range(len(blocks)), [entries[s]['pca_effective_rank']['mean'] for s in blocks],
                  yerr=[entries[s]['pca_effective_rank']['std'] for s in blocks], marker='o',
                  color=colors[variant], capsize=3, label=VARIANT_TITLES[variant])
  axis.axhline(summary['gaussian_pca_effective_rank'], color='k', linestyle='--',
               label='N(0, I)')
  axis.set_xticks(range(len(blocks)), blocks)
  axis.set(title='Fig. 3: PCA rank of inverted maps by source', ylabel='effective rank')
  axis.legend(fontsize=7)
  axis = axes[0, 2]
  for sweep in sweeps:
    variant, seed = variant_of(sweep['run'])
    if seed != 0:
      continue
    axis.scatter(sweep['per_map']['source_decorrelation'], sweep['per_map']['hf_texture_ratio'],
                 s=3, alpha=0.4, color=colors.get(variant), label=VARIANT_TITLES.get(variant))
  axis.set(title='Fig. 4: per map (seed 0, all sources)', xlabel='S_DC = 1 - |corr(x_T, source)|',
           ylabel='output HF texture ratio')
  axis.legend(fontsize=7, markerscale=4)
  return report.save_figure(figure, path)


# ----------------------------------------------------------------------------- LWD


def lwd_report(runs_dir: str, out_dir: str) -> dict:
  ae_rows = read_json(os.path.join(runs_dir, 'autoencoders', 'lwd_study.json'))['autoencoders']
  ae_groups = collections.defaultdict(list)
  for row in ae_rows:
    ae_groups[variant_of(row['name'])[0]].append(row)
  autoencoders = [{'variant': v, 'seeds': len(m), **{k: stats(r[k] for r in m)
                                                      for k in AE_METRICS}}
                  for v, m in ae_groups.items()]
  ae_by = {e['variant']: e for e in autoencoders}
  ae_test = {}
  if 'ae_ft_sc' in ae_by and 'ae_ft_plain' in ae_by:
    ae_test = {m: welch(ae_by['ae_ft_sc'][m], ae_by['ae_ft_plain'][m]) for m in AE_METRICS}
  final, curves = collections.defaultdict(list), collections.defaultdict(list)
  for folder in seed_dirs(runs_dir):
    study = read_json(os.path.join(folder, 'lwd_study.json'))
    for row in study['rows']:
      if row.get('autoencoder') == 'reference' or row['name'] == 'train photos' or (
          variant_of(row['name'])[1] is None):
        continue
      final[variant_of(row['name'])[0]].append(row)
    for row in study.get('convergence', []):
      curves[(variant_of(row['name'])[0], row['checkpoint_step'])].append(row)
  cells = [{'variant': v, 'seeds': len(m), 'lwd': m[0]['lwd'], 'ell': m[0]['ell'],
            **{k: stats(r.get(k) for r in m) for k in LWD_METRICS}}
           for v, m in sorted(final.items())]
  by = {c['variant']: c for c in cells}
  versus = []
  for cell in cells:
    codec = cell['variant'].split('_')[0]
    base = by.get(f'{codec}_nolwd')
    if cell['lwd'] and base:
      versus.append({'variant': cell['variant'], 'against': base['variant'],
                     **{f'p_{m}': welch(cell[m], base[m]) for m in LWD_METRICS}})
  convergence = [{'variant': v, 'checkpoint_step': s, 'seeds': len(m),
                  **{k: stats(r.get(k) for r in m) for k in LWD_METRICS}}
                 for (v, s), m in sorted(curves.items())]
  summary = {'seeds': len(seed_dirs(runs_dir)), 'autoencoders': autoencoders,
             'autoencoder_p': ae_test, 'cells': cells, 'lwd_vs_nolwd': versus,
             'convergence': convergence}
  report.write_study(out_dir, 'lwd_seeds', summary, lwd_markdown(summary))
  plot_lwd(summary, os.path.join(out_dir, 'lwd_seeds.png'))
  return summary


def lwd_markdown(summary: dict) -> str:
  seeds = summary['seeds']
  lines = ['**Autoencoders** (200 held-out photos; fine-tunes: mean ± std over seeds)', '',
           '| autoencoder | seeds | PSNR (dB) | SSIM | LPIPS | latent HF share | latent scale |',
           '|---|---:|---:|---:|---:|---:|---:|']
  for e in summary['autoencoders']:
    lines.append(f"| {e['variant']} | {e['seeds']} | {fmt(e['psnr'], '.2f')} | "
                 f"{fmt(e['ssim'])} | {fmt(e['lpips'])} | "
                 f"{fmt(e['latent_high_frequency_share'], '.4f')} | "
                 f"{fmt(e['latent_scale'], '.2f')} |")
  if summary['autoencoder_p']:
    lines += ['', 'Welch p, scale-consistent vs control fine-tune: ' + ', '.join(
        f'{m} {pvalue(p)}' for m, p in summary['autoencoder_p'].items())]
  lines += ['', f'**Flow matching cells** (decoded samples vs 100 held-out photos; mean ± std '
            f'over {seeds} seeds; p: Welch against the same codec without the mask)', '',
            '| cell | ell | SWD | SWD 16 | FD-VGG | spectrum dist | final loss | p SWD | '
            'p FD-VGG |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  ps = {v['variant']: v for v in summary['lwd_vs_nolwd']}
  for c in summary['cells']:
    p = ps.get(c['variant'], {})
    lines.append(f"| {c['variant']} | {'' if c['ell'] is None else c['ell']} | "
                 f"{fmt(c['swd_mean'], '.1f')} | {fmt(c['swd_16'], '.1f')} | "
                 f"{fmt(c['fd_vgg'], '.1f')} | {fmt(c['spectrum_distance'])} | "
                 f"{fmt(c['final_train_loss'])} | {pvalue(p.get('p_swd_mean'))} | "
                 f"{pvalue(p.get('p_fd_vgg'))} |")
  lines += ['', '**Convergence** (the same metrics at earlier checkpoints)', '',
            '| cell | step | SWD | FD-VGG |', '|---|---:|---:|---:|']
  for c in summary['convergence']:
    lines.append(f"| {c['variant']} | {c['checkpoint_step']} | {fmt(c['swd_mean'], '.1f')} | "
                 f"{fmt(c['fd_vgg'], '.1f')} |")
  return '\n'.join(lines) + '\n'


def plot_lwd(summary: dict, path: str) -> str:
  figure, axes = report.new_figure(1, 3, (15, 4.4))
  sweep = sorted((c for c in summary['cells'] if c['variant'].startswith('sc_') and c['lwd']),
                 key=lambda c: c['ell'])
  nolwd = next((c for c in summary['cells'] if c['variant'] == 'sc_nolwd'), None)
  for index, metric in enumerate(('swd_mean', 'fd_vgg')):
    axis = axes[0, index]
    axis.errorbar([c['ell'] for c in sweep], [c[metric]['mean'] for c in sweep],
                  yerr=[c[metric]['std'] for c in sweep], marker='o', capsize=3,
                  label='LWD mask (scale-consistent codec)')
    if nolwd:
      mean, std = nolwd[metric]['mean'], nolwd[metric]['std']
      axis.axhspan(mean - std, mean + std, color='gray', alpha=0.3, label='no mask (± std)')
      axis.axhline(mean, color='gray')
    axis.set(title=f'ell sweep: {metric}', xlabel='ell', ylabel=metric)
    axis.legend(fontsize=7)
  axis = axes[0, 2]
  for variant in ('sc_ell0.3', 'sc_nolwd', 'plain_ell0.3', 'plain_nolwd'):
    points = sorted((c for c in summary['convergence'] if c['variant'] == variant),
                    key=lambda c: c['checkpoint_step'])
    if points:
      axis.errorbar([c['checkpoint_step'] for c in points],
                    [c['fd_vgg']['mean'] for c in points],
                    yerr=[c['fd_vgg']['std'] for c in points], marker='o', capsize=3,
                    label=variant)
  axis.set(title='convergence: FD-VGG vs training step', xlabel='step', ylabel='FD-VGG')
  axis.legend(fontsize=7)
  return report.save_figure(figure, path)


# ----------------------------------------------------------------------------- video (clips)

CLIP_METRICS = ('warping_error', 'flicker', 'gradient_correlation', 'edge_f', 'fd_vgg')


def clips_report(runs_dir: str, out_dir: str) -> dict:
  groups = collections.defaultdict(list)
  folders = seed_dirs(runs_dir)
  for folder in folders:
    for row in read_json(os.path.join(folder, 'clip_study.json'))['rows']:
      groups[clip_study.row_title(row)].append(row)
  rows = [{'row': name, 'method': m[0]['method'], 'noise': m[0]['noise'], 'seeds': len(m),
           **{k: stats(r.get(k) for r in m) for k in CLIP_METRICS}} for name, m in groups.items()]
  by = {r['row']: r for r in rows}
  versus = []
  for row in rows:
    if row['method'] == 'input' or row['noise'] == 'per_frame':
      continue
    base = by.get(row['row'].rsplit(' ', 1)[0] + ' per_frame')
    if base:
      versus.append({'row': row['row'], 'against': base['row'],
                     **{f'p_{m}': welch(row[m], base[m]) for m in CLIP_METRICS}})
  summary = {'seeds': len(folders), 'rows': rows, 'versus_per_frame': versus}
  report.write_study(out_dir, 'clip_study_seeds', summary, clips_markdown(summary))
  plot_clips(summary, os.path.join(out_dir, 'clip_study_seeds.png'))
  return summary


def clips_markdown(summary: dict) -> str:
  lines = [f"**Video phi-PD** (held-out camera-motion clips; mean ± std over {summary['seeds']} "
           'seeds)', '',
           '| row | seeds | warping error | flicker | gradient corr. | edge F | FD-VGG |',
           '|---|---:|---:|---:|---:|---:|---:|']
  for r in summary['rows']:
    lines.append(f"| {r['row']} | {r['seeds']} | {fmt(r['warping_error'], '.4f')} | "
                 f"{fmt(r['flicker'])} | {fmt(r['gradient_correlation'])} | {fmt(r['edge_f'])} | "
                 f"{fmt(r['fd_vgg'], '.1f')} |")
  lines += ['', '**Against per-frame noise** (Welch p over seeds)', '',
            '| row | against | warping error | flicker | gradient corr. | edge F | FD-VGG |',
            '|---|---|---:|---:|---:|---:|---:|']
  for v in summary['versus_per_frame']:
    lines.append(f"| {v['row']} | {v['against']} | " + ' | '.join(
        pvalue(v[f'p_{m}']) for m in CLIP_METRICS) + ' |')
  return '\n'.join(lines) + '\n'


def plot_clips(summary: dict, path: str) -> str:
  """Warping error (log) against FD-VGG and against gradient correlation, one point per row
  with its seed spread."""
  figure, axes = report.new_figure(1, 2, (11, 4.5))
  axes = axes[0]
  for ax, metric, label in ((axes[0], 'fd_vgg', 'FD-VGG to held-out frames (lower: realistic)'),
                            (axes[1], 'gradient_correlation', 'gradient correlation with the input')):
    for index, r in enumerate(summary['rows']):  # One colour per row in both panels.
      if r['method'] == 'input' and metric == 'fd_vgg':
        continue
      marker = {'phipd': 'o', 'sdedit': 's'}.get(r['method'], '*')
      ax.errorbar(r[metric]['mean'], r['warping_error']['mean'], xerr=r[metric]['std'],
                  yerr=r['warping_error']['std'], fmt=marker, capsize=3, label=r['row'],
                  color=f'C{index}')
    ax.set_yscale('log')
    ax.set_xlabel(label)
    ax.set_ylabel('warping error along the flow (lower: consistent)')
  axes[1].legend(fontsize=7, loc='best')
  return report.save_figure(figure, path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('kind', choices=('collapse', 'lwd', 'clips'))
  parser.add_argument('--runs_dir', required=True, help='the study\'s output folder (s<S>/...)')
  parser.add_argument('--out_dir', required=True)
  args = parser.parse_args()
  if args.kind == 'collapse':
    summary = collapse_report(args.runs_dir, args.out_dir)
    print(collapse_markdown(summary))
  elif args.kind == 'clips':
    summary = clips_report(args.runs_dir, args.out_dir)
    print(clips_markdown(summary))
  else:
    summary = lwd_report(args.runs_dir, args.out_dir)
    print(lwd_markdown(summary))


if __name__ == '__main__':
  main()
