"""A folder of user images through a translation method or an inversion, written to a folder.

The library half of ``sample.py --mode translate`` and ``--mode invert``: images read by
:func:`phipd_jax.inputs.read_inputs`, batched by :func:`phipd_jax.inputs.batches` (one compilation
per image shape), run by a :data:`phipd_jax.sampling.METHODS` entry (or inverted) with batch i
on the key ``jax.random.fold_in(key, i)``, and written: one PNG per input under its file name,
``grid.png``, and the inverted noise's report
(:func:`phipd_jax.evaluation.collapse.write_inversion_report`).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from phipd_jax import inputs as inputs_lib, sampling, writers
from phipd_jax.data import pipeline


def translate(sampler: sampling.Sampler, params, images: dict[str, np.ndarray], output: str,
              method: str, setting: sampling.Setting, *, key: jax.Array, batch_size: int,
              grid_size: int, run_name: str) -> tuple[int, str]:
  """Translates ``images`` with ``method`` at ``setting`` into the folder ``output``.

  Writes ``<output>/<file name>`` per input (``.png`` added to a name without an extension),
  ``grid.png`` (inputs of ``grid_size`` x ``grid_size`` next to their outputs, each file name
  and the header ``'<run_name>: <method header>'``) and, for a method by inversion, the
  inverted noise's report (``inverted.npz``, ``noise.png``, ``spectrum.png``).

  Args:
    sampler, params: the model's sampler and parameters.
    images: ``{path: float32 image [H, W, 3] in [-1, 1]}`` (:func:`inputs.read_inputs`).
    output: an existing folder.
    method, setting: a key of :data:`sampling.METHODS` and its setting (checked by
      :func:`sampling.check`).
    key: PRNG key; batch i runs on ``jax.random.fold_in(key, i)``.
    batch_size: images per compiled batch.
    grid_size: the training size (pixels): outputs of other sizes stay out of the grid.
    run_name: the run's name in the grid's header.

  Returns:
    ``(number of images, a one-line summary)``.
  """
  spec = sampling.METHODS[method]
  header = spec.header(setting)
  run = lambda x, batch_key: spec(sampler, params, x, batch_key, setting)
  shown_inputs, shown_outputs, names, inverted = [], [], [], {}
  for paths, (outputs, noise) in sampling.map_batches(
      run, inputs_lib.batches(images, batch_size), key):
    if noise is not None:
      inverted.update(zip(paths, noise))
    for path, out in zip(paths, outputs):
      writers.save_png(inputs_lib.output_path(output, path), writers.to_uint8(out))
      if out.shape[:2] == (grid_size, grid_size):
        shown_inputs.append(images[path])
        shown_outputs.append(out)
        names.append(os.path.basename(path))
  if shown_outputs:
    grid = writers.labelled_grid(np.stack(shown_inputs), np.stack(shown_outputs), names,
                                 f'{run_name}: {header}')
    writers.save_png(os.path.join(output, 'grid.png'), grid)
  report = ''
  if inverted:
    report = '; inverted noise: ' + _report(sampler, output, inverted, images)
  return len(images), f'translated {len(images)} image(s) with {header} into {output}{report}'


def invert(sampler: sampling.Sampler, params, images: dict[str, np.ndarray], output: str,
           method: str, setting: sampling.Setting, *, key: jax.Array,
           batch_size: int) -> tuple[int, str]:
  """Inverts ``images`` (:func:`sampling.inverted_noise` of ``method`` at ``setting``) and
  writes the report (``inverted.npz``, ``noise.png``, ``spectrum.png``) to the folder
  ``output``; arguments as :func:`translate`.

  Returns:
    ``(number of maps, a one-line summary)``; nothing is written without maps.
  """
  run = lambda x, batch_key: sampling.inverted_noise(sampler, params, x, batch_key, method,
                                                     setting)
  inverted = {}
  for paths, noise in sampling.map_batches(run, inputs_lib.batches(images, batch_size), key):
    inverted.update(zip(paths, noise))
  if not inverted:
    return 0, 'inverted 0 image(s)'
  summary = _report(sampler, output, inverted, images)
  return len(inverted), f'inverted {len(inverted)} image(s) into {output}/inverted.npz; {summary}'


def _report(sampler, output: str, inverted: dict, images: dict) -> str:
  from phipd_jax.evaluation import collapse  # pylint: disable=g-import-not-at-top
  return collapse.write_inversion_report(
      output, list(inverted.values()), [images[p] for p in inverted],
      [os.path.basename(p) for p in inverted], scale=sampler.prior_std, codec=sampler.codec)


def _padded_batch(arrays: tuple, start: int, size: int) -> tuple[tuple, int]:
  """Rows ``[start, start + size)`` of each array, a short last batch padded with copies of its
  first row (one compilation for every batch); returns ``(batches, real row count)``."""
  rows = [a[start:start + size] for a in arrays]
  count = len(rows[0])
  if count < size:
    rows = [np.concatenate([r, np.repeat(r[:1], size - count, 0)]) for r in rows]
  return tuple(rows), count


def translate_clips(sampler: sampling.Sampler, params, clips: dict[str, np.ndarray], output: str,
                    method: str, setting: sampling.Setting, *, key: jax.Array, batch_size: int,
                    run_name: str, option: str, fps: float = 8.0) -> tuple[int, str]:
  """Translates clips with ``method`` at ``setting`` into the folder ``output``, with the
  temporal consistency of inputs and outputs measured along the inputs' estimated flow.

  The flow of every input clip is estimated once (:func:`phipd_jax.data.optical_flow.
  estimate_flows`); it drives the noise of ``option='flow_warped'`` (the other options ignore
  it) and the metrics. Writes, per clip, ``<name>.mp4`` and ``<name>.gif`` (the output),
  ``<name>_input.gif``, and ``grid.png`` (each input clip's frames over its output's, up to 8
  clips) and ``temporal.json`` (per clip and mean: warping error and flicker,
  :mod:`phipd_jax.evaluation.temporal`, of the input and of the output).

  Args:
    sampler, params: a clip run's sampler (built with the noise ``option``) and parameters.
    clips: ``{name: uint8 clip [T, S, S, 3]}`` (:func:`phipd_jax.inputs.read_clip_inputs`).
    output: an existing folder.
    method, setting: a key of :data:`sampling.METHODS` and its setting (checked by
      :func:`sampling.check`).
    key: PRNG key; batch i runs on ``jax.random.fold_in(key, i)``.
    batch_size: clips per compiled batch (a trailing partial batch is padded).
    run_name: the run's name in the grid's header.
    option: the sampler's noise option (in the header and ``temporal.json``).
    fps: frames per second of the written videos.

  Returns:
    ``(number of clips, a one-line summary with the mean warping error and flicker)``.
  """
  import json  # pylint: disable=g-import-not-at-top
  from phipd_jax.data import optical_flow  # pylint: disable=g-import-not-at-top
  from phipd_jax.evaluation import temporal  # pylint: disable=g-import-not-at-top
  names = list(clips)
  frames = np.stack([clips[n] for n in names])
  flows = optical_flow.estimate_flows(frames)
  inputs = pipeline.to_model_range(frames)
  spec = sampling.METHODS[method]
  header = f'{spec.header(setting)} noise.video={option}'
  size = min(batch_size, len(names))
  outputs = []
  for index, start in enumerate(range(0, len(names), size)):
    (batch, flow), count = _padded_batch((inputs, flows), start, size)
    out, _ = spec(sampler, params, jax.numpy.asarray(batch), jax.random.fold_in(key, index),
                  setting, jax.numpy.asarray(flow))
    outputs.append(np.asarray(out)[:count])
  outputs = np.concatenate(outputs)
  for name, clip, out in zip(names, frames, outputs):
    writers.write_video(os.path.join(output, f'{name}.mp4'), out, fps)
    writers.write_video(os.path.join(output, f'{name}.gif'), out, fps)
    writers.write_video(os.path.join(output, f'{name}_input.gif'), clip, fps)
  shown = min(8, len(names))
  rows = [r for i in range(shown) for r in (inputs[i], outputs[i])]
  labels = [n for name in names[:shown] for n in (name, 'output')]
  writers.save_png(os.path.join(output, 'grid.png'),
                   writers.clip_grid(rows, labels, f'{run_name}: {header}'))
  metrics = {}
  for what, arrays in (('input', inputs), ('output', np.clip(outputs, -1, 1))):
    metrics[what] = {
        'warping_error': np.asarray(temporal.warping_error(arrays, flows)).tolist(),
        'flicker': np.asarray(temporal.flicker(arrays, flows)).tolist()}
  summary = {what: {k: float(np.mean(v)) for k, v in m.items()} for what, m in metrics.items()}
  with open(os.path.join(output, 'temporal.json'), 'w') as f:
    json.dump({'method': header, 'names': names, 'per_clip': metrics, 'mean': summary}, f,
              indent=1)
  line = (f'translated {len(names)} clip(s) with {header} into {output}; warping error input '
          f"{summary['input']['warping_error']:.4f} output {summary['output']['warping_error']:.4f}"
          f", flicker input {summary['input']['flicker']:.3f} output "
          f"{summary['output']['flicker']:.3f} (estimated flow, temporal.json)")
  return len(names), line


def invert_clips(sampler: sampling.Sampler, params, clips: dict[str, np.ndarray], output: str,
                 *, batch_size: int) -> tuple[int, str]:
  """Deterministic inversion of clips (:meth:`sampling.Sampler.invert`, unconditioned) into the
  folder ``output``: the spectral report of every inverted frame
  (:func:`phipd_jax.evaluation.collapse.write_inversion_report`: ``inverted.npz``, ``noise.png``,
  ``spectrum.png``; maps named ``<clip>_f<t>``), ``inverted_clips.npz`` (``noise`` ``[N, T, H,
  W, C]``, ``names``) and the inverted noise's temporal coherence: its warping error along the
  inputs' estimated flow, in units of the prior's variance (2 for noise independent from frame
  to frame, 0 for noise that moves with the content).

  Args:
    sampler, params: a clip run's sampler and parameters.
    clips: ``{name: uint8 clip [T, S, S, 3]}`` (:func:`phipd_jax.inputs.read_clip_inputs`).
    output: an existing folder.
    batch_size: clips per compiled batch (a trailing partial batch is padded).

  Returns:
    ``(number of clips, a one-line summary)``.
  """
  from phipd_jax.data import optical_flow  # pylint: disable=g-import-not-at-top
  from phipd_jax.evaluation import temporal  # pylint: disable=g-import-not-at-top
  names = list(clips)
  frames = np.stack([clips[n] for n in names])
  inputs = pipeline.to_model_range(frames)
  size = min(batch_size, len(names))
  inverted = []
  for start in range(0, len(names), size):
    (batch,), count = _padded_batch((inputs,), start, size)
    inverted.append(np.asarray(sampler.invert(params, jax.numpy.asarray(batch)))[:count])
  noise = np.concatenate(inverted)
  np.savez(os.path.join(output, 'inverted_clips.npz'), noise=noise, names=np.array(names))
  length = noise.shape[1]
  summary = _report(sampler, output, {f'{n}_f{t}': noise[i, t] for i, n in enumerate(names)
                                      for t in range(length)},
                    {f'{n}_f{t}': inputs[i, t] for i, n in enumerate(names)
                     for t in range(length)})
  coherence = float(np.mean(temporal.warping_error(
      jax.numpy.asarray(noise / sampler.prior_std),
      jax.numpy.asarray(optical_flow.estimate_flows(frames)))))
  return len(names), (f'inverted {len(names)} clip(s) into {output}/inverted_clips.npz; '
                      f'noise warping error {coherence:.3f} (2 = independent frames); {summary}')
