"""Timing and cost helpers for benchmarks: compile time apart, medians over repeats, XLA FLOPs.

Rules (so the numbers can be trusted): inputs are random data, never zeros; compilation is
timed separately (ahead of time: ``lower`` then ``compile``); ``block_until_ready`` wraps only
the timed call; every output is checked for NaN/Inf; figures are the median over repeats, with
min and max.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from phipd_jax import experiment as experiment_lib, models, noise as noise_lib, saved_run, sharding
from phipd_jax import video_noise
from phipd_jax.diffusion import samplers


@dataclasses.dataclass
class Timing:
  """Wall-clock seconds of one compiled function: compile, and each timed call."""

  compile_s: float
  calls_s: list[float]
  flops: Optional[float]  # XLA cost analysis of one call (None where unavailable).
  temp_bytes: Optional[int] = None  # XLA memory analysis: scratch buffers of one call.
  # XLA memory analysis: all buffers of one call (arguments + outputs - donated aliases + temp).
  total_bytes: Optional[int] = None

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
  try:
    memory = compiled.memory_analysis()
    temp_bytes = int(memory.temp_size_in_bytes)
    total_bytes = int(memory.argument_size_in_bytes + memory.output_size_in_bytes -
                      memory.alias_size_in_bytes + memory.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except  # Not every backend reports it.
    temp_bytes = total_bytes = None
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
  return Timing(compile_s, calls, flops, temp_bytes, total_bytes)


def peak_rss_gb() -> float:
  """Peak resident memory of this process so far, GiB (``getrusage``; Linux reports KiB)."""
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def memory_stats(timing: 'Timing') -> dict:
  """From XLA's memory analysis, if known: ``temp_gb``, the compiled program's scratch memory,
  and ``step_gb``, every buffer one call holds (its arguments, e.g. parameters and optimizer
  moments, plus outputs not aliased to donated arguments, plus scratch): the memory a device
  needs for the step."""
  if timing.temp_bytes is None:
    return {}
  return {'temp_gb': timing.temp_bytes / 2**30, 'step_gb': timing.total_bytes / 2**30}


def measured_peak_flops(size: int = 2048, calls: int = 20, dtype=jnp.float32) -> float:
  """Best achieved FLOP/s of ``calls`` square matrix products: an empirical peak of this device.

  Returns ``2 size^3 / fastest call`` (the best, not the median: the peak is what the device can
  do, and on a shared machine slow calls measure the neighbours). Used as the MFU denominator
  on CPU, where no data sheet applies; ``dtype`` should be the run's compute dtype.
  """
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), dtype)
  b = jax.random.normal(keys[1], (size, size), dtype)
  timing = time_compiled(lambda x, y: x @ y, (a, b), calls, 'matmul peak', warmup=2)
  return 2.0 * size**3 / min(timing.calls_s)


# Data-sheet dense bf16 peaks (FLOP/s per chip) of common accelerators, by the start of
# ``device_kind`` (lower case). The GPU/TPU default of ``--peak_flops``; pass the flag for others.
PEAK_FLOPS_BF16 = {
    'nvidia h200': 989e12,
    'nvidia h100 pcie': 756e12,
    'nvidia h100': 989e12,  # SXM.
    'nvidia a100': 312e12,
    'nvidia l4': 121e12,
    'nvidia a10g': 70e12,
    'nvidia b200': 2250e12,
    'tpu v4': 275e12,
    'tpu v5 lite': 197e12,  # v5e.
    'tpu v5e': 197e12,
    'tpu v5p': 459e12,
    'tpu v5': 459e12,
    'tpu v6 lite': 918e12,  # v6e (Trillium).
    'tpu v6e': 918e12,
}


def datasheet_peak_flops(device_kind: str) -> Optional[float]:
  """The :data:`PEAK_FLOPS_BF16` entry whose key starts ``device_kind`` (longest match), or None."""
  kind = device_kind.lower()
  matches = [k for k in PEAK_FLOPS_BF16 if kind.startswith(k)]
  return PEAK_FLOPS_BF16[max(matches, key=len)] if matches else None


def matmul_flops(fn: Callable, *args) -> float:
  """Model FLOPs of ``fn(*args)`` counted from its jaxpr: ``2 M N K`` per matrix product.

  Every ``dot_general`` counts ``2 x (batch) x (free lhs) x (free rhs) x (contracted)`` and
  every convolution ``2 x output elements x kernel window x input features / groups``; other
  ops are not counted (the usual model-FLOPs convention, as in the PaLM paper's MFU). Nested
  jaxprs are walked: ``scan`` bodies times their length, ``while`` bodies once (their trip count
  is not static), ``cond`` the most expensive branch. Unlike XLA's cost analysis this is the
  same on every backend and does not depend on how XLA fuses or rewrites the program.
  """
  closed = jax.make_jaxpr(fn)(*args)
  return _jaxpr_matmul_flops(closed.jaxpr)


def _jaxpr_matmul_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (lhs_contract, _), (lhs_batch, _) = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      out = eqn.outvars[0].aval.shape
      contracted = math.prod(lhs[d] for d in lhs_contract)
      total += 2.0 * math.prod(out) * contracted
    elif name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape
      dims = eqn.params['dimension_numbers']
      kernel = math.prod(rhs[d] for d in dims.rhs_spec[2:])
      in_features = rhs[dims.rhs_spec[1]]
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * kernel * in_features
    else:
      subs = [v for v in eqn.params.values() if hasattr(v, 'eqns') or hasattr(v, 'jaxpr')]
      branches = eqn.params.get('branches')
      if branches:
        total += max(_jaxpr_matmul_flops(getattr(b, 'jaxpr', b)) for b in branches)
        continue
      count = sum(_jaxpr_matmul_flops(getattr(v, 'jaxpr', v)) for v in subs)
      total += count * (eqn.params.get('length', 1) if name == 'scan' else 1)
  return total


def format_table(rows: Sequence[dict], columns: Sequence[str], markdown: bool = False) -> str:
  """Table of ``rows`` (dicts) over ``columns``, plain text or Markdown; floats to 4 digits."""

  def cell(value):
    if isinstance(value, float):
      return f'{value:.0f}' if abs(value) >= 1e4 else f'{value:.4g}'
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


def peak_flops(given: float, dtype=jnp.float32) -> tuple[float, str]:
  """``(peak FLOP/s, where it came from)``: ``given`` if > 0; on a GPU/TPU the data-sheet
  bf16 peak of :data:`PEAK_FLOPS_BF16`; else (CPU, or an unknown chip) the best of 20
  ``2048^3`` matrix products at ``dtype``."""
  if given > 0:
    return given, 'given (--peak_flops)'
  kind = jax.devices()[0].device_kind
  if jax.default_backend() != 'cpu' and datasheet_peak_flops(kind):
    return datasheet_peak_flops(kind), f'data sheet ({kind}, dense bf16)'
  name = jnp.dtype(dtype).name
  return measured_peak_flops(dtype=dtype), f'measured (best of 20 2048^3 {name} matmuls)'


def noise_section(exp: experiment_lib.Experiment, image_shape, run_ms: Optional[float],
                  repeats: int, frames: int) -> list[dict]:
  """Each constructor on image and video batches, and its share of one phi-PD sampling run
  (``run_ms``; no share column when the sampling section did not run).

  A JiT config with Spectral Forcing adds a ``spectral_forcing`` row (the operator on the
  image batch at random times); it runs once per network evaluation, so its share counts
  ``num_steps`` calls (the Euler run's evaluations), where a noise constructor counts one.
  """
  spec = exp.spec
  radius = float(spec.sample.radii[0])
  settings = spec.noise.settings()
  if exp.is_clip:
    return _clip_noise_rows(settings, image_shape, radius, run_ms, repeats)
  constructors = {
      'gaussian': noise_lib.noise_fn('gaussian', **settings),
      'phase_preserving': noise_lib.noise_fn('phase_preserving', **settings),
      'fss_paper': noise_lib.noise_fn('fss', **{**settings, 'mode': 'paper'}),
      'fss_reference': noise_lib.noise_fn('fss', **{**settings, 'mode': 'reference',
                                                    'magnitude': 'gaussian'}),
  }
  forcing = None
  if spec.model['name'] == 'jit':
    forcing = models.spectral_forcing_from_settings(dict(spec.model['spectral_forcing']))
  batch, size = image_shape[0], image_shape[1]
  shapes = {'image': image_shape, 'video': (batch, frames, size, size, image_shape[-1])}
  rows = []
  for shape_name, shape in shapes.items():
    x = random_images(jax.random.key(1), shape)
    named = {name: (lambda key, x, fn=fn: fn(key, x, radius)) for name, fn in constructors.items()}
    if forcing is not None and shape_name == 'image':
      named['spectral_forcing'] = lambda key, x: forcing(x, jax.random.uniform(key, x.shape[:1]))
    for name, fn in named.items():
      # Millisecond calls: 10x the repeats for a stable median.
      timing = time_compiled(fn, (jax.random.key(2), x), 10 * repeats, name)
      row = {'noise': name, 'shape': 'x'.join(map(str, shape)), **timing.summary()}
      if shape_name == 'image' and run_ms:
        # Noise is drawn once per run; Spectral Forcing runs at each of the run's evaluations.
        calls = spec.sample.num_steps if name == 'spectral_forcing' else 1
        row['share_of_sampling_run'] = calls * timing.median_s * 1e3 / run_ms
      rows.append(row)
  return rows


def random_flow(key: jax.Array, clip_shape) -> jax.Array:
  """A smooth random forward flow ``[B, T - 1, H, W, 2]`` for clips ``clip_shape`` ``[B, T, H,
  W, C]``: a pan of up to 2 pixels per frame plus a zoom of up to 5 %, per clip (the motions of
  :mod:`phipd_jax.data.clips`), so the flow-warped noise does its real work."""
  batch, frames, height, width, _ = clip_shape
  pan_key, zoom_key = jax.random.split(key)
  pan = jax.random.uniform(pan_key, (batch, 1, 1, 1, 2), minval=-2.0, maxval=2.0)
  zoom = jax.random.uniform(zoom_key, (batch, 1, 1, 1, 1), minval=-0.05, maxval=0.05)
  rows, cols = jnp.meshgrid(jnp.arange(height) - (height - 1) / 2,
                            jnp.arange(width) - (width - 1) / 2, indexing='ij')
  centred = jnp.stack([cols, rows], -1)[None, None]
  return jnp.broadcast_to(pan + zoom * centred, (batch, frames - 1, height, width, 2))


def _clip_noise_rows(settings: dict, clip_shape, radius: float, run_ms: Optional[float],
                     repeats: int) -> list[dict]:
  """A clip run's noise rows: the Gaussian draw and FSS with each clip option of
  :data:`phipd_jax.video_noise.VIDEO_OPTIONS` on the run's clip batch (``flow_warped`` with a
  :func:`random_flow`), each with its share of one phi-PD sampling run of that batch."""
  x = random_images(jax.random.key(1), clip_shape)
  flow = random_flow(jax.random.key(6), clip_shape)
  named = {'gaussian': video_noise.video_noise_fn('gaussian', 'per_frame', **settings)}
  named.update({f'fss_{option}': video_noise.video_noise_fn('fss', option, **settings)
                for option in video_noise.VIDEO_OPTIONS})
  rows = []
  for name, fn in named.items():
    call = lambda key, x, flow, fn=fn: fn(key, x, radius, flow=flow)
    timing = time_compiled(call, (jax.random.key(2), x, flow), 10 * repeats, name)
    row = {'noise': name, 'shape': 'x'.join(map(str, clip_shape)), **timing.summary()}
    if run_ms:
      row['share_of_sampling_run'] = timing.median_s * 1e3 / run_ms
    rows.append(row)
  return rows


def sample_section(exp: experiment_lib.Experiment, params, image_shape, peak: float,
                   repeats: int) -> list[dict]:
  """Every sampler of the process, from Gaussian noise (SDEdit path) or phi-PD noise, through
  the run's own :class:`~phipd_jax.sampling.Sampler` (so a guided config is timed guided)."""
  sample = exp.spec.sample
  process = exp.process
  methods = process.samplers
  x_input = random_images(jax.random.key(3), image_shape)
  batch = image_shape[0]
  guided = bool(exp.num_classes) and sample.guidance_scale != 1
  labels = jnp.zeros((batch,), jnp.int32) if exp.num_classes else None
  # FLOPs of one network evaluation on this batch (the sampler loop body), guided if the run is.
  t = jnp.full((batch * (2 if guided else 1),), 0.5, jnp.float32)
  x_net = jnp.concatenate([x_input] * (2 if guided else 1))
  y_net = None if labels is None else jnp.concatenate([labels] * (2 if guided else 1))
  # The parameters are an argument: closed over, they become compiled constants (slower to
  # compile, and XLA:CPU's YNNPACK fusions returned garbage on such a DiT-S program).
  network = lambda p, x, t, y: exp.apply_fn(p)(x, t, y)
  one_call = time_compiled(network, (params, x_net, t, y_net), repeats, 'network')
  # MFU counts model FLOPs (the network's matrix products); XLA's count is reported beside.
  flops_per_evaluation = matmul_flops(network, params, x_net, t, y_net) / batch
  hardware_flops_per_evaluation = (one_call.flops or 0.0) / batch
  radius = jnp.float32(sample.radii[0])
  rows = []
  for method in methods:
    for start in ('gaussian', 'phipd'):
      # Compile time at twice the steps once (it must not grow: the loop is a lax.scan).
      doubled = (2 * sample.num_steps,) if not rows else ()
      for steps in (sample.num_steps,) + doubled:
        sampler = exp.sampler(steps, method=method)

        def run(x, key, sampler=sampler, start=start):
          eps = sampler.noise_fn(key, x, radius) if start == 'phipd' else sampler.gaussian_fn(key, x)
          return sampler._sample_from(params, x, eps, 1.0, labels,  # pylint: disable=protected-access
                                      jnp.float32(sample.guidance_scale),
                                      sampler._step_key(key))  # pylint: disable=protected-access

        timing = time_compiled(run, (x_input, jax.random.key(4)),
                               repeats if steps == sample.num_steps else 1,
                               f'{method}/{start}')
        if steps != sample.num_steps:
          rows[-1]['compile_s_at_2x_steps'] = timing.compile_s
          continue
        evaluations = samplers.network_evaluations(process, method, steps)
        flops_per_image = flops_per_evaluation * evaluations
        achieved = flops_per_image * batch / timing.median_s
        rows.append({'sampler': method, 'start': start, 'steps': steps, 'guided': guided,
                     'evaluations': evaluations, 'batch': batch,
                     'compile_s': timing.compile_s, 'run_median_ms': 1e3 * timing.median_s,
                     'run_min_ms': 1e3 * min(timing.calls_s),
                     'run_max_ms': 1e3 * max(timing.calls_s),
                     'ms_per_evaluation': 1e3 * timing.median_s / evaluations,
                     'images_per_s': batch / timing.median_s,
                     'gflops_per_image': flops_per_image / 1e9,
                     'hardware_gflops_per_image': hardware_flops_per_evaluation * evaluations / 1e9,
                     'achieved_gflops_per_s': achieved / 1e9, 'mfu': achieved / peak})
  return rows


def train_section(exp: experiment_lib.Experiment, mesh, peak: float, repeats: int) -> dict:
  """Train step on a random batch of ``train.batch_size``: ms/step, images/s, MFU."""
  state = exp.create_train_state(mesh)
  step = exp.train_step(mesh, state)
  batch = exp.spec.train.batch_size
  images = random_images(jax.random.key(5), (batch,) + exp.image_shape)
  arrays = {'image': jax.device_get(images),
            'label': jax.device_get(jnp.zeros((batch,), jnp.int32))}
  if exp.is_clip:  # Clips carry their flow (read by noise.video='flow_warped').
    arrays['flow'] = jax.device_get(random_flow(jax.random.key(6), images.shape))
  data = sharding.global_batch(arrays, mesh)
  # Model FLOPs of a train step: 3x the forward's matrix products (forward, and the two
  # products per product of the backward), the convention of MFU; without the codec's encode.
  # Shapes only, nothing allocated; the network's (a LoRA run's merge adds rank-r products).
  params = jax.eval_shape(exp.model_init_params, jax.random.key(0))
  t = jnp.full((batch,), 0.5, jnp.float32)
  x = jnp.zeros((batch,) + exp.model_shape, jnp.float32)
  y = jnp.zeros((batch,), jnp.int32) if exp.num_classes else None
  forward = matmul_flops(lambda p, x, t, y: exp.apply_fn(p)(x, t, y), params, x, t, y)
  # A step with frozen constants (LoRA's base, LPIPS, the codec) is timed with them as
  # arguments, so that the step's memory counts them rather than folding them into the program.
  fn, args = step, (state, data)
  if getattr(step, 'constants', None) is not None:
    fn, args = step.jitted, (state, data, step.constants)
  timing = time_compiled(fn, args, repeats, 'train step', warmup=2, donate=True)
  flops_per_image = 3.0 * forward / batch
  achieved = flops_per_image * batch / timing.median_s
  result = {'batch': batch, 'compile_s': timing.compile_s,
            'step_median_ms': 1e3 * timing.median_s, 'step_min_ms': 1e3 * min(timing.calls_s),
            'step_max_ms': 1e3 * max(timing.calls_s), 'images_per_s': batch / timing.median_s,
            'gflops_per_image': flops_per_image / 1e9,
            'hardware_gflops_per_image': (timing.flops or 0.0) / batch / 1e9,
            'achieved_gflops_per_s': achieved / 1e9, 'mfu': achieved / peak,
            'peak_rss_gb': peak_rss_gb(), **memory_stats(timing)}
  if exp.is_latent:
    # The codec's encode of the batch alone: what a latent cache (encode the data once) would
    # save per step, and the cost of building such a cache per image.
    codec = exp.codec
    encode = time_compiled(lambda x: codec.encode(x), (data['image'],), repeats, 'encode')
    result.update(encode_median_ms=1e3 * encode.median_s,
                  encode_share_of_step=encode.median_s / timing.median_s,
                  cache_build_ms_per_image=1e3 * encode.median_s / batch)
  return result


SECTIONS = ('noise', 'sample', 'train')


def sections(what: str) -> set[str]:
  """The sections of ``--what``: ``'all'`` or a comma-separated subset of :data:`SECTIONS`.

  Raises:
    ValueError: an unknown section.
  """
  wanted = set(SECTIONS) if what == 'all' else {w.strip() for w in what.split(',') if w.strip()}
  if not wanted or wanted - set(SECTIONS):
    raise ValueError(f'--what={what!r} must be all or a comma-separated subset of {SECTIONS}')
  return wanted


def run_benchmarks(exp: experiment_lib.Experiment, what: str = 'all', repeats: int = 5,
                   batch: int = 8, frames: int = 8, given_peak: float = 0.0,
                   params=None) -> dict:
  """The requested sections for the built experiment ``exp`` (see :func:`sections`); returns
  JSON-ready results. ``params``: the model's weights for the sampling section (a saved or
  converted run's; default: a fresh initialisation)."""
  wanted = sections(what)
  mesh = sharding.make_mesh(exp.spec.mesh.data, exp.spec.mesh.fsdp)
  if exp.is_latent and exp.codec is None:  # Sampling and noise in the latent space.
    exp = exp.with_codec(saved_run.load_codec(exp))
  if exp.lora is not None and exp.lora_base is None:  # Timing: a random base of the same shapes.
    exp = exp.with_lora_base(exp.model_init_params(jax.random.key(exp.spec.seed)))
  image_shape = (batch,) + exp.model_shape
  peak, peak_source = peak_flops(given_peak, jnp.dtype(exp.spec.model['dtype']))
  results = {'device': device_description(), 'host': platform.processor() or
             platform.machine(), 'jax': jax.__version__, 'config': exp.saved_config(),
             'repeats': repeats, 'peak_flops': peak, 'peak_source': peak_source}
  if 'sample' in wanted:
    if params is None:
      params = exp.model_init_params(jax.random.key(exp.spec.seed))
    results['sample'] = sample_section(exp, params, image_shape, peak, repeats)
  if 'noise' in wanted:
    run_ms = None
    if 'sample' in results:
      phipd_run = [r for r in results['sample'] if r['start'] == 'phipd'][0]
      run_ms = phipd_run['run_median_ms']
      results['noise_reference_run'] = f"{phipd_run['sampler']} x {phipd_run['steps']} steps"
    results['noise'] = noise_section(exp, image_shape, run_ms, repeats, frames)
  if 'train' in wanted:
    results['train'] = train_section(exp, mesh, peak, repeats)
  return results


SAMPLE_COLUMNS = ('sampler', 'start', 'steps', 'guided', 'evaluations', 'compile_s',
                  'compile_s_at_2x_steps', 'run_median_ms', 'run_min_ms', 'run_max_ms',
                  'ms_per_evaluation', 'images_per_s', 'gflops_per_image',
                  'hardware_gflops_per_image', 'mfu')
NOISE_COLUMNS = ('noise', 'shape', 'compile_s', 'median_ms', 'min_ms', 'max_ms',
                 'share_of_sampling_run')
TRAIN_COLUMNS = ('batch', 'compile_s', 'step_median_ms', 'step_min_ms', 'step_max_ms',
                 'images_per_s', 'gflops_per_image', 'hardware_gflops_per_image',
                 'achieved_gflops_per_s', 'mfu', 'temp_gb', 'step_gb', 'peak_rss_gb', 'encode_median_ms',
                 'encode_share_of_step')


def report(results: dict, markdown: bool = False) -> str:
  """The sections of :func:`run_benchmarks`'s results as tables (plain text or Markdown)."""
  parts = [f"device: {results['device']}; peak {results['peak_flops'] / 1e9:.1f} GFLOP/s "
           f"({results['peak_source']}); median of {results['repeats']} repeats"]
  sections = [('sample', 'sampling (one full run of a batch)', SAMPLE_COLUMNS),
              ('noise', 'noise constructors' + (
                  f" (share of one {results['noise_reference_run']} phi-PD sampling run)"
                  if 'noise_reference_run' in results else ''), NOISE_COLUMNS),
              ('train', 'train step', TRAIN_COLUMNS)]
  for key, title, columns in sections:
    if key in results:
      rows = results[key] if isinstance(results[key], list) else [results[key]]
      columns = [c for c in columns if any(c in row for row in rows)]  # Latent-only columns.
      parts.append(('**' + title + '**' if markdown else title) + '\n\n' * markdown + '\n'
                   * (not markdown) + format_table(rows, columns, markdown))
  return '\n\n'.join(parts)
