"""Reading user images for sampling: a file or a folder, converted and sized for a model."""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from phipd_jax.data import pipeline, videos

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def list_images(path: str) -> list[str]:
  """The image files of a folder (sorted; sub-folders and hidden files skipped), or ``[path]``.

  Files without an extension are included (and reported if unreadable); other extensions are
  skipped.

  Raises:
    FileNotFoundError: ``path`` does not exist.
  """
  if os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if not n.startswith('.'))
    files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
    return [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS) or not os.path.splitext(f)[1]]
  if os.path.exists(path):
    return [path]
  raise FileNotFoundError(f'{path} does not exist')


def read_image(path: str, size: int, patch: int, *, resize: bool = False,
               any_size: bool = False, max_pixels: Optional[int] = None) -> np.ndarray:
  """One input as float32 ``[H, W, 3]`` in ``[-1, 1]``, converted and sized for the model.

  Args:
    path: an image file.
    size: the model's training size (pixels, square).
    patch: the model's patch size (pixels): ``any_size`` inputs must be multiples of it.
    resize: resize the shorter side to ``size`` and centre-crop.
    any_size: keep the image's own size.
    max_pixels: with ``any_size``, refuse larger images (None: no limit).

  Raises:
    ValueError: unreadable file, or a size the model cannot take (with the fix in the message).
  """
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode != 'RGB':
        print(f'warning: {path}: mode {image.mode} converted to RGB', file=sys.stderr)
        image = image.convert('RGB')
      array = np.asarray(image)
  except (UnidentifiedImageError, OSError) as error:
    raise ValueError(f'{path}: not a readable image ({error})') from error
  height, width = array.shape[:2]
  if resize:
    array = pipeline.center_crop(pipeline.resize_short_side(array, size), size)
  elif any_size:
    if height % patch or width % patch:
      raise ValueError(f'{path}: {height}x{width} is not a multiple of the patch size {patch}; '
                       'pass --resize')
    if max_pixels is not None and height * width > max_pixels:
      raise ValueError(f'{path}: {height}x{width} = {height * width} pixels is above '
                       f'--max_pixels={max_pixels} (time and memory grow with the pixel count); '
                       'pass --force to run it anyway, or --resize')
  elif (height, width) != (size, size):
    raise ValueError(f'{path}: {height}x{width} differs from the training size {size}x{size}; '
                     'pass --resize (resize and centre-crop) or --any_size')
  return pipeline.to_model_range(array)


def output_path(output: str, path: str) -> str:
  """``<output>/<file name>``, with ``.png`` added to a name without an extension."""
  name = os.path.basename(path)
  return os.path.join(output, name if os.path.splitext(name)[1] else name + '.png')


def read_inputs(path: str, size: int, patch: int, *, resize: bool = False,
                any_size: bool = False, max_pixels: Optional[int] = None
                ) -> tuple[dict[str, np.ndarray], int]:
  """Every image of ``path`` (:func:`list_images`) read by :func:`read_image` (same arguments).

  A file that cannot be used is reported on stderr as ``error: <message>`` (the message names
  the file) and skipped; the others are read.

  Returns:
    ``({path: float32 image [H, W, 3] in [-1, 1]}, number of failed files)``.

  Raises:
    FileNotFoundError: ``path`` does not exist.
  """
  images, failures = {}, 0
  for file in list_images(path):
    try:
      images[file] = read_image(file, size, patch, resize=resize, any_size=any_size,
                                max_pixels=max_pixels)
    except ValueError as error:
      print(f'error: {error}', file=sys.stderr, flush=True)
      failures += 1
  return images, failures


def batches(images: dict[str, np.ndarray], batch_size: int):
  """Same-shape groups of ``images`` in batches of ``min(batch_size, group size)``, a trailing
  partial batch padded with copies of its first image: one compilation per image shape.

  Args:
    images: ``{path: float32 image [H, W, C]}`` (as :func:`read_inputs` returns).
    batch_size: images per batch, >= 1.

  Yields:
    ``(paths, batch [N, H, W, C] float32, index)``: the batch's ``len(paths) <= N`` images
    first, then the padding; ``index`` counts batches from 0 across groups.
  """
  by_shape = {}
  for path, image in images.items():
    by_shape.setdefault(image.shape, []).append(path)
  index = 0
  for group in by_shape.values():
    size = min(batch_size, len(group))
    for start in range(0, len(group), size):
      paths = group[start:start + size]
      stacked = np.stack([images[p] for p in paths])
      if len(paths) < size:
        stacked = np.concatenate([stacked, np.repeat(stacked[:1], size - len(paths), 0)])
      yield paths, stacked, index
      index += 1


def read_clip_inputs(path: str, frames: int, size: int, stride: int = 1
                     ) -> tuple[dict[str, np.ndarray], int]:
  """The clips of a clip run's inputs: every video file or frame folder of ``path``
  (:func:`phipd_jax.data.videos.read_clips`) cut into non-overlapping clips of ``frames``
  frames (every ``stride``-th frame), each frame resized to ``size`` on its short side and
  centre-cropped. A video that cannot be used (unreadable, too short, mixed frame sizes) is
  reported on stderr as ``error: <path>: <reason>`` and skipped.

  Returns:
    ``({'<video stem>_clip<k>': uint8 clip [frames, size, size, 3]}, number of failed videos)``.

  Raises:
    FileNotFoundError: ``path`` does not exist or holds no video.
    ValueError: no video of ``path`` gives a clip (the reasons named).
  """
  clips, skipped = videos.read_clips(path, length=frames, stride=stride, size=size)
  for bad, reason in skipped:
    print(f'error: {bad}: {reason}', file=sys.stderr, flush=True)
  named = {}
  for source, stack in clips.items():
    stem = os.path.splitext(os.path.basename(os.path.normpath(source)))[0]
    for index, clip in enumerate(stack):
      named[f'{stem}_clip{index:03d}'] = clip
  return named, len(skipped)
