r"""Trains a diffusion model with structured (phi-PD / FSS) or Gaussian noise.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python train.py --config configs/edges2shoes_phipd.py --workdir runs/e2s \
      --config.train.num_steps=2000

Kill and rerun the same command at will: it resumes from the last checkpoint in --workdir.
Outputs in --workdir: checkpoints/, config.json, metrics.jsonl, tb/ (TensorBoard),
samples/generate_<step>.png and samples/translate_<step>.png at every checkpoint.
"""

import os
import time
from typing import Optional

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags
import tqdm

from phipd_jax import checkpoint, sampling, sharding, training, writers
from phipd_jax.data import pipeline

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, samples).')
_STOP_AFTER = flags.DEFINE_integer(
    'stop_after', None, 'Stop (with a checkpoint) after this many steps of this invocation; '
    'for time-sliced jobs. Rerun the same command to continue.')
flags.mark_flags_as_required(['config', 'workdir'])


def write_samples(config, sampler, params, step: int, workdir: str, translation) -> list[str]:
  """Generation grid and the fixed translation grid of this step; returns the PNG paths."""
  key = jax.random.key(config.seed + 1)  # The same noise at every checkpoint: comparable grids.
  size = config.data.image_size
  labels = None
  if config.model.num_classes:
    labels = jnp.arange(config.sample.num_generate, dtype=jnp.int32) % config.model.num_classes
  samples = sampler.generate(params, key, (size, size, 3), num=config.sample.num_generate,
                             labels=labels, guidance_scale=config.sample.guidance_scale)
  samples = np.asarray(samples)
  rows = int(np.ceil(np.sqrt(len(samples))))
  padded = np.concatenate([samples, np.ones((rows * rows - len(samples),) + samples.shape[1:])])
  grid = writers.image_grid(list(padded.reshape(rows, rows, size, size, 3)), upscale=2)
  sample_dir = os.path.join(workdir, 'samples')
  paths = [os.path.join(sample_dir, f'generate_{step:06d}.png')]
  writers.save_png(paths[0], grid)
  np.savez(os.path.join(sample_dir, f'generate_{step:06d}.npz'), samples=samples)

  inputs, references = translation
  columns = sampling.translation_columns(
      sampler, params, jnp.asarray(inputs), key, config.sample.radii,
      config.sample.phipd_strength, config.sample.sdedit_strengths)
  titles = ['input'] + [name for name, _ in columns]
  arrays = [inputs] + [np.asarray(c) for _, c in columns]
  if references is not None:
    titles.append(config.sample.translate_reference)
    arrays.append(references)
  paths.append(os.path.join(sample_dir, f'translate_{step:06d}.png'))
  writers.save_png(paths[1], writers.image_grid(arrays, titles, upscale=max(1, 96 // size)))
  return paths


def train(config, workdir: str, stop_after: Optional[int] = None) -> training.TrainState:
  """Trains (or resumes) the run of ``config`` in ``workdir``; returns the final state."""
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  training.validate_config(config, sharding.data_parallel_size(mesh))
  logging.info('devices: %s, mesh: %s', jax.devices(), dict(mesh.shape))

  graphdef, state, optimizer = training.create_train_state(config, mesh)
  checkpointer = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints,
                                         config.train.checkpoint_every)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state)
    logging.info('resumed from %s at step %d', checkpointer.directory, int(state.step))
  elif config.init_from:
    source = checkpoint.restore_latest(config.init_from, state)
    state = state.replace(params=source.params, ema_params=source.ema_params)
    logging.info('initialised params and EMA from %s', config.init_from)
  if is_main:
    checkpoint.save_config(workdir, config)

  start = int(state.step)
  num_steps = config.train.num_steps
  end = num_steps if stop_after is None else min(num_steps, start + stop_after)
  train_step = training.make_train_step(config, graphdef, optimizer, mesh, state)
  dataset = pipeline.train_dataset(config.data, config.train.batch_size, config.seed, num_steps,
                                   jax.process_index(), jax.process_count())
  sampler = sampling.Sampler(config, graphdef)
  translation = sampling.translation_inputs(config) if config.sample.write_grids else None
  writer = writers.MetricWriter(workdir, enabled=is_main)

  try:
    progress = tqdm.tqdm(range(start, end), initial=start, total=num_steps,
                         disable=not is_main, desc='train', dynamic_ncols=True)
    window_start, window_steps, pending = time.perf_counter(), 0, []
    for step in progress:
      batch = sharding.global_batch(dataset[step], mesh)
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      window_steps += 1
      done = step + 1
      if done % config.train.log_every == 0 or done in (num_steps, end):
        pending = jax.device_get(pending)
        if not all(np.isfinite(m['loss']) for m in pending):
          raise FloatingPointError(f'non-finite loss at step {done}; last checkpoint: '
                                   f'{checkpointer.latest_step()}')
        elapsed = time.perf_counter() - window_start
        scalars = {name: float(np.mean([m[name] for m in pending])) for name in pending[0]}
        scalars['steps_per_second'] = window_steps / elapsed
        scalars['images_per_second'] = window_steps * config.train.batch_size / elapsed
        writer.write_scalars(done, scalars)
        progress.set_postfix(loss=f"{scalars['loss']:.4f}",
                             img_s=f"{scalars['images_per_second']:.0f}")
        window_start, window_steps, pending = time.perf_counter(), 0, []
      if done % config.train.checkpoint_every == 0 or done in (num_steps, end):
        checkpointer.save(done, state, force=True)
        if is_main and config.sample.write_grids:
          paths = write_samples(config, sampler, state.ema_params, done, workdir, translation)
          progress.write(f'step {done}: checkpoint saved; samples: {", ".join(paths)}')
        window_start = time.perf_counter()  # Sampling time is not training throughput.
  finally:  # Let an in-flight asynchronous save finish, even after an error.
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return state


def main(argv):
  del argv
  train(_CONFIG.value, _WORKDIR.value, _STOP_AFTER.value)


if __name__ == '__main__':
  app.run(main)
