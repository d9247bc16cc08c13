r"""Evaluates trained runs: unconditional samples against held-out photos.

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
from phipd_jax.data import pipeline

_WORKDIRS = flags.DEFINE_multi_string('workdirs', None, 'Run directories (train.py).')
_NUM = flags.DEFINE_integer('num', 256, 'Samples per run.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Samples per compiled batch.')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: each run\'s config).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling and metric seed (the same for every run).')
_JSON = flags.DEFINE_string('json', None, 'Write the rows here.')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Write a markdown table here.')
_GRIDS = flags.DEFINE_string('grids', None, 'Folder for <run>.png sample grids.')
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


def main(argv):
  del argv
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
    logging.info('%s: %s', row['name'], {k: row[k] for k in METRICS})
    print(json.dumps(row), flush=True)
    rows.append(row)
    if _GRIDS.value:
      shown = samples[:64]
      side = int(np.ceil(np.sqrt(len(shown))))
      padded = np.concatenate([shown, np.ones((side * side - len(shown),) + shown.shape[1:])])
      size = shown.shape[1]
      grid = writers.image_grid(list(padded.reshape(side, side, size, size, 3)))
      writers.save_png(os.path.join(_GRIDS.value, f'{row["name"]}.png'), grid)

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
