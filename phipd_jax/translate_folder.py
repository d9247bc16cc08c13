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
