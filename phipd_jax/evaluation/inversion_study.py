"""The spectral-collapse benchmark: every structure-keeping method on spectrally sparse sources.

Bourriez et al., "Spectral Collapse in Diffusion Inversion" (arXiv:2602.13303) translate a
spectrally sparse source (an edge map, a x16 down-up-sampled image) by deterministic inversion
with the source class and sampling with the target class, and correct the inversion with
Orthogonal Variance Guidance (OVG). This module puts that family next to the library's other
structure-keeping methods on the same inputs and metrics.

Tasks (held-out records of ``data.eval_split``, never trained on; all of them are inputs):

* ``edges``: edge map -> photo. Source class: the run's ``sample.inversion_classes[0]``.
  Structure reference: the drawing's lines (edge F) and the drawing (gradient correlation).
* ``down8``: the photo x8 nearest down- then up-sampled -> photo (super-resolution, the analogue
  of the paper's x16 microscopy task). Source class: the index of ``'photo:down8'`` in
  ``data.domains``. Structure reference: the paired photo (its Canny edges; gradient
  correlation), since the input has no lines.

Realism reference: :data:`REFERENCE_PHOTOS` training-split photos (centre crops), disjoint from
the held-out inputs and targets, so the ``ground truth`` row (the held-out photos themselves) is
the finite-sample floor of SWD and ``fd_vgg``. Methods (one row per setting):

* ``sdedit``: Gaussian noise at a strength, sampled with the target class (multi-domain runs).
* ``invert`` / ``ovg``: translation by inversion, plain or with OVG (multi-domain runs; OVG on
  EDM and DDPM runs only).
* ``phipd`` / ``structured_sdedit``: phi-PD from FSS noise at a radius, from noise or at a
  strength (FSS-trained photo runs, unconditional).

Every method of a run uses one key (common random numbers). Metrics per row: those of
:func:`phipd_jax.evaluation.translation.metrics` plus ``lowpass_structure_corr`` (output vs
input, library definition) and ``hf_texture_ratio`` (output vs the reference photos); inversion
rows add the collapse diagnostics of their inverted noise (``noise_*``, every input's map,
:func:`phipd_jax.evaluation.collapse.collapse_report`), with a Gaussian reference row of the same
shape and count.
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import writers
from phipd_jax.evaluation import collapse, perceptual, report, structure, translation

TASKS = ('edges', 'down8')
PCA_BLOCKS = (4, 8, 16)  # Fig. 3: sources downsampled x4, x8 and x16.
REFERENCE_PHOTOS = 500  # Training photos in the realism reference.


def source_class(spec, task: str) -> int:
  """The class a run's model gives the inputs of ``task``.

  Raises:
    ValueError: the run is not a multi-domain run with that source.
  """
  if task == 'edges':
    classes = tuple(spec.sample.inversion_classes)
    if not classes:
      raise ValueError('inversion study: the run sets no sample.inversion_classes')
    return int(classes[0])
  domains = tuple(spec.data.domains)
  feature = f'{spec.data.image_key}:down8'
  if feature in domains:
    return domains.index(feature)
  raise ValueError(f'inversion study: task {task!r} needs a domain {feature!r} in data.domains '
                   f'{domains}')


def target_class(spec) -> int:
  return int(tuple(spec.sample.inversion_classes)[1])


def load_task(data_config, name: str, num: int,
              num_reference: int = REFERENCE_PHOTOS) -> translation.Task:
  """Task ``name`` (:data:`TASKS`) on the first ``num`` records of ``data.eval_split``, with the
  first ``num_reference`` photos of ``data.train_split`` as the realism reference.

  Raises:
    ValueError: an unknown task.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if name not in TASKS:
    raise ValueError(f'inversion study: task must be one of {TASKS}, got {name!r}')
  photos, _ = pipeline.held_out_inputs(data_config, 'photo', num)
  reference = pipeline.eval_images(data_config, data_config.train_split, data_config.image_key,
                                   num_reference)
  if name == 'edges':
    drawings, _ = pipeline.held_out_inputs(data_config, 'edges', num)
    return translation.Task(name, drawings, photos, drawings,
                            structure.line_map(drawings, translation.LINE_THRESHOLD), reference,
                            'lines')
  inputs = pipeline.down_up(photos, 8)
  return translation.Task(name, inputs, photos, photos, structure.canny_edges(photos), reference,
                          'canny of the paired photo')


def method_rows(kind: str, strengths: Sequence[float], radii: Sequence[float],
                structured: Sequence[tuple[float, float]], ovg: bool) -> list[dict]:
  """Rows ``{'method', 'radius', 'strength'}`` a run of ``kind`` contributes.

  ``kind``: ``'multi_domain'`` (SDEdit at ``strengths``, inversion, OVG if ``ovg``) or
  ``'phipd'`` (phi-PD from noise at ``radii``, structured SDEdit at ``structured``
  ``(radius, strength)`` pairs).
  """
  if kind == 'multi_domain':
    rows = [{'method': 'sdedit', 'radius': None, 'strength': float(s)} for s in strengths]
    rows.append({'method': 'invert', 'radius': None, 'strength': 1.0})
    if ovg:
      rows.append({'method': 'ovg', 'radius': None, 'strength': 1.0})
    return rows
  rows = [{'method': 'phipd', 'radius': float(r), 'strength': 1.0} for r in radii]
  rows += [{'method': 'structured_sdedit', 'radius': float(r), 'strength': float(s)}
           for r, s in structured]
  return rows


def output_metrics(outputs: np.ndarray, task: translation.Task, key: jax.Array,
                   features: np.ndarray) -> dict:
  """:func:`translation.metrics` plus ``lowpass_structure_corr`` and ``hf_texture_ratio``."""
  result = translation.metrics(outputs, task, key, features)
  result['lowpass_structure_corr'] = float(jnp.mean(collapse.lowpass_structure_corr(
      jnp.asarray(outputs), jnp.asarray(task.inputs))))
  result['hf_texture_ratio'] = float(jnp.mean(collapse.hf_texture_ratio(
      jnp.asarray(outputs), jnp.asarray(task.reference))))
  return result


def noise_metrics(noise: np.ndarray, inputs: np.ndarray, scale: float) -> dict:
  """The collapse diagnostics of inverted maps ``[M, H, W, C]``, keys prefixed ``noise_``."""
  report = collapse.collapse_report(jnp.asarray(noise), jnp.asarray(inputs), scale)
  return {f'noise_{name}': value for name, value in report.items()}


def prior_scale(process) -> float:
  """The prior std at the noise end (EDM: sigma_max; DDPM, flow: 1)."""
  return float(process.sigma(process.time_grid(1)[0]))


def run_study(multi_domain: Sequence[str], phipd: Sequence[str], *,
              tasks: Sequence[str] = TASKS, num: int = 200,
              strengths: Sequence[float] = (0.4, 0.6, 0.8),
              radii: Sequence[float] = (2.0, 4.0, 8.0),
              structured: Sequence[tuple[float, float]] = ((4.0, 0.6), (4.0, 0.8)),
              batch_size: int = 100, seed: int = 0, steps: Optional[int] = None,
              out_dir: Optional[str] = None, num_reference: int = REFERENCE_PHOTOS) -> dict:
  """Runs the benchmark; returns the summary (and writes it, the table and figures to
  ``out_dir``: ``ovg_study.json``, ``ovg_study.md``, ``frontier.png``, ``spectra_<task>.png``,
  ``pca.png`` and a grid per (run, task)).

  Args:
    multi_domain: workdirs of class-conditional multi-domain runs (inversion, OVG, SDEdit).
    phipd: workdirs of FSS-trained photo runs (phi-PD rows); may be empty.
    tasks: of :data:`TASKS`.
    num: held-out records per task (the noise diagnostics need at least 200 for the paper's
      PCA).
    strengths: SDEdit strengths; radii: phi-PD radii; structured: structured-SDEdit settings.
    batch_size, seed, steps: sampling batch, key seed, sampler steps override.
    num_reference: training photos in the realism reference.

  Raises:
    ValueError: no run, runs on different data or sizes, a multi-domain run without the
      task's source domain.
  """
  from phipd_jax.evaluation import runs  # pylint: disable=g-import-not-at-top
  if not multi_domain and not phipd:
    raise ValueError('inversion study: give at least one run')
  loaded = [(w, 'multi_domain') for w in multi_domain] + [(w, 'phipd') for w in phipd]
  metric_key = jax.random.key(seed + 1)
  task_data, rows, spectra, data_key = {}, [], {t: {} for t in tasks}, None
  for workdir, kind in loaded:
    spec, sampler, params = runs.load(workdir, steps)
    key_now = (spec.data.name, spec.data.image_size, spec.data.eval_split)
    if data_key is None:
      data_key = key_now
      for name in tasks:
        task = load_task(spec.data, name, num, num_reference)
        task_data[name] = (task, perceptual.vgg_features(task.reference))
    elif key_now != data_key:
      raise ValueError(f'{workdir}: data {key_now} differs from the first run\'s {data_key}')
    run = runs.describe_run(workdir, spec)
    run['process'] = spec.diffusion['process']
    key = jax.random.key(seed)
    for name, (task, features) in task_data.items():
      classes = None
      if kind == 'multi_domain':
        classes = (source_class(spec, name), target_class(spec))
      grid_rows = method_rows(kind, strengths, radii, structured,
                              sampler.process.ovg_branch is not None)
      shown = [('input', task.inputs[:8]), ('target', task.target[:8])]
      for setting in grid_rows:
        start = time.perf_counter()
        outputs, noise = translation.run_method(sampler, params, task.inputs, key, setting,
                                                batch_size, classes, spec.sample.guidance_scale)
        row = dict(run, task=name, kind=kind, setting=translation.setting_name(setting),
                   guidance_scale=spec.sample.guidance_scale if classes else None,
                   sample_steps=sampler.num_steps, **setting)
        row['sample_seconds'] = time.perf_counter() - start
        row.update(output_metrics(outputs, task, metric_key, features))
        if noise is not None:
          scale = prior_scale(sampler.process)
          row.update(noise_metrics(noise, task.inputs, scale))
          row['noise_maps'] = len(noise)
          spectra[name][f'{run["name"]} {setting["method"]}'] = np.asarray(
              collapse.radial_log_amplitude(jnp.asarray(noise / scale), average=True))
        logging.info('%s %s %s: grad_corr %.3f lowpass %.3f fd %.1f hf_tex %.2f', run['name'],
                     name, row['setting'], row['gradient_correlation'],
                     row['lowpass_structure_corr'], row['fd_vgg'], row['hf_texture_ratio'])
        rows.append(row)
        shown.append((_short(row), outputs[:8]))
      if out_dir:
        titles, arrays = zip(*shown)
        writers.save_png(os.path.join(out_dir, f'{run["name"]}_{name}.png'),
                         writers.image_grid(list(arrays), list(titles), upscale=2))
  rows += reference_rows(task_data, metric_key)
  summary = {'data': f'{data_key[0]}/{data_key[2]}@{data_key[1]}', 'num_inputs': num,
             'num_reference': num_reference,
             'seed': seed, 'tasks': list(tasks),
             'structure': {n: t.structure_source for n, (t, _) in task_data.items()},
             'rows': rows}
  if out_dir:
    report.write_study(out_dir, 'ovg_study', summary, markdown(rows))
    plot_frontier(rows, os.path.join(out_dir, 'frontier.png'))
    shape = next(iter(task_data.values()))[0].inputs.shape[1:]
    for name, curves in spectra.items():
      if curves:
        collapse.plot_radial_spectra(
            curves, os.path.join(out_dir, f'spectra_{name}.png'),
            title=f'{name}: inverted noise / prior std ({num} maps) vs N(0, I)',
            prior_shape=shape)
  return summary


def reference_rows(task_data: dict, key: jax.Array) -> list[dict]:
  """Per task: ground truth, mismatched ground truth and the input itself as outputs, and a
  ``gaussian`` noise row (N(0, I) maps of the inputs' shape and count through the diagnostics)."""
  rows = []
  for name, (task, features) in task_data.items():
    outputs = {'ground truth': task.target,
               'mismatched ground truth': np.roll(task.target, 1, axis=0),
               'input itself': task.inputs}
    for label, images in outputs.items():
      row = {'name': label, 'model': 'reference', 'task': name, 'method': 'reference',
             'setting': label}
      row.update(output_metrics(images, task, key, features))
      rows.append(row)
    gaussian = np.random.default_rng(0).standard_normal(task.inputs.shape).astype(np.float32)
    row = {'name': 'N(0, I)', 'model': 'reference', 'task': name, 'method': 'gaussian noise',
           'setting': 'N(0, I)', 'noise_maps': len(gaussian)}
    row.update(noise_metrics(gaussian, task.inputs, 1.0))
    rows.append(row)
  return rows


def _short(row: dict) -> str:
  """A grid column title short enough for a 64-pixel column (the run is in the file name)."""
  method = row['method']
  name = {'invert': 'inversion', 'ovg': 'OVG'}.get(method, method)
  if method == 'sdedit':
    name = f'SDE s={row["strength"]:g}'
  elif method == 'phipd':
    name = f'PD r={row["radius"]:g}'
  elif method == 'structured_sdedit':
    name = f'sSDE {row["radius"]:g}/{row["strength"]:g}'
  return name


TABLE_COLUMNS = (
    ('gradient_correlation', 'grad corr', '.3f'), ('edge_f', 'edge F', '.3f'),
    ('lowpass_structure_corr', 'LF corr', '.3f'), ('swd_mean', 'SWD', '.1f'),
    ('fd_vgg', 'FD-VGG', '.1f'), ('hf_texture_ratio', 'HF tex', '.2f'),
    ('noise_hf_power_ratio', 'noise HF', '.3f'), ('noise_lf_power_ratio', 'noise LF', '.2f'),
    ('noise_lag1_decorrelation', 'lag-1 dec', '.3f'),
    ('noise_pca_effective_rank', 'PCA rank', '.3f'))


def markdown(rows: Sequence[dict]) -> str:
  """One table per task: a row per (run, setting), the columns of :data:`TABLE_COLUMNS`."""
  columns = [('name', 'run', ''), ('setting', 'method', '')] + list(TABLE_COLUMNS)
  return report.grouped_tables(rows, 'task', columns)


def plot_frontier(rows: Sequence[dict], path: str, structure_key: str = 'gradient_correlation',
                  realism_key: str = 'fd_vgg') -> str:
  """The structure-texture frontier: one panel per task, structure (x, higher keeps more) against
  realism (y, ``fd_vgg``, lower is more photo-like), a marker per method family."""
  tasks = list(dict.fromkeys(row['task'] for row in rows))
  figure, axes = report.new_figure(1, len(tasks), (6.5 * len(tasks), 5.5))
  markers = {'sdedit': 'o', 'invert': 's', 'ovg': '*', 'phipd': '^', 'structured_sdedit': 'v',
             'reference': 'x'}
  for index, task in enumerate(tasks):
    axis = axes[0, index]
    series = {}
    for row in rows:
      if row['task'] != task or row.get(realism_key) is None:
        continue
      label = row['name'] if row['method'] == 'reference' else (
          f'{row.get("process", "")} {row["method"]}'.strip())
      series.setdefault((label, row['method']), []).append(
          (row[structure_key], row[realism_key], row))
    for (label, method), points in series.items():
      xs, ys, members = zip(*points)
      axis.plot(xs, ys, marker=markers.get(method, 'o'), linestyle='-' if len(xs) > 1 else '',
                label=label, markersize=9 if method == 'ovg' else 6)
      for x, y, row in points:
        if method in ('sdedit', 'structured_sdedit'):
          axis.annotate(f's={row["strength"]:g}', (x, y), fontsize=7)
        elif method == 'phipd':
          axis.annotate(f'r={row["radius"]:g}', (x, y), fontsize=7)
    axis.set_xlabel(f'structure: {structure_key} (higher keeps more)')
    axis.set_ylabel(f'realism: {realism_key} (lower is better)')
    axis.set_title(task)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
  return report.save_figure(figure, path)


def pca_study(workdir: str, *, num: int = 200, blocks: Sequence[int] = PCA_BLOCKS,
              batch_size: int = 100, seed: int = 0, steps: Optional[int] = None,
              path: Optional[str] = None) -> dict:
  """Fig. 3: PCA of the inverted noise of held-out photos downsampled x4, x8, x16.

  Each photo is nearest down- then up-sampled by the block, inverted (plain, deterministic)
  with the low-resolution class of the multi-domain run ``workdir`` (the ``down8`` task's
  source class), and the ``num`` maps' cumulative explained variance is compared with N(0, I)
  maps of the same count and shape.

  Returns:
    ``{'curves': {name: [min(M, d)] list}, 'effective_rank': {name: float}}``; the plot goes to
    ``path`` when given.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from phipd_jax.evaluation import runs  # pylint: disable=g-import-not-at-top
  spec, sampler, params = runs.load(workdir, steps)
  photos, _ = pipeline.held_out_inputs(spec.data, 'photo', num)
  label = source_class(spec, 'down8')
  key = jax.random.key(seed)
  curves, ranks = {}, {}
  for block in blocks:
    inputs = pipeline.down_up(photos, block)
    maps = []
    for start in range(0, len(inputs), batch_size):
      maps.append(np.asarray(sampler.invert_source(
          params, jnp.asarray(inputs[start:start + batch_size]), jax.random.fold_in(key, start),
          'invert', label)))
    maps = np.concatenate(maps)
    curves[f'x{block} source, inverted'] = np.asarray(collapse.pca_cumulative_variance(maps))
    ranks[f'x{block} source, inverted'] = float(collapse.pca_effective_rank(maps))
  gaussian = np.random.default_rng(seed).standard_normal(photos.shape).astype(np.float32)
  curves['N(0, I)'] = np.asarray(collapse.pca_cumulative_variance(gaussian))
  ranks['N(0, I)'] = float(collapse.pca_effective_rank(gaussian))
  if path:
    figure, axes = report.new_figure()
    axis = axes[0, 0]
    for name, curve in curves.items():
      axis.plot(np.arange(1, len(curve) + 1), curve,
                'k--' if name == 'N(0, I)' else '-', label=f'{name} (rank {ranks[name]:.3f})')
    axis.set_xlabel('principal components')
    axis.set_ylabel('cumulative explained variance')
    axis.set_title(f'{len(photos)} inverted noise maps ({os.path.basename(workdir)}, '
                   f'class {label})')
    axis.grid(True, alpha=0.3)
    axis.legend()
    report.save_figure(figure, path)
  return {'curves': {k: v.tolist() for k, v in curves.items()}, 'effective_rank': ranks}


SWEEP_SOURCES = ('photo', 'x4', 'x8', 'x16', 'edges')  # Dense to sparse, then the edge map.


def sweep_inputs(data_config, source: str, photos: np.ndarray, num: int) -> np.ndarray:
  """The held-out inputs of one :data:`SWEEP_SOURCES` source, ``[num, S, S, 3]`` in [-1, 1]:
  the photos themselves, their ``xB`` nearest down-up-sampled copies, or the edge maps.

  Raises:
    ValueError: an unknown source.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if source == 'photo':
    return photos
  if source == 'edges':
    return pipeline.held_out_inputs(data_config, 'edges', num)[0]
  if source.startswith('x') and source[1:].isdigit():
    return pipeline.down_up(photos, int(source[1:]))
  raise ValueError(f'source sweep: source must be one of {SWEEP_SOURCES}, got {source!r}')


def sweep_class(spec, source: str) -> int:
  """The class a multi-domain run gives ``source``: the photo class, its down-sampled class
  (every ``xB``, as the OVG code inverts every sparse source with one class), or the edge-map
  class."""
  if source == 'photo':
    return target_class(spec)
  return source_class(spec, 'edges' if source == 'edges' else 'down8')


def correlations(per_map: dict[str, np.ndarray], x_key: str = 'source_decorrelation',
                 y_keys: Sequence[str] = ('noise_hf_power_ratio', 'hf_texture_ratio',
                                          'lowpass_structure_corr')) -> dict[str, dict]:
  """Fig. 4 of Bourriez et al. (arXiv:2602.13303) as numbers: Pearson and Spearman correlation
  of ``per_map[x_key]`` with each ``per_map[y]`` over every map (all sources pooled).

  Args:
    per_map: equal-length 1-D arrays, one value per inverted map.

  Returns:
    ``{y: {'pearson': float, 'spearman': float, 'count': int}}``; NaN where a column is
    constant.
  """
  import scipy.stats  # pylint: disable=g-import-not-at-top
  x = np.asarray(per_map[x_key], np.float64)
  result = {}
  for y_key in y_keys:
    y = np.asarray(per_map[y_key], np.float64)
    if y.shape != x.shape:
      raise ValueError(f'correlations: {y_key} has {y.shape}, {x_key} has {x.shape}')
    constant = np.ptp(x) == 0 or np.ptp(y) == 0
    result[y_key] = {
        'pearson': float('nan') if constant else float(scipy.stats.pearsonr(x, y)[0]),
        'spearman': float('nan') if constant else float(scipy.stats.spearmanr(x, y)[0]),
        'count': int(len(x))}
  return result


def source_sweep(workdir: str, *, sources: Sequence[str] = SWEEP_SOURCES, num: int = 200,
                 batch_size: int = 100, seed: int = 0, steps: Optional[int] = None,
                 num_reference: int = REFERENCE_PHOTOS) -> dict:
  """Spectral collapse against source sparsity for one multi-domain run (Figs. 3 and 4).

  Each source (:data:`SWEEP_SOURCES`: held-out photos, their x4 / x8 / x16 nearest down-up
  copies, the edge maps) is inverted deterministically with its class (:func:`sweep_class`) and
  the inverted noise sampled with the photo class (plain inversion, the run's guidance scale).
  Per map: the noise's ``hf_power_ratio``, ``lf_power_ratio`` (on ``x_T / s``, ``s`` the prior
  std), ``lag1_decorrelation`` and ``source_decorrelation`` (S_DC, ``1 - |Pearson(x_T,
  x_src)|``), the output's ``hf_texture_ratio`` (against ``num_reference`` training photos) and
  ``lowpass_structure_corr`` with the source (S_LF). Per source: the means and the PCA
  effective rank of its maps (Fig. 3), beside the Marchenko-Pastur reference of N(0, I) maps.
  Pooled over sources: :func:`correlations` of S_DC with the noise HF ratio, the output HF
  texture and S_LF (Fig. 4).

  Returns:
    ``{'run', 'process', 'prediction', 'num', 'sources': {source: {means..., 'pca_effective_rank',
    'class'}}, 'gaussian_pca_effective_rank', 'correlations', 'per_map': {key: list}}``.

  Raises:
    ValueError: ``workdir`` is not a multi-domain run with photo, down-sampled and edge classes.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from phipd_jax.evaluation import runs  # pylint: disable=g-import-not-at-top
  spec, sampler, params = runs.load(workdir, steps)
  photos, _ = pipeline.held_out_inputs(spec.data, 'photo', num)
  reference = jnp.asarray(pipeline.eval_images(spec.data, spec.data.train_split,
                                               spec.data.image_key, num_reference))
  classes = {source: sweep_class(spec, source) for source in sources}  # Fails early.
  scale = prior_scale(sampler.process)
  key = jax.random.key(seed)
  per_source, per_map = {}, {}
  for source in sources:
    inputs = sweep_inputs(spec.data, source, photos, num)
    setting = {'method': 'invert', 'radius': None, 'strength': 1.0}
    outputs, noise = translation.run_method(
        sampler, params, inputs, key, setting, batch_size,
        (classes[source], target_class(spec)), spec.sample.guidance_scale)
    values = {
        'noise_hf_power_ratio': collapse.hf_power_ratio(jnp.asarray(noise), scale),
        'noise_lf_power_ratio': collapse.lf_power_ratio(jnp.asarray(noise), scale),
        'noise_lag1_decorrelation': collapse.lag1_decorrelation(jnp.asarray(noise)),
        'source_decorrelation': collapse.source_decorrelation(jnp.asarray(noise),
                                                              jnp.asarray(inputs)),
        'hf_texture_ratio': collapse.hf_texture_ratio(jnp.asarray(outputs), reference),
        'lowpass_structure_corr': collapse.lowpass_structure_corr(jnp.asarray(outputs),
                                                                  jnp.asarray(inputs)),
    }
    values = {name: np.asarray(value, np.float64) for name, value in values.items()}
    summary = {name: float(np.mean(value)) for name, value in values.items()}
    summary['pca_effective_rank'] = float(collapse.pca_effective_rank(noise))
    summary['class'] = classes[source]
    per_source[source] = summary
    for name, value in values.items():
      per_map.setdefault(name, []).extend(value.tolist())
    per_map.setdefault('source', []).extend([source] * len(inputs))
    logging.info('%s %s: %s', os.path.basename(workdir), source, summary)
  return {
      'run': os.path.basename(os.path.normpath(workdir)), 'process': spec.diffusion['process'],
      'prediction': spec.diffusion['prediction'], 'num': int(len(photos)),
      'sources': per_source,
      'gaussian_pca_effective_rank': collapse.gaussian_pca_effective_rank(
          len(photos), int(np.prod(photos.shape[1:]))),
      'correlations': correlations({k: np.asarray(v) for k, v in per_map.items()
                                    if k != 'source'}),
      'per_map': per_map,
  }


SWEEP_COLUMNS = (('noise_hf_power_ratio', 'noise HF', '.3f'),
                 ('noise_lf_power_ratio', 'noise LF', '.2f'),
                 ('noise_lag1_decorrelation', 'lag-1 dec', '.3f'),
                 ('source_decorrelation', 'S_DC', '.3f'),
                 ('pca_effective_rank', 'PCA rank', '.3f'),
                 ('hf_texture_ratio', 'HF tex', '.2f'),
                 ('lowpass_structure_corr', 'S_LF', '.3f'))


def sweep_markdown(sweeps: Sequence[dict]) -> str:
  """One table per run (a row per source) and the Fig. 4 correlations."""
  lines = []
  for sweep in sweeps:
    lines += [f'### {sweep["run"]} ({sweep["process"]}, {sweep["prediction"]} target, '
              f'{sweep["num"]} maps per source; N(0, I) PCA rank '
              f'{sweep["gaussian_pca_effective_rank"]:.3f})', '',
              '| source | ' + ' | '.join(title for _, title, _ in SWEEP_COLUMNS) + ' |',
              '|---|' + '---:|' * len(SWEEP_COLUMNS)]
    for source, row in sweep['sources'].items():
      lines.append(f'| {source} | ' + ' | '.join(
          format(row[key], fmt) for key, _, fmt in SWEEP_COLUMNS) + ' |')
    lines.append('')
    lines.append('Fig. 4, S_DC against (pooled over sources, Pearson / Spearman): ' + '; '.join(
        f'{key} {value["pearson"]:.3f} / {value["spearman"]:.3f}'
        for key, value in sweep['correlations'].items()))
    lines.append('')
  return '\n'.join(lines)
