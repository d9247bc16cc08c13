"""Metric writing (console, JSON lines, TensorBoard) and PNG image grids."""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np
import functools

from PIL import Image, ImageDraw, ImageFont


@functools.lru_cache(maxsize=None)
def _font():
  """A small scalable font (Pillow's bundled one): the old bitmap default drew 'SDEdit s=0.5'
  as 'SDEdits=0.5'."""
  try:
    return ImageFont.load_default(size=11)
  except (TypeError, OSError):  # Pillow without FreeType.
    return ImageFont.load_default()


class MetricWriter:
  """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard events (``<workdir>/tb``).

  Only the writing process (``enabled``, process 0) touches the files.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tensorboard = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      os.makedirs(workdir, exist_ok=True)
      self._tensorboard = SummaryWriter(os.path.join(workdir, 'tb'))

  def write_scalars(self, step: int, scalars: dict):
    """Appends ``{"step": step, **scalars}`` to the JSONL file and to TensorBoard."""
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, value, int(step))
    self._tensorboard.flush()

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """The rows of ``<workdir>/metrics.jsonl``."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def to_uint8(images) -> np.ndarray:
  """float ``[-1, 1]`` (clipped) -> uint8 ``[0, 255]``."""
  images = np.asarray(images, np.float32)
  return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def image_grid(columns: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None,
               upscale: int = 1, pad: int = 2) -> np.ndarray:
  """Side-by-side grid: one column per array ``[N, H, W, 3]`` in ``[-1, 1]``, one row per item.

  Returns:
    uint8 ``[rows, cols, 3]`` image, white background, optional titles on top.
  """
  columns = [to_uint8(c) for c in columns]
  count, height, width, _ = columns[0].shape
  height, width = height * upscale, width * upscale
  title_height = 14 if titles else 0
  grid = np.full((title_height + count * (height + pad) + pad,
                  len(columns) * (width + pad) + pad, 3), 255, np.uint8)
  for j, column in enumerate(columns):
    for i in range(count):
      tile = np.repeat(np.repeat(column[i], upscale, 0), upscale, 1)
      top, left = title_height + pad + i * (height + pad), pad + j * (width + pad)
      grid[top:top + height, left:left + width] = tile
  if titles:
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for j, title in enumerate(titles):
      draw.text((pad + j * (width + pad) + 1, 1), title, fill=(0, 0, 0), font=_font())
    grid = np.asarray(image)
  return grid


def labelled_grid(inputs: np.ndarray, outputs: np.ndarray, names: Sequence[str],
                  header: str, upscale: Optional[int] = None) -> np.ndarray:
  """Rows of ``input | output`` pairs (``[N, H, W, 3]`` in ``[-1, 1]``) with each file name at
  the left and a header line (run, method, radius, strength) on top; uint8 ``[rows, cols, 3]``."""
  inputs, outputs = to_uint8(inputs), to_uint8(outputs)
  count, height, width, _ = inputs.shape
  upscale = upscale or max(1, 96 // max(height, 1))
  height, width, pad = height * upscale, width * upscale, 2
  label_width, header_height = 110, 16
  grid = np.full((header_height + count * (height + pad) + pad, label_width + 2 * (width + pad) +
                  pad, 3), 255, np.uint8)
  for i in range(count):
    top = header_height + pad + i * (height + pad)
    for j, column in enumerate((inputs, outputs)):
      left = label_width + pad + j * (width + pad)
      grid[top:top + height, left:left + width] = np.repeat(np.repeat(column[i], upscale, 0),
                                                            upscale, 1)
  image = Image.fromarray(grid)
  draw = ImageDraw.Draw(image)
  draw.text((2, 2), header, fill=(0, 0, 0), font=_font())
  for i, name in enumerate(names):
    draw.text((2, header_height + pad + i * (height + pad) + height // 2 - 5), name[:18],
              fill=(0, 0, 0), font=_font())
  return np.asarray(image)


def sample_grid(samples: np.ndarray, upscale: int = 2) -> np.ndarray:
  """Near-square grid of samples ``[N, H, W, 3]`` in ``[-1, 1]``: ``ceil(sqrt(N))`` columns.

  The last column is padded with white tiles. Returns uint8 ``[rows, cols, 3]``.
  """
  samples = np.asarray(samples)
  columns = int(np.ceil(np.sqrt(len(samples))))
  padded = np.concatenate([samples, np.ones((-len(samples) % columns,) + samples.shape[1:])])
  return image_grid(list(padded.reshape((columns, -1) + samples.shape[1:])), upscale=upscale)


def save_png(path: str, image: np.ndarray):
  """Writes uint8 ``[H, W, 3]`` as PNG, creating the folder."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(image).save(path)


def clip_grid(clips: Sequence[np.ndarray], names: Sequence[str], header: str = '',
              upscale: Optional[int] = None) -> np.ndarray:
  """One row per clip ``[T, H, W, 3]`` in ``[-1, 1]`` (its frames left to right), its name (up
  to 48 characters; the label column widens to fit) at the left and an optional header line on
  top; uint8 ``[rows, cols, 3]``."""
  clips = [to_uint8(c) for c in clips]
  frames, height, width, _ = clips[0].shape
  upscale = upscale or max(1, 64 // max(height, 1))
  height, width, pad = height * upscale, width * upscale, 2
  label_width = max(96, 6 * max((len(n) for n in names), default=0) + 8)  # ~6 px a character.
  header_height = 16 if header else 2
  grid = np.full((header_height + len(clips) * (height + pad) + pad,
                  label_width + frames * (width + pad) + pad, 3), 255, np.uint8)
  for i, clip in enumerate(clips):
    top = header_height + pad + i * (height + pad)
    for t, frame in enumerate(clip):
      left = label_width + pad + t * (width + pad)
      grid[top:top + height, left:left + width] = np.repeat(np.repeat(frame, upscale, 0),
                                                            upscale, 1)
  image = Image.fromarray(grid)
  draw = ImageDraw.Draw(image)
  if header:
    draw.text((2, 2), header, fill=(0, 0, 0), font=_font())
  for i, name in enumerate(names):
    draw.text((2, header_height + pad + i * (height + pad) + height // 2 - 5), name[:48],
              fill=(0, 0, 0), font=_font())
  return np.asarray(image)


def write_video(path: str, clip: np.ndarray, fps: float = 8.0, upscale: int = 1) -> str:
  """Writes a clip ``[T, H, W, 3]`` (float in ``[-1, 1]`` or uint8) as ``.mp4`` (H.264 through
  imageio's ffmpeg plugin, imageio-ffmpeg's bundled binary; sides rounded up to even by edge
  padding) or ``.gif`` (PIL, looping), by the path's extension, ``upscale`` x nearest; creates
  the folder. Returns ``path``.

  Raises:
    ValueError: another extension, or a clip that is not ``[T, H, W, 3]``.
  """
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f'write_video: clip must be [T, H, W, 3], got {clip.shape}')
  frames = clip if clip.dtype == np.uint8 else to_uint8(clip)
  frames = np.repeat(np.repeat(frames, upscale, 1), upscale, 2)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  extension = os.path.splitext(path)[1].lower()
  if extension == '.gif':
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=int(round(1000 / fps)))
  elif extension == '.mp4':
    import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
    height, width = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode='edge')
    with imageio.get_writer(path, fps=fps, codec='libx264', quality=9, macro_block_size=1,
                            ffmpeg_log_level='error') as writer:
      for frame in frames:
        writer.append_data(frame)
  else:
    raise ValueError(f'write_video: {path}: the extension must be .mp4 or .gif')
  return path
