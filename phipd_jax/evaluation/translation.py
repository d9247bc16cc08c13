"""The structure-vs-appearance study of image translation: tasks, method grid and metric rows.

A *task* is a set of held-out inputs with what each output is judged against:

* ``photo`` (re-rendering; phase in distribution): held-out photos -> new photos with the same
  layout. Structure reference: the human boundaries where the dataset has them (BSDS500), else
  the Canny edges of the photo; paired target: the photo itself.
* ``flat_shaded`` (sim-to-real in miniature): the same photos rendered flat-shaded (superpixel
  mean colours) -> photos. Structure reference and paired target: the original photo.
* ``edges`` (edge map -> photo; phase out of distribution): edges2shoes drawings -> photos.
  Structure reference: the drawing's lines; paired target: the paired photo.

Held-out images (``data.eval_split``, never trained on) are split in two: the first ``num`` are
the inputs, the rest the realism reference for SWD and ``fd_vgg`` (so an output never sits in
the set it is compared with).

A *method* is one row of the grid: ``phipd`` (phi-PD from structured noise, strength 1, at a
radius), ``structured_sdedit`` (phi-PD at partial strength), ``sdedit`` (Gaussian noise at a
strength) and ``generate`` (unconditional samples, the no-structure floor). Every method of a
checkpoint uses the same key (common random numbers).

Metrics of a row (means over the inputs): ``edge_precision/recall/f`` (Canny edges of the
outputs vs the structure reference, 1-pixel tolerance), ``gradient_correlation`` (vs the
structure image), ``lpips_input`` (AlexNet LPIPS to the input: appearance change),
``lpips_target`` / ``lpips_vgg_target`` / ``ssim_target`` / ``psnr_target`` (vs the paired
target), ``swd_mean`` (x 1e3, 4,096 descriptors per level: comparable only within a study) and
``fd_vgg`` (vs the held-out reference photos).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import sampling
from phipd_jax.evaluation import distribution, perceptual, structure

TASKS = ('photo', 'flat_shaded', 'edges')
HUMAN_BOUNDARIES = {'bsds500': 'boundaries'}  # Dataset -> feature with human boundary maps.
EDGE_TOLERANCE = 1.0  # Pixels, at 32x32 (see structure.edge_alignment).
LINE_THRESHOLD = 0.9  # Luma below which a pixel of a resized edge drawing is a line.
BOUNDARY_AGREEMENT = 0.1  # Resized mean human boundary map: share of annotators, area-averaged.
MIN_REFERENCE = 32  # Held-out images needed beyond the inputs for the realism reference.
SWD_DESCRIPTORS = 4096  # Patches per set and level (about 40 per image at 100 inputs).


@dataclasses.dataclass
class Task:
  """Inputs of one task and their references, all float32 ``[N, S, S, 3]`` in ``[-1, 1]``."""
  name: str
  inputs: np.ndarray
  target: np.ndarray  # Paired target of each input.
  structure_image: np.ndarray  # Gradient-correlation reference of each input.
  structure_edges: np.ndarray  # bool [N, S, S]: edges an output should keep.
  reference: np.ndarray  # [M, S, S, 3] held-out photos disjoint from the inputs.
  structure_source: str  # What structure_edges are ('canny', 'lines', 'human boundaries').


def folder_images(folder: str, size: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """``(photos, drawings or None)`` of an evaluation folder, float32 ``[N, size, size, 3]``.

  A pix2pix-style AB folder (every image twice as wide as high: photo left, edge map right)
  gives both; a folder of photos gives ``drawings = None``. Images are resized (shorter side)
  and centre-cropped to ``size``, in sorted file-name order.

  Raises:
    FileNotFoundError: a missing or empty folder. ValueError: an unreadable image (named).
  """
  from phipd_jax import inputs as inputs_lib  # pylint: disable=g-import-not-at-top
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  paths = inputs_lib.list_images(folder)
  if not paths:
    raise FileNotFoundError(f'--eval_dir {folder}: no images')
  photos, drawings = [], []
  for path in paths:
    try:
      with Image.open(path) as image:
        array = np.asarray(image.convert('RGB'))
    except OSError as error:
      raise ValueError(f'{path}: not a readable image ({error})') from error
    height, width = array.shape[:2]
    halves = [array[:, :width // 2], array[:, width // 2:]] if width == 2 * height else [array]
    fitted = [pipeline.to_model_range(pipeline.center_crop(pipeline.resize_short_side(h, size),
                                                           size)) for h in halves]
    photos.append(fitted[0])
    drawings.append(fitted[1] if len(fitted) == 2 else None)
  if any(d is None for d in drawings):
    return np.stack(photos), None
  return np.stack(photos), np.stack(drawings)


def load_task(data_config, name: str, num: int, flat_shade_segments: int = 48,
              eval_dir: Optional[str] = None) -> Task:
  """Task ``name`` on ``data_config``'s held-out split (``data.eval_split``), or on the images
  of ``eval_dir`` (an AB folder or a photo folder, see :func:`folder_images`).

  Raises:
    ValueError: unknown task, a dataset without the needed feature (``edges`` needs a drawing
      feature named ``edges``, or an AB folder), or fewer than ``num + MIN_REFERENCE`` images.
  """
  from phipd_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if name not in TASKS:
    raise ValueError(f'translation: task must be one of {TASKS}, got {name!r}')
  split = data_config.eval_split
  if eval_dir:
    photos, all_drawings = folder_images(eval_dir, data_config.image_size)
    where = eval_dir
  else:
    photos, _ = pipeline.held_out_inputs(data_config, 'photo', 10**9)
    all_drawings, where = None, f'{data_config.name}/{split}'
  if len(photos) < num + MIN_REFERENCE:
    raise ValueError(f'translation: {where} has {len(photos)} images; need '
                     f'num ({num}) + {MIN_REFERENCE} for the realism reference')
  inputs, reference = photos[:num], photos[num:]
  if name == 'edges':
    if eval_dir and all_drawings is None:
      raise ValueError(f'translation: task edges needs an AB folder (photo | edge map); '
                       f'{eval_dir} holds single images')
    drawings = (all_drawings[:num] if eval_dir else
                pipeline.held_out_inputs(data_config, 'edges', num)[0])
    return Task(name, drawings, inputs, drawings, structure.line_map(drawings, LINE_THRESHOLD),
                reference, 'lines')
  boundary_key = None if eval_dir else HUMAN_BOUNDARIES.get(data_config.name)
  if boundary_key:
    boundaries = pipeline.eval_images(data_config, split, boundary_key, num)
    edges = structure.boundary_map((boundaries[..., 0] + 1.0) / 2.0, BOUNDARY_AGREEMENT)
    source = 'human boundaries'
  else:
    edges, source = structure.canny_edges(inputs), 'canny'
  if name == 'flat_shaded':
    return Task(name, pipeline.flat_shaded(inputs, flat_shade_segments), inputs, inputs, edges,
                reference, source)
  return Task(name, inputs, inputs, inputs, edges, reference, source)


def method_grid(radii=(2.0, 4.0, 8.0, 16.0), structured_radii=(4.0,),
                strengths=(0.4, 0.6, 0.8)) -> list[dict]:
  """Rows ``{'method', 'radius', 'strength'}`` of the study (radius in frequency-index units).

  phi-PD from noise at every radius; structured SDEdit at ``structured_radii x strengths``;
  SDEdit at ``strengths``; one unconditional ``generate`` row.
  """
  rows = [{'method': 'phipd', 'radius': float(r), 'strength': 1.0} for r in radii]
  rows += [{'method': 'structured_sdedit', 'radius': float(r), 'strength': float(s)}
           for r in structured_radii for s in strengths]
  rows += [{'method': 'sdedit', 'radius': None, 'strength': float(s)} for s in strengths]
  rows.append({'method': 'generate', 'radius': None, 'strength': 1.0})
  return rows


def setting_name(row: dict) -> str:
  """Short label: ``phipd r=4``, ``structured_sdedit r=4 s=0.6``, ``sdedit s=0.6``, ``generate``."""
  parts = [row['method']]
  if row.get('radius') is not None:
    parts.append(f'r={row["radius"]:g}')
  if row['method'] in ('structured_sdedit', 'sdedit'):
    parts.append(f's={row["strength"]:g}')
  return ' '.join(parts)


def run_method(sampler, params, inputs: np.ndarray, key: jax.Array, row: dict,
               batch_size: int = 100, classes: Optional[tuple[int, int]] = None,
               guidance_scale: float = 1.0) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """One study row through the method table :data:`phipd_jax.sampling.METHODS`.

  Args:
    sampler, params: a loaded run's sampler and parameters.
    inputs: float32 ``[N, S, S, 3]`` in ``[-1, 1]``, run in chunks of ``batch_size`` (chunk
      ``start`` gets ``jax.random.fold_in(key, start)``).
    row: ``{'method', 'radius', 'strength'}``; ``'structured_sdedit'`` is ``'phipd'`` below
      strength 1.
    classes: ``(source, target)`` of a class-conditional run (translation by inversion and the
      class sampled), or None.
    guidance_scale: classifier-free guidance of the target class.

  Returns:
    ``(outputs clipped to [-1, 1], inverted noise or None)``.

  Raises:
    KeyError: a method not in the table.
  """
  method = sampling.METHODS['phipd' if row['method'] == 'structured_sdedit' else row['method']]
  source, target = classes or (None, None)
  setting = sampling.Setting(radius=row.get('radius'), strength=row['strength'], source=source,
                             target=target, guidance_scale=guidance_scale)
  outputs, noise = [], []
  for start in range(0, len(inputs), batch_size):
    images, inverted = method(sampler, params, jnp.asarray(inputs[start:start + batch_size]),
                              jax.random.fold_in(key, start), setting)
    outputs.append(np.asarray(images))
    if inverted is not None:
      noise.append(np.asarray(inverted))
  return (np.clip(np.concatenate(outputs), -1.0, 1.0),
          np.concatenate(noise) if noise else None)


def metrics(outputs: np.ndarray, task: Task, key: jax.Array,
            reference_features: Optional[np.ndarray] = None,
            swd_descriptors: int = SWD_DESCRIPTORS) -> dict:
  """Every metric of ``outputs`` ``[N, S, S, 3]`` on ``task`` (means over the N outputs).

  ``reference_features``: :func:`perceptual.vgg_features` of ``task.reference`` (computed once
  per task by the caller; computed here when None). ``key`` fixes SWD's patches and directions:
  pass the same key for every row of a task.
  """
  outputs = np.asarray(outputs, np.float32)
  edges = structure.edge_alignment(structure.canny_edges(outputs), task.structure_edges,
                                   EDGE_TOLERANCE)
  if reference_features is None:
    reference_features = perceptual.vgg_features(task.reference)
  swd = distribution.swd(outputs, task.reference, key, descriptors=swd_descriptors)
  lpips_input = perceptual.lpips(outputs, task.inputs).mean()
  same_target = task.target is task.inputs  # Re-rendering: the input is the paired target.
  return {
      'edge_precision': float(edges['precision'].mean()),
      'edge_recall': float(edges['recall'].mean()),
      'edge_f': float(edges['f'].mean()),
      'gradient_correlation': float(np.mean(structure.gradient_correlation(
          outputs, task.structure_image))),
      'lpips_input': float(lpips_input),
      'lpips_target': float(lpips_input if same_target else
                            perceptual.lpips(outputs, task.target).mean()),
      'lpips_vgg_target': float(perceptual.lpips(outputs, task.target, net='vgg16').mean()),
      'ssim_target': float(np.mean(structure.ssim(outputs, task.target))),
      'psnr_target': float(np.mean(structure.psnr(outputs, task.target))),
      'swd_mean': float(swd['swd_mean']),
      'fd_vgg': perceptual.frechet_distance(perceptual.vgg_features(outputs), reference_features),
  }


def reference_outputs(task: Task, mean_photo: np.ndarray) -> dict[str, np.ndarray]:
  """The reference rows' outputs: ground truth, mismatched ground truth, input, mean photo."""
  return {
      'ground truth': task.target,
      'mismatched ground truth': np.roll(task.target, 1, axis=0),
      'input itself': task.inputs,
      'mean photo': np.broadcast_to(mean_photo, task.inputs.shape).astype(np.float32),
  }
