r"""Evaluates trained runs: unconditional samples (``--mode generate``) or the translation study.

``--mode generate`` (default): unconditional samples against held-out photos.

  python evaluate.py --workdirs runs/jit_sf/p16 runs/jit_sf/p16_sf --num 256 \
      --json docs/results/jit_sf.json --markdown docs/results/jit_sf.md --grids docs/results/jit_sf

For every run (its latest checkpoint's EMA parameters and its own sampler settings): ``--num``
samples from Gaussian noise with a fixed seed, compared with the run's held-out split
(``data.eval_split``, never seen in training) by

* ``swd_<side>`` / ``swd_mean``: sliced Wasserstein distance x 1e3 on Laplacian-pyramid patches
  (Karras et al. 2018; lower is better), per level and averaged;
* ``spectrum_distance``: mean |log10| ratio of radially averaged power spectra (decades);
* ``high_frequency_share``: share of power above half the Nyquist radius (vs the held-out value).

Reference rows on the same descriptors and directions: ``train photos`` (real vs real: the floor
at this sample size) and ``mean photo`` (every sample the mean training photo: a poor generator).
One JSON row per (run, metric set); a markdown table; a PNG grid of the first 64 samples per run.

``--mode translate``: the structure-vs-appearance study (``phipd_jax.evaluation.translation``)::

  python evaluate.py --mode translate --workdirs runs/study/gaussian runs/study/fss0 \
      --tasks photo,flat_shaded,edges --num 100 --json docs/results/phipd_study.json \
      --grids docs/results/phipd_study

For every run and task: phi-PD from noise at ``--radii``, structured SDEdit at
``--structured_radii x --strengths``, SDEdit at ``--strengths`` and unconditional samples, all
with one key; one JSON row per (run, task, method, setting) with every metric, plus reference
rows per task (ground truth, mismatched ground truth, input itself, mean photo) and a grid per
(run, task). Plots and tables: ``scripts/phipd_study_report.py``.
"""

import json
import os
import time

from absl import app, flags, logging
from flax import nnx
import jax
import numpy as np

from configs import common
from phipd_jax import evaluation, models, sampling, writers
from phipd_jax.evaluation import translation
from phipd_jax.data import pipeline

_WORKDIRS = flags.DEFINE_multi_string('workdirs', None, 'Run directories (train.py).')
_NUM = flags.DEFINE_integer('num', 256, 'Samples per run.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Samples per compiled batch.')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: each run\'s config).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling and metric seed (the same for every run).')
_JSON = flags.DEFINE_string('json', None, 'Write the rows here.')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Write a markdown table here.')
_GRIDS = flags.DEFINE_string('grids', None, 'Folder for <run>.png sample grids.')
_MODE = flags.DEFINE_enum('mode', 'generate', ['generate', 'translate'], 'What to evaluate.')
_TASKS = flags.DEFINE_list('tasks', ['photo', 'flat_shaded', 'edges'], 'Translate: tasks.')
_RADII = flags.DEFINE_list('radii', ['2', '4', '8', '16'], 'Translate: phi-PD radii.')
_STRUCTURED_RADII = flags.DEFINE_list('structured_radii', ['4'],
                                      'Translate: structured SDEdit radii.')
_STRENGTHS = flags.DEFINE_list('strengths', ['0.4', '0.6', '0.8'],
                               'Translate: SDEdit and structured SDEdit strengths.')
flags.mark_flag_as_required('workdirs')

METRICS = ('swd_64', 'swd_32', 'swd_16', 'swd_mean', 'spectrum_distance', 'high_frequency_share')


def image_metrics(images: np.ndarray, reference: np.ndarray, key: jax.Array) -> dict:
  """Every metric of ``images`` against ``reference`` (both ``[N, S, S, 3]`` in [-1, 1])."""
  result = evaluation.swd(images, reference, key)
  spectrum = evaluation.radial_power_spectrum(images)
  result['spectrum_distance'] = evaluation.spectrum_distance(
      spectrum, evaluation.radial_power_spectrum(reference))
  result['high_frequency_share'] = evaluation.high_frequency_share(spectrum)
  return result


def describe_run(workdir: str, config) -> dict:
  """Identifying fields of a run: model, patch, Spectral Forcing, budget, last logged loss."""
  rows = writers.read_metrics(workdir) if os.path.exists(
      os.path.join(workdir, 'metrics.jsonl')) else []
  losses = [r for r in rows if 'loss' in r]
  model = config.model
  return {
      'name': os.path.basename(os.path.normpath(workdir)),
      'workdir': workdir,
      'model': f'{model.name}-{model.size}/{model.patch_size}',
      'patch_size': model.patch_size,
      'spectral_forcing': model.spectral_forcing.schedule or 'off',
      'noise': config.noise.kind,
      'train_steps': config.train.num_steps,
      'batch_size': config.train.batch_size,
      'final_train_loss': losses[-1]['loss'] if losses else None,
      'sampler': f'{config.sample.sampler} x {config.sample.num_steps}',
  }


def generate(sampler, params, config, num: int, batch_size: int, seed: int) -> np.ndarray:
  size = config.data.image_size
  batches = []
  for start in range(0, num, batch_size):
    key = jax.random.fold_in(jax.random.key(seed), start)
    count = min(batch_size, num - start)
    batches.append(np.asarray(sampler.generate(params, key, (size, size, 3), num=count)))
  return np.clip(np.concatenate(batches), -1.0, 1.0)


def markdown_table(rows: list[dict]) -> str:
  columns = ['name', 'model', 'spectral_forcing', 'train_steps', 'final_train_loss', 'swd_64',
             'swd_32', 'swd_16', 'swd_mean', 'spectrum_distance', 'high_frequency_share',
             'sample_seconds']
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  for row in rows:
    cells = []
    for column in columns:
      value = row.get(column)
      cells.append('' if value is None else f'{value:.3g}' if isinstance(value, float)
                   else str(value))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def grid_title(setting: dict) -> str:
  """A column title that fits a 64-pixel column: 'PD r=4', 'sSDE s=.6', 'SDE s=.6', 'uncond'."""
  strength = f'{setting["strength"]:g}'.lstrip('0')
  if setting['method'] == 'phipd':
    return f'PD r={setting["radius"]:g}'
  return {'structured_sdedit': f'sSDE s={strength}', 'sdedit': f'SDE s={strength}',
          'generate': 'uncond'}[setting['method']]


def translate_main():
  """``--mode translate``: the method grid on every run and task (module docstring)."""
  grid = translation.method_grid([float(r) for r in _RADII.value],
                                 [float(r) for r in _STRUCTURED_RADII.value],
                                 [float(s) for s in _STRENGTHS.value])
  metric_key = jax.random.key(_SEED.value + 1)
  rows, tasks, data_config = [], {}, None
  for workdir in _WORKDIRS.value:
    config, sampler, params = sampling.load_run(workdir, common.get_base_config(), _STEPS.value)
    if data_config is None:
      data_config = config.data
      for name in _TASKS.value:
        task = translation.load_task(data_config, name, _NUM.value,
                                     config.sample.flat_shade_segments)
        tasks[name] = (task, evaluation.vgg_features(task.reference))
        logging.info('task %s: %d inputs, %d reference photos, structure = %s', name,
                     len(task.inputs), len(task.reference), task.structure_source)
    elif (config.data.name, config.data.image_size) != (data_config.name,
                                                        data_config.image_size):
      raise ValueError(f'{workdir}: data {config.data.name}@{config.data.image_size} differs '
                       f'from the first run\'s; evaluate them separately')
    run = describe_run(workdir, config)
    run['r0'] = config.noise.r0 if config.noise.kind != 'gaussian' else None
    run['init_from'] = os.path.basename(os.path.normpath(config.init_from)) or None
    key = jax.random.key(_SEED.value)
    for name, (task, features) in tasks.items():
      shown = [('input', task.inputs[:8]), ('target', task.target[:8])]
      for setting in grid:
        start = time.perf_counter()
        outputs = translation.run_method(sampler, params, task.inputs, key, setting,
                                         _BATCH.value)
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
      if _GRIDS.value:
        titles, arrays = zip(*shown)
        writers.save_png(os.path.join(_GRIDS.value, f'{run["name"]}_{name}.png'),
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
  summary = {'data': f'{data_config.name}/{data_config.eval_split}@{data_config.image_size}',
             'num_inputs': _NUM.value, 'seed': _SEED.value,
             'structure': {n: t.structure_source for n, (t, _) in tasks.items()},
             'reference_images': {n: len(t.reference) for n, (t, _) in tasks.items()},
             'rows': rows}
  if _JSON.value:
    os.makedirs(os.path.dirname(_JSON.value) or '.', exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(summary, f, indent=1)


def main(argv):
  del argv
  if _MODE.value == 'translate':
    translate_main()
    return
  metric_key = jax.random.key(_SEED.value + 1)
  rows, reference, reference_config = [], None, None
  for workdir in _WORKDIRS.value:
    config, sampler, params = sampling.load_run(workdir, common.get_base_config(), _STEPS.value)
    if reference is None:
      reference_config = config.data
      reference = pipeline.eval_images(config.data, config.data.eval_split, config.data.image_key,
                                       10**9)
      logging.info('held-out reference: %d images of %s/%s', len(reference), config.data.name,
                   config.data.eval_split)
    elif (config.data.name, config.data.image_size) != (reference_config.name,
                                                         reference_config.image_size):
      raise ValueError(f'{workdir}: data {config.data.name}@{config.data.image_size} differs '
                       f'from the first run\'s {reference_config.name}@'
                       f'{reference_config.image_size}; evaluate them separately')
    row = describe_run(workdir, config)
    row['params'] = models.count_parameters(nnx.merge(sampler.graphdef, params))
    start = time.perf_counter()
    samples = generate(sampler, params, config, _NUM.value, _BATCH.value, _SEED.value)
    row['sample_seconds'] = time.perf_counter() - start
    row['num_samples'] = len(samples)
    row.update(image_metrics(samples, reference, metric_key))
    logging.info('%s: %s', row['name'], {k: row[k] for k in METRICS if k in row})
    print(json.dumps(row), flush=True)
    rows.append(row)
    if _GRIDS.value:
      writers.save_png(os.path.join(_GRIDS.value, f'{row["name"]}.png'),
                       writers.sample_grid(samples[:64], upscale=1))

  # Reference rows on the same metric key (same descriptors' random positions and directions).
  train_photos = pipeline.eval_images(reference_config, reference_config.train_split,
                                      reference_config.image_key, _NUM.value)
  mean_photo = np.broadcast_to(train_photos.mean(axis=0, keepdims=True), train_photos.shape)
  for name, images in (('train photos', train_photos), ('mean photo', mean_photo)):
    row = {'name': name, 'model': 'reference', 'num_samples': len(images)}
    row.update(image_metrics(np.array(images), reference, metric_key))
    rows.append(row)
  held_out = evaluation.radial_power_spectrum(reference)
  summary = {'reference': f'{reference_config.name}/{reference_config.eval_split}',
             'reference_images': len(reference),
             'reference_high_frequency_share': evaluation.high_frequency_share(held_out),
             'seed': _SEED.value, 'rows': rows}
  if _JSON.value:
    os.makedirs(os.path.dirname(_JSON.value) or '.', exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(summary, f, indent=1)
  table = markdown_table(rows)
  if _MARKDOWN.value:
    with open(_MARKDOWN.value, 'w') as f:
      f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
