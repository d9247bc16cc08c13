"""Evaluation runs over trained workdirs: generation metrics and the translation study.

The logic behind ``evaluate.py`` (its command-line face). Generation: samples from Gaussian
noise against the run's held-out split (SWD per pyramid level, spectrum distance, high-frequency
share), with reference rows. Translation: the method grid of
:mod:`phipd_jax.evaluation.translation` on every run and task.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

from absl import logging
from flax import nnx
import jax
import numpy as np
import tqdm

from phipd_jax import models, saved_run, writers
from phipd_jax.data import pipeline
from phipd_jax.evaluation import distribution, spectra, translation
from phipd_jax.evaluation import fid_data, inception, perceptual, report

METRICS = ('swd_64', 'swd_32', 'swd_16', 'swd_mean', 'spectrum_distance', 'high_frequency_share')


def load(workdir: str, steps: Optional[int] = None, checkpoint_step: Optional[int] = None):
  """``(spec, sampler, ema_params)`` of a run's latest checkpoint, or of training step
  ``checkpoint_step`` (EMA item only); ``spec`` is the run's :class:`phipd_jax.specs.RunSpec`;
  ``steps`` overrides the sampler's step count."""
  _, exp, restored = saved_run.load_run(workdir, ('ema_params',), steps, step=checkpoint_step)
  return exp.spec, exp.sampler(), restored['ema_params']


def image_metrics(images: np.ndarray, reference: np.ndarray, key: jax.Array) -> dict:
  """Every metric of ``images`` against ``reference`` (both ``[N, S, S, 3]`` in [-1, 1])."""
  result = distribution.swd(images, reference, key)
  spectrum = spectra.radial_power_spectrum(images)
  result['spectrum_distance'] = spectra.spectrum_distance(
      spectrum, spectra.radial_power_spectrum(reference))
  result['high_frequency_share'] = spectra.high_frequency_share(spectrum)
  return result


def describe_run(workdir: str, spec) -> dict:
  """Identifying fields of a run: model, patch, Spectral Forcing, budget, last logged loss."""
  rows = writers.read_metrics(workdir) if os.path.exists(
      os.path.join(workdir, 'metrics.jsonl')) else []
  losses = [r for r in rows if 'loss' in r]
  model = spec.model
  return {
      'name': os.path.basename(os.path.normpath(workdir)),
      'workdir': workdir,
      'model': f"{model['name']}-{model['size']}/{model.get('patch_size')}",
      'patch_size': model.get('patch_size'),
      'spectral_forcing': (model.get('spectral_forcing') or {}).get('schedule') or 'off',
      'noise': spec.noise.kind,
      'train_steps': spec.train.num_steps,
      'batch_size': spec.train.batch_size,
      'final_train_loss': losses[-1]['loss'] if losses else None,
      'sampler': f'{spec.sample.sampler} x {spec.sample.num_steps}',
  }

def generate(sampler, params, spec, num: int, batch_size: int, seed: int,
             class_balanced: bool = False, progress: Optional[str] = None) -> np.ndarray:
  """``num`` samples ``[num, S, S, 3]`` in ``[-1, 1]`` from Gaussian noise, batch ``i``'s key
  ``fold_in(key(seed), i * batch_size)``.

  ``class_balanced``: for a class-conditional run, sample ``i`` gets class ``i % num_classes``
  with the run's ``sample.guidance_scale`` (unconditional runs ignore it); else no labels.
  ``progress``: a progress-bar label (None: no bar).
  """
  size = spec.data.image_size
  conditional = class_balanced and sampler.null_label is not None
  batches = []
  for start in tqdm.tqdm(range(0, num, batch_size), desc=progress, disable=progress is None,
                         dynamic_ncols=True):
    key = jax.random.fold_in(jax.random.key(seed), start)
    count = min(batch_size, num - start)
    labels = None
    if conditional:
      labels = jax.numpy.asarray(np.arange(start, start + count) % sampler.null_label, np.int32)
    kwargs = {'labels': labels, 'guidance_scale': spec.sample.guidance_scale} if conditional else {}
    batches.append(np.asarray(sampler.generate(params, key, (count, size, size, 3), **kwargs)))
  return np.clip(np.concatenate(batches), -1.0, 1.0)


GENERATION_COLUMNS = tuple((key, key, '.3g') for key in (
    'name', 'model', 'spectral_forcing', 'train_steps', 'final_train_loss', 'swd_64', 'swd_32',
    'swd_16', 'swd_mean', 'spectrum_distance', 'high_frequency_share', 'sample_seconds'))
FID_COLUMNS = (('num_samples', 'N', 'd'), ('fid', 'FID (N)', '.2f'), ('kid_mean', 'KID', '.4f'),
               ('kid_std', 'KID std', '.4f'), ('is_mean', 'IS', '.3g'),
               ('precision', 'precision', '.3f'), ('recall', 'recall', '.3f'))


def grid_title(setting: dict) -> str:
  """A column title that fits a 64-pixel column: 'PD r=4', 'sSDE s=.6', 'SDE s=.6', 'uncond'."""
  strength = f'{setting["strength"]:g}'.lstrip('0')
  if setting['method'] == 'phipd':
    return f'PD r={setting["radius"]:g}'
  return {'structured_sdedit': f'sSDE s={strength}', 'sdedit': f'SDE s={strength}',
          'generate': 'uncond'}[setting['method']]

def evaluate_translation(workdirs: Sequence[str], *, tasks: Sequence[str], num: int,
                         radii: Sequence[float], structured_radii: Sequence[float],
                         strengths: Sequence[float], batch_size: int = 64, seed: int = 0,
                         steps: Optional[int] = None, json_path: Optional[str] = None,
                         grids: Optional[str] = None, eval_dir: Optional[str] = None) -> dict:
  """The translation study: every method of the grid on every run and task; returns the JSON
  summary (written to ``json_path`` too) with one row per (run, task, method, setting) and the
  reference rows per task. ``eval_dir``: evaluate on that folder (an AB folder or photos)
  instead of the runs' held-out split; it is recorded in the summary."""
  grid = translation.method_grid([float(r) for r in radii],
                                 [float(r) for r in structured_radii],
                                 [float(s) for s in strengths])
  metric_key = jax.random.key(seed + 1)
  task_names, rows, tasks, data_config = list(tasks), [], {}, None
  for workdir in workdirs:
    spec, sampler, params = load(workdir, steps)
    if data_config is None:
      data_config = spec.data
      for name in task_names:
        task = translation.load_task(data_config, name, num,
                                     spec.sample.flat_shade_segments, eval_dir)
        tasks[name] = (task, perceptual.vgg_features(task.reference))
        logging.info('task %s: %d inputs, %d reference photos, structure = %s', name,
                     len(task.inputs), len(task.reference), task.structure_source)
    elif (spec.data.name, spec.data.image_size) != (data_config.name,
                                                        data_config.image_size):
      raise ValueError(f'{workdir}: data {spec.data.name}@{spec.data.image_size} differs '
                       f'from the first run\'s; evaluate them separately')
    run = describe_run(workdir, spec)
    run['r0'] = spec.noise.r0 if spec.noise.kind != 'gaussian' else None
    run['init_from'] = os.path.basename(os.path.normpath(spec.top.init_from)) or None
    key = jax.random.key(seed)
    for name, (task, features) in tasks.items():
      shown = [('input', task.inputs[:8]), ('target', task.target[:8])]
      for setting in grid:
        start = time.perf_counter()
        outputs, _ = translation.run_method(sampler, params, task.inputs, key, setting,
                                            batch_size)
        seconds = time.perf_counter() - start
        row = dict(run, task=name, setting=translation.setting_name(setting), **setting)
        row.update(translation.metrics(outputs, task, metric_key, features))
        row['sample_seconds'] = seconds
        logging.info('%s %s %s: edge_f %.3f grad_corr %.3f lpips_input %.3f swd %.1f fd %.1f',
                     run['name'], name, row['setting'], row['edge_f'],
                     row['gradient_correlation'], row['lpips_input'], row['swd_mean'],
                     row['fd_vgg'])
        rows.append(row)
        shown.append((grid_title(setting), outputs[:8]))
      if grids:
        titles, arrays = zip(*shown)
        writers.save_png(os.path.join(grids, f'{run["name"]}_{name}.png'),
                         writers.image_grid(list(arrays), list(titles), upscale=2))

  train_photos = pipeline.eval_images(data_config, data_config.train_split,
                                      data_config.image_key, 256)
  mean_photo = train_photos.mean(axis=0, keepdims=True)
  for name, (task, features) in tasks.items():
    for label, outputs in translation.reference_outputs(task, mean_photo).items():
      row = {'name': label, 'model': 'reference', 'task': name, 'method': 'reference',
             'setting': label}
      row.update(translation.metrics(outputs, task, metric_key, features))
      rows.append(row)
  where = eval_dir or f'{data_config.name}/{data_config.eval_split}'
  summary = {'data': f'{where}@{data_config.image_size}', 'eval_dir': eval_dir,
             'num_inputs': num, 'seed': seed,
             'structure': {n: t.structure_source for n, (t, _) in tasks.items()},
             'reference_images': {n: len(t.reference) for n, (t, _) in tasks.items()},
             'rows': rows}
  if json_path:
    report.write_json(json_path, summary)
  return summary


def evaluate_generation(workdirs: Sequence[str], *, num: int, batch_size: int = 64,
                        seed: int = 0, steps: Optional[int] = None,
                        json_path: Optional[str] = None, markdown: Optional[str] = None,
                        grids: Optional[str] = None, eval_dir: Optional[str] = None,
                        fid_weights: Optional[str] = None) -> dict:
  """Unconditional samples of every run against its held-out split (or the photos of
  ``eval_dir``, an AB folder's left halves or a photo folder), plus reference rows;
  returns the JSON summary (and writes it, the markdown table and the grids when asked).

  ``fid_weights``: the FID Inception weights file; when given (loaded and checked before any
  sampling), every row also gets ``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``,
  ``precision`` and ``recall`` against the held-out images, with ``num_samples`` beside them.
  """
  metric_key = jax.random.key(seed + 1)
  net = inception.extractor(fid_weights) if fid_weights else None
  rows, reference, reference_config, reference_features = [], None, None, None
  for workdir in workdirs:
    spec, sampler, params = load(workdir, steps)
    if reference is None:
      reference_config = spec.data
      if eval_dir:
        reference = translation.folder_images(eval_dir, spec.data.image_size)[0]
      else:
        reference = pipeline.eval_images(spec.data, spec.data.eval_split,
                                         spec.data.image_key, 10**9)
      logging.info('held-out reference: %d images of %s/%s', len(reference), spec.data.name,
                   spec.data.eval_split)
      if net is not None:
        reference_features = inception.features(net, [writers.to_uint8(reference)], batch_size)
    elif (spec.data.name, spec.data.image_size) != (reference_config.name,
                                                         reference_config.image_size):
      raise ValueError(f'{workdir}: data {spec.data.name}@{spec.data.image_size} differs '
                       f'from the first run\'s {reference_config.name}@'
                       f'{reference_config.image_size}; evaluate them separately')
    row = describe_run(workdir, spec)
    row['params'] = models.count_parameters(nnx.merge(sampler.graphdef, params))
    start = time.perf_counter()
    samples = generate(sampler, params, spec, num, batch_size, seed)
    row['sample_seconds'] = time.perf_counter() - start
    row['num_samples'] = len(samples)
    row.update(image_metrics(samples, reference, metric_key))
    if net is not None:
      row.update(fid_data.score_samples(net, samples, reference_features, batch_size))
    logging.info('%s: %s', row['name'], {k: row[k] for k in METRICS if k in row})
    print(json.dumps(row), flush=True)
    rows.append(row)
    if grids:
      writers.save_png(os.path.join(grids, f'{row["name"]}.png'),
                       writers.sample_grid(samples[:64], upscale=1))

  # Reference rows on the same metric key (same descriptors' random positions and directions).
  train_photos = pipeline.eval_images(reference_config, reference_config.train_split,
                                      reference_config.image_key, num)
  mean_photo = np.broadcast_to(train_photos.mean(axis=0, keepdims=True), train_photos.shape)
  for name, images in (('train photos', train_photos), ('mean photo', mean_photo)):
    row = {'name': name, 'model': 'reference', 'num_samples': len(images)}
    row.update(image_metrics(np.array(images), reference, metric_key))
    if net is not None and name == 'train photos':
      row.update(fid_data.score_samples(net, np.array(images), reference_features, batch_size))
    rows.append(row)
  held_out = spectra.radial_power_spectrum(reference)
  summary = {'reference': eval_dir or f'{reference_config.name}/{reference_config.eval_split}',
             'eval_dir': eval_dir,
             'reference_images': len(reference),
             'reference_high_frequency_share': spectra.high_frequency_share(held_out),
             'seed': seed, 'rows': rows}
  if net is not None:
    summary['fid_weights_sha256'] = net.weights_sha256
  if json_path:
    report.write_json(json_path, summary)
  columns = GENERATION_COLUMNS + (FID_COLUMNS if net is not None else ())
  table = report.markdown_table(rows, columns)
  if markdown:
    report.write_text(markdown, table)
  print(table)
  return summary
