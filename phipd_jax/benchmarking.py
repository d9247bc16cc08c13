"""Timing and cost helpers for benchmarks: compile time apart, medians over repeats, XLA FLOPs.

Rules (so the numbers can be trusted): inputs are random data, never zeros; compilation is
timed separately (ahead of time: ``lower`` then ``compile``); ``block_until_ready`` wraps only
the timed call; every output is checked for NaN/Inf; figures are the median over repeats, with
min and max.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import diffusion, noise as noise_lib, sharding, training


@dataclasses.dataclass
class Timing:
  """Wall-clock seconds of one compiled function: compile, and each timed call."""

  compile_s: float
  calls_s: list[float]
  flops: Optional[float]  # XLA cost analysis of one call (None where unavailable).

  @property
  def median_s(self) -> float:
    return statistics.median(self.calls_s)

  def summary(self) -> dict:
    return {'compile_s': self.compile_s, 'median_ms': 1e3 * self.median_s,
            'min_ms': 1e3 * min(self.calls_s), 'max_ms': 1e3 * max(self.calls_s),
            'repeats': len(self.calls_s), 'flops_per_call': self.flops}


def xla_flops(compiled) -> Optional[float]:
  """FLOPs of a compiled executable from XLA's cost analysis.

  XLA counts the body of a ``while``/``scan`` loop once, whatever its trip count: multiply a
  loop body's FLOPs by its iterations yourself (see :func:`time_compiled`'s callers).
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # Some backends do not implement it.
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get('flops')
  return float(flops) if flops is not None and flops > 0 else None


def _check_finite(outputs: Any, name: str):
  for leaf in jax.tree.leaves(outputs):
    if jnp.issubdtype(leaf.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(leaf))):
      raise FloatingPointError(f'benchmark {name}: output has NaN/Inf')


def time_compiled(fn: Callable, args: Sequence[Any], repeats: int, name: str = '',
                  warmup: int = 1, static_argnums=(), donate: bool = False) -> Timing:
  """Compiles ``jax.jit(fn)`` for ``args`` (timed), then times ``repeats`` calls.

  Args:
    fn: the function to benchmark.
    args: its arguments (random data).
    repeats: timed calls (>= 1); each is wrapped in ``block_until_ready``.
    name: used in error messages.
    warmup: untimed calls after compilation.
    static_argnums: passed to ``jax.jit``.
    donate: if true, ``fn``'s first argument is donated and each call feeds the previous
      call's first output back (train steps: ``state, metrics = step(state, batch)``).

  Returns:
    :class:`Timing`; raises ``FloatingPointError`` if an output is not finite.
  """
  jitted = jax.jit(fn, static_argnums=static_argnums, donate_argnums=(0,) if donate else ())
  lowered = jitted.lower(*args)
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  flops = xla_flops(compiled)
  dynamic = [a for i, a in enumerate(args) if i not in static_argnums]
  outputs = None
  calls = []
  for index in range(warmup + repeats):
    start = time.perf_counter()
    outputs = jax.block_until_ready(compiled(*dynamic))
    elapsed = time.perf_counter() - start
    if index >= warmup:
      calls.append(elapsed)
    if donate:
      dynamic = [outputs[0]] + dynamic[1:]
  _check_finite(outputs, name)
  return Timing(compile_s, calls, flops)


def measured_peak_flops(size: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """Achieved FLOP/s of a large square matrix product: an empirical peak of this device.

  Returns ``2 size^3 / median time``. Used as the denominator of MFU when the config gives no
  ``benchmark.peak_flops``.
  """
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), dtype)
  b = jax.random.normal(keys[1], (size, size), dtype)
  timing = time_compiled(lambda x, y: x @ y, (a, b), repeats, 'matmul peak')
  return 2.0 * size**3 / timing.median_s


def format_table(rows: Sequence[dict], columns: Sequence[str], markdown: bool = False) -> str:
  """Table of ``rows`` (dicts) over ``columns``, plain text or Markdown; floats to 4 digits."""

  def cell(value):
    if isinstance(value, float):
      return f'{value:.4g}'
    return '' if value is None else str(value)

  cells = [[cell(row.get(c)) for c in columns] for row in rows]
  if markdown:
    lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in cells])
  widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
            for i, c in enumerate(columns)]
  lines = ['  '.join(c.ljust(w) for c, w in zip(columns, widths)),
           '  '.join('-' * w for w in widths)]
  lines += ['  '.join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
  return '\n'.join(lines)


def random_images(key, shape, dtype=jnp.float32):
  """Uniform ``[-1, 1]`` images (benchmarks never feed zeros)."""
  return jax.random.uniform(key, shape, dtype, -1.0, 1.0)


def device_description() -> str:
  """E.g. ``'8 x TPU v5 lite (tpu)'``."""
  devices = jax.devices()
  return f'{len(devices)} x {devices[0].device_kind} ({jax.default_backend()})'




# ---------------------------------------------------------------------------------------------
# The sections of benchmark.py.


def network_evaluations(method: str, num_steps: int) -> int:
  """Network calls of one sampling run (Heun's last interval is Euler)."""
  return 2 * num_steps - 1 if method == 'heun' else num_steps


def peak_flops(given: float) -> tuple[float, str]:
  """``(peak FLOP/s, where it came from)``: ``given`` if > 0, else a measured matmul."""
  if given > 0:
    return given, 'given (--peak_flops)'
  return measured_peak_flops(), 'measured (2048^3 float32 matmul)'


def noise_section(config, image_shape, run_ms: float, repeats: int, frames: int) -> list[dict]:
  """Each constructor on image and video batches, and its share of one phi-PD sampling run.

  A JiT config with Spectral Forcing adds a ``spectral_forcing`` row (the operator on the
  image batch at random times); it runs once per network evaluation, so its share counts
  ``num_steps`` calls (the Euler run's evaluations), where a noise constructor counts one.
  """
  radius = float(config.sample.radii[0])
  constructors = {
      'gaussian': lambda key, x: noise_lib.gaussian(key, x),
      'phase_preserving': lambda key, x: noise_lib.phase_preserving(key, x),
      'fss_paper': lambda key, x: noise_lib.fss(key, x, radius),
      'fss_reference': lambda key, x: noise_lib.fss(key, x, radius, mode='reference'),
  }
  forcing = (training.spectral_forcing_from_config(config.model)
             if config.model.name == 'jit' else None)
  batch, size = image_shape[0], image_shape[1]
  shapes = {'image': image_shape, 'video': (batch, frames, size, size, 3)}
  rows = []
  for shape_name, shape in shapes.items():
    x = random_images(jax.random.key(1), shape)
    named = dict(constructors)
    if forcing is not None and shape_name == 'image':
      named['spectral_forcing'] = lambda key, x: forcing(x, jax.random.uniform(key, x.shape[:1]))
    for name, fn in named.items():
      # Millisecond calls: 10x the repeats for a stable median.
      timing = time_compiled(fn, (jax.random.key(2), x), 10 * repeats, name)
      row = {'noise': name, 'shape': 'x'.join(map(str, shape)), **timing.summary()}
      if shape_name == 'image':
        # Noise is drawn once per run; Spectral Forcing runs at each of the run's evaluations.
        calls = config.sample.num_steps if name == 'spectral_forcing' else 1
        row['share_of_sampling_run'] = calls * timing.median_s * 1e3 / run_ms
      rows.append(row)
  return rows


def sample_section(config, graphdef, params, image_shape, peak: float,
                   repeats: int) -> list[dict]:
  """Every sampler of the process, started from Gaussian noise (SDEdit path) or phi-PD noise."""
  process = diffusion.process_from_config(config.diffusion)
  methods = ('euler', 'heun') if isinstance(process, diffusion.FlowMatching) else ('ddim',)
  apply_fn = training.apply_model(graphdef, params)
  denoise = diffusion.denoiser(process, apply_fn, config.diffusion.prediction)
  x_input = random_images(jax.random.key(3), image_shape)
  batch = image_shape[0]
  # FLOPs of one network evaluation on this batch (the sampler loop body).
  t = jnp.full((batch,), 0.5, jnp.float32)
  one_call = time_compiled(lambda x, t: apply_fn(x, t, None), (x_input, t),
                                        repeats, 'network')
  flops_per_evaluation = (one_call.flops or 0.0) / batch
  radius = float(config.sample.radii[0])
  rows = []
  for method in methods:
    for start in ('gaussian', 'phipd'):
      for steps in (config.sample.num_steps, 2 * config.sample.num_steps):

        def run(x, key, steps=steps, method=method, start=start):
          if start == 'phipd':
            return diffusion.phipd_translate(process, denoise, key, x, radius, steps, method)
          return diffusion.sdedit(process, denoise, key, x, 1.0, steps, method)

        timing = time_compiled(run, (x_input, jax.random.key(4)),
                                            repeats if steps == config.sample.num_steps
                                            else 1, f'{method}/{start}')
        if steps != config.sample.num_steps:
          rows[-1]['compile_s_at_2x_steps'] = timing.compile_s
          continue
        evaluations = network_evaluations(method, steps)
        flops_per_image = flops_per_evaluation * evaluations
        achieved = flops_per_image * batch / timing.median_s
        rows.append({'sampler': method, 'start': start, 'steps': steps,
                     'evaluations': evaluations, 'batch': batch,
                     'compile_s': timing.compile_s, 'run_median_ms': 1e3 * timing.median_s,
                     'run_min_ms': 1e3 * min(timing.calls_s),
                     'run_max_ms': 1e3 * max(timing.calls_s),
                     'ms_per_evaluation': 1e3 * timing.median_s / evaluations,
                     'images_per_s': batch / timing.median_s,
                     'gflops_per_image': flops_per_image / 1e9,
                     'achieved_gflops_per_s': achieved / 1e9, 'mfu': achieved / peak})
  return rows


def train_section(config, peak: float, repeats: int) -> dict:
  """Train step on a random batch of ``config.train.batch_size``: ms/step, images/s, MFU."""
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  graphdef, state, optimizer = training.create_train_state(config, mesh)
  step = training.make_train_step(config, graphdef, optimizer, mesh, state)
  size, batch = config.data.image_size, config.train.batch_size
  images = random_images(jax.random.key(5), (batch, size, size, 3))
  data = sharding.global_batch({'image': jax.device_get(images),
                                'label': jax.device_get(jnp.zeros((batch,), jnp.int32))}, mesh)
  timing = time_compiled(step, (state, data), repeats, 'train step',
                                      warmup=2, donate=True)
  flops_per_image = (timing.flops or 0.0) / batch
  achieved = flops_per_image * batch / timing.median_s
  return {'batch': batch, 'compile_s': timing.compile_s,
          'step_median_ms': 1e3 * timing.median_s, 'step_min_ms': 1e3 * min(timing.calls_s),
          'step_max_ms': 1e3 * max(timing.calls_s), 'images_per_s': batch / timing.median_s,
          'gflops_per_image': flops_per_image / 1e9, 'achieved_gflops_per_s': achieved / 1e9,
          'mfu': achieved / peak}


def run_benchmarks(config, what: str = 'all', repeats: int = 5, batch: int = 8, frames: int = 8,
                   given_peak: float = 0.0) -> dict:
  """All requested sections for ``config``; returns the JSON-ready results."""
  training.validate_config(config)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  graphdef, state, _ = training.create_train_state(config, mesh)
  size = config.data.image_size
  image_shape = (batch, size, size, 3)
  peak, peak_source = peak_flops(given_peak)
  results = {'device': device_description(), 'host': platform.processor() or
             platform.machine(), 'jax': jax.__version__, 'config': config.to_dict(),
             'repeats': repeats, 'peak_flops': peak, 'peak_source': peak_source}
  if what in ('sample', 'noise', 'all'):
    results['sample'] = sample_section(config, graphdef, state.ema_params, image_shape, peak,
                                       repeats)
  if what in ('noise', 'all'):
    phipd_run = [r for r in results['sample'] if r['start'] == 'phipd'][0]
    results['noise'] = noise_section(config, image_shape, phipd_run['run_median_ms'], repeats,
                                     frames)
    results['noise_reference_run'] = f"{phipd_run['sampler']} x {phipd_run['steps']} steps"
  if what in ('train', 'all'):
    results['train'] = train_section(config, peak, repeats)
  return results


SAMPLE_COLUMNS = ('sampler', 'start', 'steps', 'evaluations', 'compile_s',
                  'compile_s_at_2x_steps', 'run_median_ms', 'run_min_ms', 'run_max_ms',
                  'ms_per_evaluation', 'images_per_s', 'gflops_per_image', 'mfu')
NOISE_COLUMNS = ('noise', 'shape', 'compile_s', 'median_ms', 'min_ms', 'max_ms',
                 'share_of_sampling_run')
TRAIN_COLUMNS = ('batch', 'compile_s', 'step_median_ms', 'step_min_ms', 'step_max_ms',
                 'images_per_s', 'gflops_per_image', 'achieved_gflops_per_s', 'mfu')


def report(results: dict, markdown: bool = False) -> str:
  """The sections of :func:`run_benchmarks`'s results as tables (plain text or Markdown)."""
  parts = [f"device: {results['device']}; peak {results['peak_flops'] / 1e9:.1f} GFLOP/s "
           f"({results['peak_source']}); median of {results['repeats']} repeats"]
  sections = [('sample', 'sampling (one full run of a batch)', SAMPLE_COLUMNS),
              ('noise', f"noise constructors (share of one {results.get('noise_reference_run')} "
                        'phi-PD sampling run)', NOISE_COLUMNS),
              ('train', 'train step', TRAIN_COLUMNS)]
  for key, title, columns in sections:
    if key in results:
      rows = results[key] if isinstance(results[key], list) else [results[key]]
      parts.append(('**' + title + '**' if markdown else title) + '\n\n' * markdown + '\n'
                   * (not markdown) + format_table(rows, columns, markdown))
  return '\n\n'.join(parts)
