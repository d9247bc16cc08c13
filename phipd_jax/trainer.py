"""The training loop: build, check, resume, train, log, checkpoint, write grids, summarise.

``train.py`` is this module's command-line face. Order of start-up (nothing is written before the
config and the data have been checked): build the experiment (validates the config), open the
data, then the workdir: resume from its checkpoint, else ``config.init_from``, else scratch.
Signals (SIGTERM/SIGINT) are honoured until the last asynchronous save has finished: the run
checkpoints at the next step boundary and exits 0. A NaN/Inf loss stops the run without saving.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import signal
import time
from typing import Optional

from absl import logging
from flax import nnx
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import tqdm

from phipd_jax import checkpoint, defaults, experiment as experiment_lib, latent, sampling
from phipd_jax import saved_run, sharding, specs, training, writers
from phipd_jax.data import pipeline


@dataclasses.dataclass
class Summary:
  """What a call of :func:`train` did (also printed as one line)."""
  workdir: str
  start_step: int
  end_step: int
  num_steps: int
  final_loss: Optional[float]
  seconds: float
  stopped_by_signal: bool = False
  state: Optional[training.TrainState] = None

  def line(self) -> str:
    if self.start_step >= self.num_steps:
      return (f'run already complete: step {self.end_step} of {self.num_steps} in '
              f'{self.workdir} (nothing to do)')
    loss = 'n/a' if self.final_loss is None else f'{self.final_loss:.4f}'
    how = 'stopped by signal' if self.stopped_by_signal else 'done'
    return (f'{how}: steps {self.start_step} -> {self.end_step} of {self.num_steps} in '
            f'{self.seconds / 60:.1f} min; final loss {loss}; checkpoints, metrics.jsonl and '
            f'samples/ in {self.workdir}')


def initialize_distributed(settings: specs.DistributedSpec):
  """``jax.distributed.initialize`` for multi-process runs (before any other JAX call).

  Runs when ``settings.enabled`` or on a multi-host TPU slice (``TPU_WORKER_HOSTNAMES`` lists
  several hosts); empty fields are auto-detected by JAX (TPU, SLURM, ...).
  """
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
  """SIGTERM/SIGINT set a flag; the loop checkpoints at the next step boundary and exits 0.

  Installed for the whole run, including start-up and the final asynchronous save, so a signal
  at any moment ends the run cleanly.
  """

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


def _write_generated(workdir: str, step: int, samples: np.ndarray, grid: np.ndarray):
  """``samples/generate_<step>.png`` (``grid``) and ``.npz``; returns ``(sample dir, [png])``."""
  sample_dir = os.path.join(workdir, 'samples')
  path = os.path.join(sample_dir, f'generate_{step:06d}.png')
  writers.save_png(path, grid)
  np.savez(os.path.join(sample_dir, f'generate_{step:06d}.npz'), samples=samples)
  return sample_dir, [path]


def write_clip_samples(exp: experiment_lib.Experiment, sampler: sampling.Sampler, params,
                       step: int, workdir: str, translation) -> list[str]:
  """A clip run's grids of this step (rows of frames, :func:`phipd_jax.writers.clip_grid`):
  generated clips, and each held-out clip beside its phi-PD and SDEdit translations (the run's
  ``noise.video`` option, the clips' flow); returns the PNG paths."""
  sample = exp.spec.sample
  key = jax.random.key(exp.spec.seed + 1)  # The same noise at every checkpoint.
  count = min(sample.num_generate, 4)
  samples = np.asarray(sampler.generate(params, key, (count,) + exp.image_shape))
  sample_dir, paths = _write_generated(workdir, step, samples, writers.clip_grid(
      list(samples), [f'sample {i}' for i in range(count)], 'generated clips'))
  if translation is None:
    return paths
  clips, flow = translation
  columns = sampling.translation_columns(
      sampler, params, jnp.asarray(clips), key, sample.radii, sample.phipd_strength,
      sample.sdedit_strengths, flow=jnp.asarray(flow))
  rows, names = [], []
  for index, clip in enumerate(clips):
    rows += [clip] + [np.asarray(c)[index] for _, c in columns]
    names += [f'input {index}'] + [title for title, _ in columns]
  paths.append(os.path.join(sample_dir, f'translate_{step:06d}.png'))
  writers.save_png(paths[1], writers.clip_grid(rows, names, f'noise.video={exp.spec.noise.video}'))
  return paths


def write_samples(exp: experiment_lib.Experiment, sampler: sampling.Sampler, params, step: int,
                  workdir: str, translation) -> list[str]:
  """Generation grid and the fixed translation grid of this step; returns the PNG paths."""
  if exp.is_clip:
    return write_clip_samples(exp, sampler, params, step, workdir, translation)
  sample = exp.spec.sample
  key = jax.random.key(exp.spec.seed + 1)  # The same noise at every checkpoint: comparable grids.
  labels = None
  if exp.num_classes:
    labels = jnp.arange(sample.num_generate, dtype=jnp.int32) % exp.num_classes
  samples = np.asarray(sampler.generate(params, key, (sample.num_generate,) +
                                        exp.image_shape, labels, sample.guidance_scale))
  sample_dir, paths = _write_generated(workdir, step, samples, writers.sample_grid(samples))
  if translation is None:
    return paths
  inputs, references = translation
  columns = sampling.translation_columns(
      sampler, params, jnp.asarray(inputs), key, sample.radii, sample.phipd_strength,
      sample.sdedit_strengths, sample.inversion_classes, sample.guidance_scale)
  titles = ['input'] + [name for name, _ in columns]
  arrays = [inputs] + [np.asarray(c) for _, c in columns]
  if references is not None:
    titles.append(sample.translate_reference)
    arrays.append(references)
  paths.append(os.path.join(sample_dir, f'translate_{step:06d}.png'))
  size = exp.image_shape[0]
  writers.save_png(paths[1], writers.image_grid(arrays, titles, upscale=max(1, 96 // size)))
  return paths


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, params, photos):
  """``model(photos)`` of an autoencoder (``decode(mean encode)``); compiled once per model."""
  return nnx.merge(graphdef, params)(photos)


def write_reconstructions(exp: experiment_lib.Experiment, params, step: int, workdir: str,
                          photos: np.ndarray) -> list[str]:
  """Grid of held-out photos and the autoencoder's reconstructions ``D(mean E(x))`` at ``step``.

  Args:
    exp: an autoencoder experiment.
    params: the parameters to reconstruct with (the EMA parameters at checkpoints).
    step: the step number in the file names.
    workdir: the run directory (``samples/reconstruct_<step>.png`` and ``.npz``).
    photos: float32 ``[N, H, W, 3]`` in ``[-1, 1]``.

  Returns:
    The PNG path (a one-element list).
  """
  outputs = np.asarray(_reconstruct(exp.graphdef, params, jnp.asarray(photos)))
  mse = float(np.mean(np.square(outputs - photos)))
  sample_dir = os.path.join(workdir, 'samples')
  path = os.path.join(sample_dir, f'reconstruct_{step:06d}.png')
  size = exp.image_shape[0]
  writers.save_png(path, writers.image_grid([photos, outputs],
                                            ['photo', f'recon. mse {mse:.3f}'],
                                            upscale=max(1, 96 // size)))
  np.savez(os.path.join(sample_dir, f'reconstruct_{step:06d}.npz'), photos=photos,
           reconstructions=outputs)
  return [path]


def grid_inputs(exp: experiment_lib.Experiment):
  """The fixed inputs of the checkpoint grids (read before the workdir is touched): the
  translation batch of a diffusion run, the held-out photos of an autoencoder run
  (``autoencoder.num_reconstruct`` of ``data.eval_split``); None without grids."""
  spec = exp.spec
  if not spec.sample.write_grids:
    return None
  if exp.objective == 'autoencoder':
    return pipeline.eval_images(spec.data, spec.data.eval_split, spec.data.image_key,
                                spec.autoencoder.num_reconstruct)
  sample = spec.sample
  if exp.is_clip:  # (clips, flow) of the first held-out clips.
    return pipeline.eval_clips(spec.data, spec.data.eval_split, sample.num_translate)
  return pipeline.held_out_inputs(spec.data, sample.translate_source, sample.num_translate,
                                  sample.flat_shade_segments, sample.translate_reference)


def grid_writer(exp: experiment_lib.Experiment, workdir: str, inputs):
  """``write(params, step) -> PNG paths`` for the run's objective (see :func:`grid_inputs`)."""
  if exp.objective == 'autoencoder':
    return lambda params, step: write_reconstructions(exp, params, step, workdir, inputs)
  sampler = exp.sampler()
  return lambda params, step: write_samples(exp, sampler, params, step, workdir, inputs)


def measure_codec_scale(exp: experiment_lib.Experiment, codec: latent.Codec) -> float:
  """``1 / std`` of the unscaled latents of the run's first ``codec.scale_images`` training
  images (:func:`phipd_jax.latent.measure_latent_scale`)."""
  data = exp.spec.data
  images = pipeline.eval_images(data, data.train_split, data.image_key,
                                exp.spec.codec.scale_images)
  unscaled = dataclasses.replace(codec, scale=1.0, shift=0.0)
  return latent.measure_latent_scale(jax.jit(unscaled.encode), images)


def prepare_codec(exp: experiment_lib.Experiment, workdir: str, is_main: bool) -> experiment_lib.Experiment:
  """A latent run's experiment with its codec loaded from the run's own copy.

  At the first start, the autoencoder run ``config.codec.workdir`` (config.json and its newest
  checkpoint step) is copied into ``<workdir>/codec`` (:func:`phipd_jax.checkpoint.copy_latest`),
  so later resumes, sampling and evaluation read the same weights even if that run trains on or
  moves. A ``config.codec.scale`` of 0 is measured on the first ``codec.scale_images`` training
  images (``1 / std`` of the latents) and stored in the run's config.json.
  """
  source = exp.spec.codec.workdir
  own = saved_run.codec_dir(workdir)
  if is_main and not os.path.isdir(own):
    step = checkpoint.copy_latest(source, own)
    print(f'codec: copied {source} (step {step}) to {own}', flush=True)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('codec copied')
  exp = dataclasses.replace(exp, codec_source=own)  # The same run: its codec_experiment stays.
  codec = saved_run.load_codec(exp)
  if not exp.spec.codec.scale:
    exp = exp.with_codec_scale(measure_codec_scale(exp, codec))
    codec = dataclasses.replace(codec, scale=exp.spec.codec.scale)
  if is_main:
    print(f'codec: latents {"x".join(map(str, exp.model_shape))} from '
          f'{"x".join(map(str, exp.image_shape))} images; scale {exp.spec.codec.scale:.4f} '
          f'(1 / std of the latents)', flush=True)
  return exp.with_codec(codec)


def cache_latents(exp: experiment_lib.Experiment, is_main: bool) -> latent.LatentCache:
  """The latents of every training image the augmentation can produce, encoded once
  (``config.codec.cache``; :func:`phipd_jax.data.pipeline.augmented_images`)."""
  started = time.perf_counter()
  data = exp.spec.data
  cache = latent.LatentCache(exp.codec, pipeline.augmented_images(data, data.train_split))
  if is_main:
    print(f'codec: encoded {len(cache)} training images (flips included) once in '
          f'{time.perf_counter() - started:.0f} s', flush=True)
  return cache


def _resume_check(current: dict, workdir: str, allow_config_change: bool):
  saved = defaults.migrate(checkpoint.load_config_dict(workdir))
  for line in specs.check_resume(saved, current, allow_config_change):
    logging.warning('config differs from the saved run: %s', line)
    print(f'warning: config differs from the saved run: {line}', flush=True)


def train(exp: experiment_lib.Experiment, workdir: str, stop_after: Optional[int] = None,
          allow_config_change: bool = False) -> Summary:
  """Trains (or resumes) the run of ``exp`` (:func:`phipd_jax.experiment.build`) in ``workdir``.

  Args:
    exp: the built experiment (its config was validated when it was built).
    workdir: the run directory (created after the data is checked).
    stop_after: end this invocation after this many steps, with a checkpoint.
    allow_config_change: resume even if fields that change the optimisation differ from the
      saved run's (they are printed as warnings).

  Returns:
    A :class:`Summary` (its ``state`` is the final train state).

  Raises:
    ValueError: data that cannot be read, a config that cannot continue the saved run, or
      ``stop_after < 1``.
    FileNotFoundError: ``init_from`` has no checkpoint.
    FloatingPointError: a NaN/Inf loss or gradient (nothing is saved past the last good step).
  """
  started = time.perf_counter()
  with StopRequest() as stop_request:  # From the start: a signal at any moment exits cleanly.
    summary = _train(exp, workdir, stop_after, allow_config_change, stop_request)
  summary.seconds = time.perf_counter() - started
  if jax.process_index() == 0:
    print(summary.line(), flush=True)
  return summary


def _train(exp, workdir, stop_after, allow_config_change, stop_request) -> Summary:
  is_main = jax.process_index() == 0
  spec = exp.spec
  mesh = sharding.make_mesh(spec.mesh.data, spec.mesh.fsdp)
  if stop_after is not None and stop_after < 1:
    raise ValueError(f'--stop_after={stop_after} must be >= 1')
  init_from = spec.top.init_from
  if init_from and not checkpoint.has_checkpoint(init_from):
    raise FileNotFoundError(f'config.init_from={init_from!r} has no checkpoint in '
                            f'{checkpoint.checkpoint_dir(init_from)}')
  source = pipeline.check_source(spec.data)  # Read-only: a bad data.dir fails before any write.
  if is_main:
    print(f'data: {source}', flush=True)
  resuming = checkpoint.has_checkpoint(workdir)
  if resuming and not checkpoint.latest_has_optimizer_state(workdir):
    raise ValueError(f'{workdir} holds a converted pretrained model (no optimizer state): '
                     f'fine-tune it into a new workdir with --config.init_from={workdir}')
  if resuming and os.path.exists(os.path.join(workdir, 'config.json')):
    if exp.is_latent and not spec.codec.scale:  # The scale measured when the run started.
      exp = exp.with_codec_scale(
          checkpoint.load_config_dict(workdir).get('codec', {}).get('scale', 0.0))
    _resume_check(exp.saved_config(), workdir, allow_config_change)
  # The data before the workdir: a missing or corrupt source fails here, with nothing written.
  if jax.process_count() > 1:  # Process 0 prepares a shipped dataset; the others then open it.
    if is_main:
      pipeline.data_source(spec.data, spec.data.train_split)
    multihost_utils.sync_global_devices('dataset prepared')
  dataset = pipeline.train_dataset(spec.data, spec.train.batch_size, spec.seed,
                                   spec.train.num_steps, jax.process_index(),
                                   jax.process_count())
  grids = grid_inputs(exp)
  if exp.lora is not None:  # The frozen base (init_from, referenced): checked before any write.
    exp = exp.with_lora_base(saved_run.load_lora_base(exp, mesh))
  if exp.is_latent:
    exp = prepare_codec(exp, workdir, is_main)
    if spec.codec.cache:
      dataset = dataset.map(cache_latents(exp, is_main))
  logging.info('devices: %s, mesh: %s', jax.devices(), dict(mesh.shape))

  state = exp.create_train_state(mesh)
  checkpointer = checkpoint.Checkpointer(workdir, spec.train.keep_checkpoints,
                                         spec.train.checkpoint_every)
  try:
    if checkpointer.latest_step() is not None:
      state = checkpointer.restore(state)
      if is_main:
        print(f'resumed from {checkpointer.directory} at step {int(state.step)}', flush=True)
    elif exp.lora is not None:
      if is_main:
        size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.params))
        print(f'LoRA rank {exp.lora.rank} on {len(state.params)} layers of {init_from} (frozen): '
              f'{sum(x.size for x in jax.tree.leaves(state.params)):,} trainable parameters, '
              f'{size / 2**20:.2f} MiB per copy', flush=True)
    elif init_from:
      source = checkpoint.restore_items(init_from, state, ('params', 'ema_params'))
      state = state.replace(params=source['params'], ema_params=source['ema_params'])
      if is_main:
        print(f'initialised params and EMA from {init_from}', flush=True)
    check_same_parameters(state.params)
    if is_main:
      checkpoint.save_config(workdir, exp.saved_config())
      checkpoint.save_parts(workdir, saved_run.parts(exp))
    summary = _loop(exp, mesh, state, dataset, checkpointer, workdir, stop_after, grids,
                    stop_request, is_main)
  finally:  # Let an in-flight asynchronous save finish (signals still caught), even on error.
    checkpointer.wait()
    checkpointer.close()
  return summary


def _loop(exp, mesh, state, dataset, checkpointer, workdir, stop_after, grids,
          stop_request, is_main) -> Summary:
  train_spec, write_grids_enabled = exp.spec.train, exp.spec.sample.write_grids
  start = int(state.step)
  num_steps = train_spec.num_steps
  end = num_steps if stop_after is None else min(num_steps, start + stop_after)
  summary = Summary(workdir, start, start, num_steps, None, 0.0)
  if start >= num_steps:
    summary.state = state
    return summary
  train_step = exp.train_step(mesh, state)
  write_grids = grid_writer(exp, workdir, grids)
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
      stop = stop_request.requested()
      last = done in (num_steps, end) or stop
      log = done % train_spec.log_every == 0 or last
      save = done % train_spec.checkpoint_every == 0 or last
      if log or save:
        pending = jax.device_get(pending)
        check_finite(pending, done - len(pending), checkpointer)
      if log:
        elapsed = time.perf_counter() - window_start
        scalars = {name: float(np.mean([m[name] for m in pending])) for name in pending[0]}
        scalars['steps_per_second'] = window_steps / elapsed
        scalars['images_per_second'] = window_steps * train_spec.batch_size / elapsed
        writer.write_scalars(done, scalars)
        summary.final_loss = scalars['loss']
        progress.set_postfix(loss=f"{scalars['loss']:.4f}",
                             img_s=f"{scalars['images_per_second']:.0f}")
        window_start, window_steps, pending = time.perf_counter(), 0, []
      if save:
        checkpointer.save(done, state, force=True)
        message = f'step {done}: checkpoint saved'
        if is_main and write_grids_enabled and not stop:
          paths = write_grids(exp.model_params(state.ema_params), done)
          message += f'; samples: {", ".join(paths)}'
        progress.write(message)
        window_start = time.perf_counter()  # Sampling time is not training throughput.
      summary.end_step = done
      if stop:
        summary.stopped_by_signal = True
        progress.write(f'signal {stop_request.signal}: checkpoint saved at step {done}; '
                       'rerun the same command to resume')
        break
    progress.close()
  finally:
    writer.close()
  summary.state = state
  return summary
