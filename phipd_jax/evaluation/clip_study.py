"""The video phi-PD study: how a clip's noise is made, and phi-PD against SDEdit, on held-out clips.

``evaluate.py --mode clips`` (``scripts/clip_study.sh`` trains the runs and writes the seeds):
each clip run's EMA model translates the first ``num`` held-out clips of its dataset (synthetic
camera-motion clips with their exact flow) with

* phi-PD at each radius with each clip noise option of :data:`phipd_jax.video_noise.VIDEO_OPTIONS`
  (``per_frame``, the paper; ``shared_magnitude``; ``spatiotemporal``, 3-D FFT; ``flow_warped``);
* SDEdit at each strength, with i.i.d. Gaussian noise per frame and with the flow-warped
  Gaussian (the same transport without the structure);

all with one key, so every row starts from the same base Gaussian draw. Per row (means over the
clips):

* temporal consistency along the exact flow: ``warping_error`` (E_warp, Lai et al. ECCV 2018)
  and ``flicker`` (:mod:`phipd_jax.evaluation.temporal`);
* per-frame structure against the input frame: ``gradient_correlation`` and ``edge_f`` (Canny
  edges within 1 pixel, :mod:`phipd_jax.evaluation.structure`), the image study's metrics;
* per-frame realism: ``fd_vgg``, the Frechet distance of VGG-16 features of the output frames to
  those of the held-out input frames (:func:`phipd_jax.evaluation.perceptual.frechet_distance`);

and an ``input`` reference row (the clips themselves: the temporal floor of the bilinear warp,
structure 1). Writes ``clip_study.json`` / ``.md``, a frame strip (PNG) and a GIF of the first
clip per row.
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import sampling, saved_run, video_noise, writers
from phipd_jax.data import pipeline
from phipd_jax.evaluation import perceptual, report, structure, temporal

EDGE_TOLERANCE = 1.0  # Pixels (as the image study, phipd_jax.evaluation.translation).
COLUMNS = ('run', 'method', 'noise', 'radius', 'strength', 'warping_error', 'flicker',
           'gradient_correlation', 'edge_f', 'fd_vgg')


def study_rows(radii: Sequence[float], strengths: Sequence[float]) -> list[dict]:
  """The translation rows: phi-PD at each radius x every noise option, SDEdit at each strength
  with i.i.d. and flow-warped Gaussian noise."""
  rows = [{'method': 'phipd', 'noise': option, 'radius': float(r), 'strength': 1.0}
          for r in radii for option in video_noise.VIDEO_OPTIONS]
  rows += [{'method': 'sdedit', 'noise': option, 'radius': None, 'strength': float(s)}
           for s in strengths for option in ('per_frame', 'flow_warped')]
  return rows


def clip_metrics(outputs: np.ndarray, inputs: np.ndarray, flow: np.ndarray,
                 reference_features: np.ndarray) -> dict:
  """The row metrics of ``outputs`` against ``inputs`` (float32 ``[N, T, S, S, 3]`` in
  ``[-1, 1]``) along ``flow`` (``[N, T - 1, S, S, 2]``, pixels); ``reference_features``: VGG
  features of the input frames (:func:`perceptual.vgg_features`). Means over clips (and frames).
  """
  frames = outputs.reshape((-1,) + outputs.shape[2:])
  truth = inputs.reshape((-1,) + inputs.shape[2:])
  edges = structure.edge_alignment(structure.canny_edges(frames), structure.canny_edges(truth),
                                   EDGE_TOLERANCE)
  return {
      'warping_error': float(np.mean(temporal.warping_error(jnp.asarray(outputs),
                                                            jnp.asarray(flow)))),
      'flicker': float(np.mean(temporal.flicker(jnp.asarray(outputs), jnp.asarray(flow)))),
      'gradient_correlation': float(np.mean(structure.gradient_correlation(frames, truth))),
      'edge_f': float(np.mean(edges['f'])),
      'fd_vgg': perceptual.frechet_distance(perceptual.vgg_features(frames), reference_features),
  }


def translate_clips(sampler: sampling.Sampler, params, clips: np.ndarray, flow: np.ndarray,
                    row: dict, key: jax.Array, batch_size: int) -> np.ndarray:
  """One row's outputs ``[N, T, S, S, 3]`` (clipped to ``[-1, 1]``); batch i on
  ``fold_in(key, i)`` (the same keys for every row)."""
  setting = sampling.Setting(radius=row['radius'], strength=row['strength'])
  method = sampling.METHODS[row['method']]
  outputs = []
  for index, start in enumerate(range(0, len(clips), batch_size)):
    batch, batch_flow = clips[start:start + batch_size], flow[start:start + batch_size]
    out, _ = method(sampler, params, jnp.asarray(batch), jax.random.fold_in(key, index), setting,
                    jnp.asarray(batch_flow))
    outputs.append(np.asarray(out))
  return np.clip(np.concatenate(outputs), -1.0, 1.0)


def evaluate_run(workdir: str, *, num: int, radii: Sequence[float], strengths: Sequence[float],
                 batch_size: int = 16, seed: int = 0, steps: Optional[int] = None,
                 out_dir: Optional[str] = None) -> list[dict]:
  """Every row of :func:`study_rows` (and the ``input`` row) for one clip run.

  Raises:
    ValueError: the run is not a clip run, or its held-out split has fewer than 2 clips.
  """
  _, exp, restored = saved_run.load_run(workdir, ('ema_params',), steps)
  spec, params = exp.spec, restored['ema_params']
  if not exp.is_clip:
    raise ValueError(f'--mode clips: {workdir} trains on images (data.frames=0), not clips')
  clips, flow = pipeline.eval_clips(spec.data, spec.data.eval_split, num)
  if len(clips) < 2:
    raise ValueError(f'--mode clips: {workdir}: {len(clips)} held-out clip(s)')
  name = os.path.basename(os.path.normpath(workdir))
  reference = perceptual.vgg_features(clips.reshape((-1,) + clips.shape[2:]))
  key = jax.random.key(seed)
  results = [dict(run=name, method='input', noise='', radius=None, strength=None, seconds=0.0,
                  **clip_metrics(clips, clips, flow, reference))]
  strips, titles = [clips[0]], ['input']
  for row in study_rows(radii, strengths):
    started = time.perf_counter()
    sampler = exp.sampler(video=row['noise'])
    outputs = translate_clips(sampler, params, clips, flow, row, key, batch_size)
    results.append(dict(run=name, **row, seconds=round(time.perf_counter() - started, 1),
                        **clip_metrics(outputs, clips, flow, reference)))
    strips.append(outputs[0])
    titles.append(row_title(row))
  if out_dir:
    writers.save_png(os.path.join(out_dir, f'{name}_strip.png'),
                     writers.clip_grid(strips, titles, f'{name}: held-out clip 0'))
    for row_name, clip in zip(titles, strips):
      slug = row_name.replace(' ', '_').replace('=', '')
      writers.write_video(os.path.join(out_dir, 'gifs', f'{name}_{slug}.gif'), clip, 6.0,
                          upscale=3)
  return results


def row_title(row: dict) -> str:
  """``'phi-PD r=4 flow_warped'``, ``'SDEdit s=0.75 per_frame'``, ``'input'``."""
  if row['method'] == 'phipd':
    return f"phi-PD r={row['radius']:g} {row['noise']}"
  if row['method'] == 'sdedit':
    return f"SDEdit s={row['strength']:g} {row['noise']}"
  return row['method']


def run_study(workdirs: Sequence[str], *, num: int, radii: Sequence[float],
              strengths: Sequence[float], batch_size: int = 16, seed: int = 0,
              steps: Optional[int] = None, out_dir: Optional[str] = None) -> dict:
  """:func:`evaluate_run` for every run; writes ``clip_study.json`` / ``.md`` into ``out_dir``.

  Returns:
    ``{'rows': [...], 'num': num, 'seed': seed}``.
  """
  rows = [row for workdir in workdirs for row in evaluate_run(
      workdir, num=num, radii=radii, strengths=strengths, batch_size=batch_size, seed=seed,
      steps=steps, out_dir=out_dir)]
  summary = {'rows': rows, 'num': num, 'seed': seed}
  if out_dir:
    report.write_study(out_dir, 'clip_study', summary, markdown(rows))
  return summary


def markdown(rows: Sequence[dict]) -> str:
  """The study's table (one per run)."""
  return report.grouped_tables(rows, 'run', COLUMNS[1:])
