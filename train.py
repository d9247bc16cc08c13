r"""Trains a diffusion model with structured (phi-PD / FSS) or Gaussian noise.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python train.py --config configs/edges2shoes_phipd.py --workdir runs/e2s \
      --config.train.num_steps=2000

Kill and rerun the same command at will: it resumes from the last checkpoint in --workdir.
Outputs in --workdir: checkpoints/, config.json, metrics.jsonl, tb/ (TensorBoard),
samples/generate_<step>.png and samples/translate_<step>.png at every checkpoint.
"""

import hashlib
import os
import signal
import time
from typing import Optional

from absl import app, flags, logging
import jax
from jax.experimental import multihost_utils
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
  grid = writers.sample_grid(samples)
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


def initialize_distributed(config):
  """``jax.distributed.initialize`` for multi-process runs (before any other JAX call).

  Runs when ``config.distributed.enabled`` or on a multi-host TPU slice (``TPU_WORKER_HOSTNAMES``
  lists several hosts); empty fields are auto-detected by JAX (TPU, SLURM, ...).
  """
  settings = config.distributed
  hosts = [h for h in os.environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
  if not (settings.enabled or len(hosts) > 1):
    return
  jax.distributed.initialize(
      coordinator_address=settings.coordinator_address or None,
      num_processes=settings.num_processes or None,
      process_id=settings.process_id if settings.process_id >= 0 else None)
  logging.info('process %d of %d', jax.process_index(), jax.process_count())


def check_same_parameters(params):
  """Fails fast if the processes hold different replicated parameters (seed or config skew)."""
  if jax.process_count() == 1:
    return
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    if leaf.is_fully_replicated:
      digest.update(np.asarray(leaf.addressable_shards[0].data).tobytes())
  fingerprint = np.frombuffer(digest.digest(), np.uint8)  # Bitwise: exact in any dtype.
  multihost_utils.assert_equal(fingerprint, 'processes hold different parameters: run every '
                               'process with the same config and seed')


class StopRequest:
  """SIGTERM/SIGINT set a flag; the loop checkpoints at the next step boundary and exits 0."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def requested(self) -> bool:
    """True on every process as soon as any process got a signal."""
    flag = np.int32(self.signal is not None)
    if jax.process_count() > 1:
      flag = multihost_utils.process_allgather(flag).max()
    return bool(flag)


def check_finite(pending: list[dict], first_step: int, checkpointer):
  """Raises if a loss or gradient norm of the window is NaN/Inf, naming the step."""
  for offset, metrics in enumerate(pending):
    if not (np.isfinite(metrics['loss']) and np.isfinite(metrics['grad_norm'])):
      raise FloatingPointError(
          f'non-finite loss or gradient at step {first_step + offset + 1} (loss '
          f"{metrics['loss']}, grad_norm {metrics['grad_norm']}); stopped without saving. Last "
          f'good checkpoint: step {checkpointer.latest_step()} in {checkpointer.directory}')


def train(config, workdir: str, stop_after: Optional[int] = None) -> training.TrainState:
  """Trains (or resumes) the run of ``config`` in ``workdir``; returns the final state.

  Raises:
    ValueError: an invalid config, or one that cannot continue the saved run.
    FloatingPointError: a NaN/Inf loss or gradient (nothing is saved past the last good step).
  """
  is_main = jax.process_index() == 0
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  training.validate_config(config, sharding.data_parallel_size(mesh))
  logging.info('devices: %s, mesh: %s', jax.devices(), dict(mesh.shape))

  graphdef, state, optimizer = training.create_train_state(config, mesh)
  checkpointer = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints,
                                         config.train.checkpoint_every)
  if checkpointer.latest_step() is not None:
    if os.path.exists(os.path.join(workdir, 'config.json')):
      for line in checkpoint.check_resume_config(checkpoint.load_config_dict(workdir),
                                                 config.to_dict()):
        logging.warning('config differs from the saved run (harmless): %s', line)
    state = checkpointer.restore(state)
    logging.info('resumed from %s at step %d', checkpointer.directory, int(state.step))
  elif config.init_from:
    source = checkpoint.restore_latest(config.init_from, state)
    state = state.replace(params=source.params, ema_params=source.ema_params)
    logging.info('initialised params and EMA from %s', config.init_from)
  check_same_parameters(state.params)
  if is_main:
    checkpoint.save_config(workdir, config)

  start = int(state.step)
  num_steps = config.train.num_steps
  end = num_steps if stop_after is None else min(num_steps, start + stop_after)
  train_step = training.make_train_step(config, graphdef, optimizer, mesh, state)
  if jax.process_count() > 1:  # Process 0 prepares a shipped dataset; the others then open it.
    if is_main:
      pipeline.data_source(config.data, config.data.train_split)
    multihost_utils.sync_global_devices('dataset prepared')
  dataset = pipeline.train_dataset(config.data, config.train.batch_size, config.seed, num_steps,
                                   jax.process_index(), jax.process_count())
  sampler = sampling.Sampler(config, graphdef)
  translation = sampling.translation_inputs(config) if config.sample.write_grids else None
  writer = writers.MetricWriter(workdir, enabled=is_main)

  try:
    with StopRequest() as stop_request:
      progress = tqdm.tqdm(range(start, end), initial=start, total=num_steps,
                           disable=not is_main, desc='train', dynamic_ncols=True)
      window_start, window_steps, pending = time.perf_counter(), 0, []
      for step in progress:
        batch = sharding.global_batch(dataset[step], mesh)
        state, metrics = train_step(state, batch)
        pending.append(metrics)
        window_steps += 1
        done = step + 1
        stop = stop_request.requested()
        last = done in (num_steps, end) or stop
        log = done % config.train.log_every == 0 or last
        save = done % config.train.checkpoint_every == 0 or last
        if log or save:
          pending = jax.device_get(pending)
          check_finite(pending, done - len(pending), checkpointer)
        if log:
          elapsed = time.perf_counter() - window_start
          scalars = {name: float(np.mean([m[name] for m in pending])) for name in pending[0]}
          scalars['steps_per_second'] = window_steps / elapsed
          scalars['images_per_second'] = window_steps * config.train.batch_size / elapsed
          writer.write_scalars(done, scalars)
          progress.set_postfix(loss=f"{scalars['loss']:.4f}",
                               img_s=f"{scalars['images_per_second']:.0f}")
          window_start, window_steps, pending = time.perf_counter(), 0, []
        if save:
          checkpointer.save(done, state, force=True)
          if is_main and config.sample.write_grids and not stop:
            paths = write_samples(config, sampler, state.ema_params, done, workdir, translation)
            progress.write(f'step {done}: checkpoint saved; samples: {", ".join(paths)}')
          window_start = time.perf_counter()  # Sampling time is not training throughput.
        if stop:
          progress.write(f'signal {stop_request.signal}: checkpoint saved at step {done}; '
                         'rerun the same command to resume')
          break
  finally:  # Let an in-flight asynchronous save finish, even after an error.
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return state


def main(argv):
  del argv
  initialize_distributed(_CONFIG.value)
  train(_CONFIG.value, _WORKDIR.value, _STOP_AFTER.value)


if __name__ == '__main__':
  app.run(main)
