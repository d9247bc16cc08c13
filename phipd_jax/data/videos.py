"""Real videos as clips: video files and frame folders read into uint8 ``[K, T, S, S, 3]`` clips.

A *video* is either a video file (:data:`VIDEO_EXTENSIONS`) or a *frame folder*: a folder whose
image files (:data:`IMAGE_EXTENSIONS`) are its frames, in natural order of their names
(``frame_2`` before ``frame_10``). Video files are decoded by ffmpeg through imageio's
``FFMPEG`` plugin (the ``imageio-ffmpeg`` package ships the ffmpeg binary), every frame as RGB
at the container's frame rate; GIFs and frame folders are decoded by Pillow (each GIF frame
composited as Pillow does, gray, palette and RGBA frames converted to RGB).

Units: frames are counted in frames of the source (no resampling in time), sizes in pixels.
A clip of ``length`` frames with ``stride`` takes every ``stride``-th frame; clip ``k`` of a
video starts at frame ``k * step``, so frame ``j`` of clip ``k`` is source frame
``k * step + j * stride``. Frames are resized (short side to ``size``, bicubic, antialiased:
:func:`phipd_jax.data.pipeline.resize_short_side`) and centre-cropped, frame by frame, so a clip
holds exactly the pixels that the image pipeline gives a still of the same frame.

Problems are reported by file, never silently: a file that cannot be decoded, a video without
frames, a frame folder with frames of different sizes and a video too short for one clip each
raise a ``ValueError`` naming the file; :func:`read_clips` skips such videos and returns them
with the reason for the caller to print.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Optional

import numpy as np
from PIL import Image, ImageSequence

from phipd_jax.data import pipeline

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.gif')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')
CROPS = ('center', None)
# ffmpeg's lines that say what went wrong (the rest of its log is banner and stream listing).
_FFMPEG_REASON = re.compile(r'error|invalid|not found|partial file|corrupt|no such|'
                            r'does not contain|unsupported|could not', re.IGNORECASE)
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def natural_key(name: str) -> tuple:
  """Sort key that orders the digit runs of ``name`` by value: ``frame_2 < frame_10``."""
  parts = re.split(r'(\d+)', name)
  return tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts)), name


def _has_extension(path: str, extensions: tuple[str, ...]) -> bool:
  return os.path.splitext(path)[1].lower() in extensions


def _visible(folder: str) -> list[str]:
  """The names in ``folder`` that are not hidden (``.DS_Store``, ``._x.mp4``), natural order."""
  return sorted((name for name in os.listdir(folder) if not name.startswith('.')),
                key=natural_key)


def frame_files(folder: str) -> list[str]:
  """The image files of a frame folder (not its sub-folders), in natural order of their names.

  Raises:
    FileNotFoundError: ``folder`` is missing.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'frame folder not found: {folder}')
  return [os.path.join(folder, name) for name in _visible(folder)
          if _has_extension(name, IMAGE_EXTENSIONS)
          and os.path.isfile(os.path.join(folder, name))]


def _videos_in(folder: str) -> list[str]:
  """The videos under ``folder``: itself if it is a frame folder, else its video files and the
  videos of its sub-folders."""
  names = _visible(folder)
  images = [name for name in names if _has_extension(name, IMAGE_EXTENSIONS)]
  files = [name for name in names if _has_extension(name, VIDEO_EXTENSIONS)]
  if images and files:
    raise ValueError(f'{folder}: holds both frame images ({images[0]}, ...) and video files '
                     f'({files[0]}, ...); put the frames of each video in a folder of its own')
  if images:
    return [folder]
  videos = []
  for name in names:
    path = os.path.join(folder, name)
    if os.path.isdir(path):
      videos.extend(_videos_in(path))
    elif name in files and os.path.isfile(path):
      videos.append(path)
  return videos


def list_videos(path: str) -> list[str]:
  """The videos at ``path``, sorted (natural order of their paths).

  Args:
    path: a video file (:data:`VIDEO_EXTENSIONS`), a frame folder (a folder holding image files
      (:data:`IMAGE_EXTENSIONS`): one video), or a folder of videos: its video files and, at any
      depth, its sub-folders' video files and frame folders. Hidden names (``.x``) and other
      files (``README.txt``) are ignored.

  Returns:
    Paths of video files and frame folders.

  Raises:
    FileNotFoundError: ``path`` is missing, or is a folder without any video.
    ValueError: ``path`` is a file that is not a video file, or a folder holds both frame images
      and video files (which would be ambiguous); names it.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'videos: not found: {path}')
  if not os.path.isdir(path):
    if not _has_extension(path, VIDEO_EXTENSIONS):
      raise ValueError(f'{path}: not a video file (extensions: {" ".join(VIDEO_EXTENSIONS)}) '
                       'nor a frame folder')
    return [path]
  videos = _videos_in(path)
  if not videos:
    raise FileNotFoundError(f'no videos ({" ".join(VIDEO_EXTENSIONS)}) or frame folders (of '
                            f'{" ".join(IMAGE_EXTENSIONS)} images) in {path}')
  return sorted(videos, key=natural_key)


def _ffmpeg_reason(error: Exception) -> str:
  """The first line of ``error`` and ffmpeg's first line that says what went wrong."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  head = f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__
  for line in lines[1:]:
    line = re.sub(r'^(\[[^\]]*\]\s*)+', '', line)  # '[in#0 @ 0x55...] moov atom not found'
    if _FFMPEG_REASON.search(line):
      return f'{head}; ffmpeg: {line}'
  return head


def _ffmpeg_frames(path: str) -> Iterator[np.ndarray]:
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  try:
    reader = imageio.get_reader(path, format='FFMPEG')
  except Exception as error:  # imageio raises OSError, RuntimeError, ...; name the file anyway.
    raise ValueError(f'{path}: unreadable video ({_ffmpeg_reason(error)})') from error
  with reader:
    frames = iter(reader)
    while True:
      try:
        frame = next(frames)
      except StopIteration:
        return
      except Exception as error:  # A truncated stream: RuntimeError, OSError, ...
        raise ValueError(f'{path}: unreadable video ({_ffmpeg_reason(error)})') from error
      yield pipeline.as_rgb(np.asarray(frame, np.uint8))


def _gif_frames(path: str) -> Iterator[np.ndarray]:
  try:
    image = Image.open(path)
  except _PIL_ERRORS as error:
    raise ValueError(f'{path}: unreadable GIF ({type(error).__name__}: {error})') from error
  with image:
    frames = ImageSequence.Iterator(image)
    index = 0
    while True:
      try:
        frame = np.asarray(frames[index].convert('RGB'))
      except IndexError:
        return
      except _PIL_ERRORS as error:
        raise ValueError(f'{path}: unreadable GIF frame {index} ({type(error).__name__}: '
                         f'{error})') from error
      yield frame
      index += 1


def _read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except _PIL_ERRORS as error:
    raise ValueError(f'{path}: unreadable image ({type(error).__name__}: {error})') from error


def _folder_frames(folder: str) -> Iterator[np.ndarray]:
  first = None
  for path in frame_files(folder):
    frame = _read_image(path)
    if first is None:
      first = (path, frame.shape)
    elif frame.shape != first[1]:
      raise ValueError(f'{path}: frame is {frame.shape[1]}x{frame.shape[0]} pixels but '
                       f'{os.path.basename(first[0])} is {first[1][1]}x{first[1][0]} (a frame '
                       f'folder holds frames of one size)')
    yield frame


def iter_frames(path: str, *, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
  """The frames of one video, uint8 ``[H, W, 3]`` each, in order, decoded one at a time.

  What :func:`read_frames` stacks; use it to process long videos without holding them. Stopping
  early (``max_frames``, or closing the iterator) stops the decoder.

  Raises:
    FileNotFoundError: ``path`` is missing.
    ValueError: ``path`` is not a video, a file or frame that cannot be decoded, or a frame
      folder's frame of another size than its first; names the file.
  """
  if max_frames is not None and (isinstance(max_frames, bool) or max_frames < 1):
    raise ValueError(f'videos: max_frames={max_frames} must be None or >= 1')
  if not os.path.exists(path):
    raise FileNotFoundError(f'videos: not found: {path}')
  if os.path.isdir(path):
    frames = _folder_frames(path)
  elif not _has_extension(path, VIDEO_EXTENSIONS):
    raise ValueError(f'{path}: not a video file (extensions: {" ".join(VIDEO_EXTENSIONS)}) '
                     'nor a frame folder')
  elif os.path.getsize(path) == 0:
    raise ValueError(f'{path}: unreadable video (empty file, 0 bytes)')
  elif _has_extension(path, ('.gif',)):
    frames = _gif_frames(path)
  else:
    frames = _ffmpeg_frames(path)
  try:
    for count, frame in enumerate(frames, start=1):
      yield frame
      if count == max_frames:
        return
  finally:
    frames.close()


def read_frames(path: str, *, max_frames: Optional[int] = None) -> np.ndarray:
  """All frames (or the first ``max_frames``) of a video file or a frame folder.

  Args:
    path: a video file (:data:`VIDEO_EXTENSIONS`) or a frame folder.
    max_frames: read at most this many frames from the start (``None``: all).

  Returns:
    uint8 ``[N, H, W, 3]`` (RGB; gray, palette and RGBA converted), ``N >= 1`` frames of
    ``H x W`` pixels in display order.

  Raises:
    FileNotFoundError: ``path`` is missing.
    ValueError: naming the file: not a video file, unreadable or corrupt (with ffmpeg's or
      Pillow's reason), no frames, or a frame folder whose frames differ in size.
  """
  frames = list(iter_frames(path, max_frames=max_frames))
  if not frames:
    raise ValueError(f'{path}: no frames')
  return np.stack(frames)


def _check_clip_args(length: int, stride: int, step: Optional[int], size: Optional[int],
                     crop: Optional[str]) -> int:
  """Validates the clip arguments; returns the step (default ``length * stride``)."""
  for name, value in (('length', length), ('stride', stride), ('step', step), ('size', size)):
    if value is None and name in ('step', 'size'):
      continue
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
      raise ValueError(f'videos: {name}={value!r} must be an integer >= 1')
  if crop not in CROPS:
    raise ValueError(f'videos: crop={crop!r} must be one of {CROPS}')
  return length * stride if step is None else step


def _fit(frame: np.ndarray, size: Optional[int], crop: Optional[str]) -> np.ndarray:
  """One frame resized (short side ``size``) and centre-cropped to a square (``crop``)."""
  if size is not None:
    frame = pipeline.resize_short_side(frame, size)
  if crop == 'center':
    frame = pipeline.center_crop(frame, min(frame.shape[:2]))
  return frame


def _clip_count(frames: int, length: int, stride: int, step: int) -> int:
  """How many clips ``frames`` frames hold (0 if too few for one)."""
  span = (length - 1) * stride + 1
  return 0 if frames < span else (frames - span) // step + 1


def _too_short(frames: int, length: int, stride: int) -> str:
  span = (length - 1) * stride + 1
  return (f'too short: {frames} frames, but a clip of length={length} with stride={stride} '
          f'needs {span}')


def clips_from_frames(frames: np.ndarray, *, length: int, stride: int = 1,
                      step: Optional[int] = None, size: Optional[int] = None,
                      crop: Optional[str] = 'center') -> np.ndarray:
  """Consecutive clips of one video's frames.

  Clip ``k`` is frames ``k * step + j * stride`` for ``j < length``; every clip that fits in the
  video is returned (a remainder too short for a clip is dropped).

  Args:
    frames: uint8 ``[N, H, W, 3]``.
    length: frames per clip.
    stride: take every ``stride``-th frame (1: consecutive frames), in source frames.
    step: source frames between the starts of consecutive clips; ``None``: ``length * stride``
      (clips follow each other without overlap).
    size: short side, in pixels, each frame is resized to (bicubic, antialiased, as
      :func:`phipd_jax.data.pipeline.resize_short_side`); ``None``: native size.
    crop: ``'center'``: each frame is then centre-cropped to a square (``size x size``, or the
      short side when ``size`` is ``None``); ``None``: no crop (frames keep their aspect).

  Returns:
    uint8 ``[K, length, S, S, 3]`` (``S = size``, or the short side), ``K >= 1``; with
    ``crop=None``, ``[K, length, H', W', 3]``.

  Raises:
    ValueError: ``frames`` is not uint8 ``[N, H, W, 3]``, an argument is out of range, or the
      video is too short for one clip (says how many frames it has and how many are needed).
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f'videos: frames must be uint8 [N, H, W, 3], got {frames.dtype} '
                     f'{frames.shape}')
  step = _check_clip_args(length, stride, step, size, crop)
  count = _clip_count(len(frames), length, stride, step)
  if not count:
    raise ValueError(_too_short(len(frames), length, stride))
  indices = np.arange(count)[:, None] * step + np.arange(length)[None] * stride  # [K, T]
  fitted = {int(index): _fit(frames[index], size, crop) for index in np.unique(indices)}
  return np.stack([np.stack([fitted[int(index)] for index in clip]) for clip in indices])


def _used(index: int, length: int, stride: int, step: int) -> bool:
  """Whether source frame ``index`` is frame ``j < length`` of some clip ``k`` (any ``k``)."""
  for start in range(index - index % step, -1, -step):
    offset = index - start
    if offset > (length - 1) * stride:
      return False
    if offset % stride == 0:
      return True
  return False


def read_video_clips(path: str, *, length: int, stride: int = 1, step: Optional[int] = None,
                     size: Optional[int] = None) -> np.ndarray:
  """The clips of one video: ``clips_from_frames(read_frames(path), ...)`` (centre crop), but
  decoded frame by frame, keeping only the resized frames that a clip uses (a long video is
  never held at full size).

  Returns:
    uint8 ``[K, length, S, S, 3]`` as :func:`clips_from_frames`.

  Raises:
    FileNotFoundError: ``path`` is missing.
    ValueError: as :func:`read_frames` and :func:`clips_from_frames` (too short), naming
      ``path``.
  """
  step = _check_clip_args(length, stride, step, size, 'center')
  kept, count = {}, 0
  for index, frame in enumerate(iter_frames(path)):
    count = index + 1
    if _used(index, length, stride, step):
      kept[index] = _fit(frame, size, 'center')
  if not count:
    raise ValueError(f'{path}: no frames')
  clips = _clip_count(count, length, stride, step)
  if not clips:
    raise ValueError(f'{path}: {_too_short(count, length, stride)}')
  return np.stack([np.stack([kept[k * step + j * stride] for j in range(length)])
                   for k in range(clips)])


def read_clips(path: str, *, length: int, stride: int = 1, step: Optional[int] = None,
               size: Optional[int] = None
               ) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
  """The clips of every video of :func:`list_videos` ``(path)``, bad videos set aside.

  Args:
    path: a video file, a frame folder, or a folder of videos (:func:`list_videos`).
    length, stride, step, size: as :func:`clips_from_frames` (frames centre-cropped square).

  Returns:
    ``(clips, skipped)``: ``clips`` maps each usable video's path (in :func:`list_videos`
    order) to uint8 ``[K, length, S, S, 3]``; ``skipped`` lists ``(path, reason)`` for every
    video that was left out (unreadable or corrupt, no frames, frames of mixed sizes, too short
    for one clip), in the same order. The caller reports ``skipped``.

  Raises:
    FileNotFoundError: as :func:`list_videos`.
    ValueError: an argument is out of range, or no video is usable (gives every reason).
  """
  _check_clip_args(length, stride, step, size, 'center')
  clips, skipped = {}, []
  for video in list_videos(path):
    try:
      clips[video] = read_video_clips(video, length=length, stride=stride, step=step,
                                      size=size)
    except ValueError as error:
      skipped.append((video, str(error)))
  if not clips:
    raise ValueError(f'no usable video in {path}: ' + '; '.join(reason for _, reason in skipped))
  return clips, skipped


def check_video(path: str) -> None:
  """Cheap check that a video will decode: for a video file, its header and first frame are
  decoded (one short ffmpeg run, tens of ms); for a frame folder, every frame's header is read
  and ``verify()``-ed (Pillow) and all must have the first frame's size. Damage later in a
  video file and a video too short for a clip are found only when it is read.

  Raises:
    FileNotFoundError: ``path`` is missing.
    ValueError: as :func:`read_frames`, naming the file.
  """
  if not os.path.isdir(path):
    read_frames(path, max_frames=1)
    return
  files = frame_files(path)
  if not files:
    raise ValueError(f'{path}: no frames')
  first = None
  for file in files:
    try:
      with Image.open(file) as image:
        size = image.size
        image.verify()
    except _PIL_ERRORS as error:
      raise ValueError(f'{file}: unreadable image ({type(error).__name__}: {error})') from error
    if first is None:
      first = (file, size)
    elif size != first[1]:
      raise ValueError(f'{file}: frame is {size[0]}x{size[1]} pixels but '
                       f'{os.path.basename(first[0])} is {first[1][0]}x{first[1][1]} (a frame '
                       f'folder holds frames of one size)')
