"""tfds builders for the datasets the library ships with or points to (array_record, no TF).

Each builder writes ``array_record`` files that :func:`tfds.data_source` reads back with random
access as NumPy, pixel-exact (images are stored PNG-encoded). Images are stored at their
native size; resizing and cropping happen in the input pipeline (:mod:`phipd_jax.data.pipeline`).

Held-out splits follow fixed, documented rules so that training never sees them:

* ``skimage_photos``: the seven colour photographs bundled in scikit-image (no download).
  ``train`` = the left two thirds of every photo (columns ``< 2W/3``); ``test`` = the right third.
* ``edges2shoes_handbags``: pix2pix "AB" images (photo left, edge map right) from a folder,
  default ``../shared/data/edges2shoes_handbags/train``. Files sorted by their numeric id;
  every 10th (ids ``i`` with ``i % 10 == 0``) is ``test``, the rest ``train``.
* ``bsds500``: BSDS500's own ``train``/``val``/``test`` folders, with the mean of the human
  boundary maps as ``boundaries`` (uint8, 255 = every annotator marked a boundary).
* ``camera_motion_clips``: synthetic 8-frame camera-motion clips (pan, zoom, rotate, mixed)
  over the BSDS500 photos, with the cameras that give their exact flow; BSDS500's splits.
* ``video_folder_clips``: 8-frame 64-pixel clips of real videos (video files and frame folders,
  :mod:`phipd_jax.data.videos`) from a folder, default ``../shared/data/videos``, with their
  optical flow estimated at build time (:mod:`phipd_jax.data.optical_flow`). Videos in natural
  order of their paths; every 10th (sorted index ``i`` with ``i % 10 == 0``, so the first) is
  ``test``, the rest ``train``; a folder of one video alternates its clips (even -> ``train``,
  odd -> ``test``).

A prepared copy records what it was built from in :data:`FINGERPRINT_FILE` beside its data: the
sorted relative names, sizes and modification times of the source files (hashed), or, for
``skimage_photos``, the scikit-image version. :func:`prepared_builder` rebuilds a copy whose
source has changed, saying why in one line; a copy without the record (prepared by an older
version) is rebuilt too. Preparation prints one line of its own (no tfds banner or progress bars).
Every image or ``.mat`` file that cannot be decoded is reported by its path.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sys
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')

SKIMAGE_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field',
                  'immunohistochemistry', 'retina')
SKIMAGE_TRAIN_FRACTION = 2 / 3
EDGES2SHOES_TEST_EVERY = 10
VIDEO_TEST_EVERY = 10
FINGERPRINT_FILE = 'phipd_source.json'  # In the prepared copy's version folder.


def read_rgb(path: str) -> np.ndarray:
  """The image at ``path`` as uint8 ``[H, W, 3]``.

  Raises:
    ValueError: the file cannot be decoded (truncated, corrupt, not an image); names ``path``.
  """
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    raise ValueError(f'{path}: unreadable image ({type(error).__name__}: {error})') from error


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array[..., 0] if array.shape[-1:] == (1,) else array).save(buffer, format='PNG')
  return buffer.getvalue()


class _Quiet:
  """Mixin: no tfds "Downloading and preparing ..." / "... downloaded and prepared" banners."""

  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass


class SkimagePhotos(_Quiet, tfds.core.GeneratorBasedBuilder):
  """The colour photographs bundled with scikit-image; the embedded default (no download)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'name': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples('train'), 'test': self._generate_examples('test')}

  def _generate_examples(self, split: str) -> Iterator:
    import skimage.data  # pylint: disable=g-import-not-at-top
    for name in SKIMAGE_PHOTOS:
      photo = getattr(skimage.data, name)()[..., :3]
      boundary = int(round(photo.shape[1] * SKIMAGE_TRAIN_FRACTION))
      part = photo[:, :boundary] if split == 'train' else photo[:, boundary:]
      yield name, {'image': _png(np.ascontiguousarray(part)), 'name': name}


def pix2pix_files(folder: str) -> list[tuple[int, str]]:
  """``(id, path)`` of the ``<id>_AB.<ext>`` (or ``<id>.<ext>``) images in ``folder``, by id.

  Raises:
    FileNotFoundError: the folder is missing or holds no such image.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'pix2pix folder not found: {folder}')
  files = []
  for name in os.listdir(folder):
    match = re.match(r'^(\d+)(_AB)?\.(jpg|jpeg|png)$', name, re.IGNORECASE)
    if match:
      files.append((int(match.group(1)), os.path.join(folder, name)))
  if not files:
    raise FileNotFoundError(f'no <id>_AB.jpg images in {folder}')
  return sorted(files)


def pix2pix_splits(files: list[tuple[int, str]]) -> dict[str, list[tuple[int, str]]]:
  """``{'train': ..., 'test': ...}`` of :func:`pix2pix_files` by the every-10th-id rule."""
  return {'train': [f for f in files if f[0] % EDGES2SHOES_TEST_EVERY != 0],
          'test': [f for f in files if f[0] % EDGES2SHOES_TEST_EVERY == 0]}


class Edges2ShoesHandbags(_Quiet, tfds.core.GeneratorBasedBuilder):
  """pix2pix AB pairs (photo left half, edge map right half) as ``photo`` and ``edges``.

  The folder is ``download_config.manual_dir`` (default: the shared copy beside the repo).
  """

  name = 'edges2shoes_handbags'  # tfds would derive 'edges2_shoes_handbags' from the class name.
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'A folder of <id>_AB.jpg images, photo left, edge map right.'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'photo': tfds.features.Image(shape=(None, None, 3)),
            'edges': tfds.features.Image(shape=(None, None, 3)),
            'id': np.int64,
        }),
    )

  def _split_generators(self, dl_manager):
    folder = os.fspath(dl_manager.manual_dir)
    splits = pix2pix_splits(pix2pix_files(folder))
    # tfds cannot write an empty split: a folder without test ids has no 'test' split.
    return {split: self._generate_examples(files) for split, files in splits.items() if files}

  def _generate_examples(self, files) -> Iterator:
    for index, path in files:
      pair = read_rgb(path)
      half = pair.shape[1] // 2
      if not half:
        raise ValueError(f'{path}: {pair.shape[1]} pixels wide, not an AB pair (photo | edges)')
      yield index, {'photo': _png(pair[:, :half]), 'edges': _png(pair[:, half:2 * half]),
                    'id': index}


BSDS500_SPLITS = ('train', 'val', 'test')


def bsds500_splits(root: str) -> dict[str, list[str]]:
  """``{split: sorted paths of images/<split>/*.jpg}`` of a BSDS500 folder.

  Raises:
    FileNotFoundError: ``images/<split>`` is missing for one of :data:`BSDS500_SPLITS`.
  """
  splits = {}
  for split in BSDS500_SPLITS:
    image_dir = os.path.join(root, 'images', split)
    if not os.path.isdir(image_dir):
      raise FileNotFoundError(f'BSDS500 split folder not found: {image_dir}')
    splits[split] = sorted(os.path.join(image_dir, name) for name in os.listdir(image_dir)
                           if name.endswith('.jpg'))
  return splits


def bsds500_truth(image_path: str) -> str:
  """``<root>/groundTruth/<split>/<stem>.mat`` of ``<root>/images/<split>/<stem>.jpg``."""
  image_dir, name = os.path.split(image_path)
  split_dir, split = os.path.split(image_dir)
  return os.path.join(os.path.dirname(split_dir), 'groundTruth', split, name[:-4] + '.mat')


class _Bsds500Splits:
  """Mixin: one split per BSDS500 split folder of ``manual_dir`` that holds images."""

  def _split_generators(self, dl_manager):
    splits = bsds500_splits(os.fspath(dl_manager.manual_dir))
    # tfds cannot write an empty split: a split folder without images is left out.
    return {split: self._generate_examples(files) for split, files in splits.items() if files}


class Bsds500(_Bsds500Splits, _Quiet, tfds.core.GeneratorBasedBuilder):
  """BSDS500 photos with the mean human boundary map (Arbelaez et al., TPAMI 2011)."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'The BSDS500 folder with images/ and groundTruth/.'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'boundaries': tfds.features.Image(shape=(None, None, 1)),
            'id': tfds.features.Text(),
        }),
    )

  def _generate_examples(self, files) -> Iterator:
    import scipy.io  # pylint: disable=g-import-not-at-top
    for path in files:
      stem = os.path.basename(path)[:-4]
      image = read_rgb(path)
      mat = bsds500_truth(path)
      try:
        truth = scipy.io.loadmat(mat)
        maps = [truth['groundTruth'][0, k]['Boundaries'][0, 0]
                for k in range(truth['groundTruth'].shape[1])]
      except Exception as error:  # scipy raises several types (and a KeyError if misnamed).
        raise ValueError(f'{mat}: unreadable ground truth ({type(error).__name__}: '
                         f'{error})') from error
      mean = np.mean(np.stack(maps).astype(np.float32), axis=0)
      boundaries = np.round(255 * mean).astype(np.uint8)[..., None]
      yield stem, {'image': _png(image), 'boundaries': _png(boundaries), 'id': stem}


def clip_frames_feature(frames: int, size: int) -> tfds.features.Tensor:
  """The ``frames`` feature of the clip builders: uint8 ``[T, S, S, 3]``, zlib-compressed."""
  return tfds.features.Tensor(shape=(frames, size, size, 3), dtype=np.uint8, encoding='zlib')


class CameraMotionClips(_Bsds500Splits, _Quiet, tfds.core.GeneratorBasedBuilder):
  """Synthetic camera-motion clips over BSDS500 photos, with the cameras that give their exact
  optical flow (:mod:`phipd_jax.data.clips`).

  Every photo of a BSDS500 split gives one clip per motion (pan, zoom, rotate, mixed) of
  :attr:`FRAMES` frames of :attr:`SIZE` pixels, drawn from a generator seeded by the photo's id
  and the motion (the same clips on every machine). Features: ``frames`` (uint8
  ``[T, S, S, 3]``), ``affines`` (float32 ``[T, 2, 3]``, frame pixel -> photo pixel; the flow is
  :func:`phipd_jax.data.clips.clip_flow` of them), ``motion`` and ``id`` (``<photo>_<motion>``).
  The splits are BSDS500's: clips of held-out photos are held out.
  """

  name = 'camera_motion_clips'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'The BSDS500 folder with images/<split>/*.jpg.'
  FRAMES = 8
  SIZE = 64

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'frames': clip_frames_feature(self.FRAMES, self.SIZE),
            'affines': tfds.features.Tensor(shape=(self.FRAMES, 2, 3), dtype=np.float32),
            'motion': tfds.features.Text(),
            'id': tfds.features.Text(),
        }),
    )

  def _generate_examples(self, files) -> Iterator:
    from phipd_jax.data import clips  # pylint: disable=g-import-not-at-top
    for path in files:
      stem = os.path.basename(path)[:-4]
      photo = read_rgb(path)
      for motion in clips.MOTIONS:
        seed = int(hashlib.sha256(f'{stem}/{motion}'.encode()).hexdigest()[:8], 16)
        frames, affines = clips.synthetic_clip(photo, np.random.default_rng(seed), motion,
                                               self.FRAMES, self.SIZE)
        key = f'{stem}_{motion}'
        yield key, {'frames': frames, 'affines': affines, 'motion': motion, 'id': key}


def video_folder_splits(folder: str) -> dict[str, list[str]]:
  """``{'train': ..., 'test': ...}``: the videos of ``folder`` (:mod:`phipd_jax.data.videos`).

  Videos sorted by path (natural order); those with sorted index ``i % VIDEO_TEST_EVERY == 0``
  are ``test`` (the first, the 11th, ...), the rest ``train``. A folder of one video gives it
  to both splits: :class:`VideoFolderClips` then alternates its clips. The rule is on positions,
  so adding or removing a video can move later ones between splits (a changed folder is
  rebuilt: :func:`prepared_builder`).

  Raises:
    FileNotFoundError: the folder is missing or holds no video.
    ValueError: a folder holds both frame images and video files (named).
  """
  from phipd_jax.data import videos  # pylint: disable=g-import-not-at-top
  paths = videos.list_videos(folder)
  if len(paths) == 1:
    return {'train': paths, 'test': paths}
  return {'train': [p for i, p in enumerate(paths) if i % VIDEO_TEST_EVERY],
          'test': [p for i, p in enumerate(paths) if not i % VIDEO_TEST_EVERY]}


def video_names(paths: list[str], folder: str) -> dict[str, str]:
  """``{path: name}``: each video's name in ``id``, its path relative to ``folder``
  (``/``-separated) without the file extension (``sub/clip1.mp4`` -> ``sub/clip1``); the
  extension is kept where names would clash (``a.mp4`` and ``a.gif``, or a frame folder ``a``
  beside them); ``folder``'s own name when ``folder`` is itself a frame folder."""
  relative = {}
  for path in paths:
    name = os.path.relpath(path, folder)
    relative[path] = (os.path.basename(os.path.abspath(folder)) if name == os.curdir
                      else name).replace(os.sep, '/')
  stems = {path: name if os.path.isdir(path) else os.path.splitext(name)[0]
           for path, name in relative.items()}
  counts = collections.Counter(stems.values())
  return {path: stem if counts[stem] == 1 else relative[path] for path, stem in stems.items()}


class VideoFolderClips(_Quiet, tfds.core.GeneratorBasedBuilder):
  """Clips of real videos with their estimated optical flow.

  Every video (file or frame folder) of ``download_config.manual_dir`` (default: the shared
  folder beside the repo) gives its consecutive, non-overlapping clips of :attr:`FRAMES`
  frames (stride 1) of :attr:`SIZE` pixels (short side resized, bicubic antialiased, centre
  crop): :func:`phipd_jax.data.videos.read_video_clips`; the remainder too short for a clip is
  dropped. Features: ``frames`` (uint8 ``[T, S, S, 3]``, as ``camera_motion_clips``), ``flow``
  (float32 ``[T - 1, S, S, 2]``, ``(dx, dy)`` pixels, forward:
  :func:`phipd_jax.data.optical_flow.estimate_flow` of the frames) and ``id``
  (``<video name>/<clip index>``, :func:`video_names`). Splits: :func:`video_folder_splits`.
  A video that cannot be used (unreadable, no frames, mixed frame sizes, shorter than a clip) is
  skipped; the skipped ones are printed to stderr, with their count and reasons, after each
  split. A split left without clips is an error.
  """

  name = 'video_folder_clips'
  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('A folder of videos (.mp4 .avi .mov .mkv .webm .gif) and/or '
                                  'frame folders (the frames of one video as images).')
  FRAMES = 8
  SIZE = 64

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'frames': clip_frames_feature(self.FRAMES, self.SIZE),
            'flow': tfds.features.Tensor(shape=(self.FRAMES - 1, self.SIZE, self.SIZE, 2),
                                         dtype=np.float32),
            'id': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    folder = os.fspath(dl_manager.manual_dir)
    splits = video_folder_splits(folder)
    alternate = splits['train'] == splits['test']
    names = video_names(sorted({path for files in splits.values() for path in files}), folder)
    # tfds cannot write an empty split: a folder of 2-9 videos still has one test video.
    return {split: self._generate_examples(split, files, folder, names, alternate)
            for split, files in splits.items() if files}

  def _generate_examples(self, split: str, files: list[str], folder: str,
                         names: dict[str, str], alternate: bool) -> Iterator:
    from phipd_jax.data import optical_flow, videos  # pylint: disable=g-import-not-at-top
    skipped, written = [], 0
    for path in files:
      try:
        clips = videos.read_video_clips(path, length=self.FRAMES, size=self.SIZE)
      except ValueError as error:
        skipped.append(str(error))
        continue
      for index, frames in enumerate(clips):
        if alternate and (index % 2 == 1) != (split == 'test'):
          continue
        key = f'{names[path]}/{index}'
        yield key, {'frames': frames, 'flow': optical_flow.estimate_flow(frames), 'id': key}
        written += 1
    if skipped:
      print(f'{self.name}: skipped {len(skipped)} of {len(files)} videos of split {split!r}:',
            file=sys.stderr, flush=True)
      for reason in skipped:
        print(f'  {reason}', file=sys.stderr, flush=True)
    if not written:
      why = ('; '.join(skipped) if skipped else
             f'its one video gives a single clip of {self.FRAMES} frames (the test split takes '
             'the odd clips)')
      raise ValueError(f'{self.name}: split {split!r} of {folder} has no clips: {why}')


BUILDERS = {
    'skimage_photos': (SkimagePhotos, None),
    'edges2shoes_handbags': (Edges2ShoesHandbags,
                             os.path.join(SHARED_DATA, 'edges2shoes_handbags', 'train')),
    'bsds500': (Bsds500, os.path.join(SHARED_DATA, 'bsds500')),
    'camera_motion_clips': (CameraMotionClips, os.path.join(SHARED_DATA, 'bsds500')),
    'video_folder_clips': (VideoFolderClips, os.path.join(SHARED_DATA, 'videos')),
}


def source_splits(name: str, folder: str) -> dict[str, list[str]]:
  """``{split: image paths}`` that the folder builder ``name`` reads from ``folder`` (for
  ``video_folder_clips``: video files and frame folders).

  Raises:
    FileNotFoundError: the folder, a split folder of it, or all of its images are missing.
    ValueError: (``video_folder_clips``) a folder holds both frame images and video files.
  """
  if name == 'edges2shoes_handbags':
    return {split: [path for _, path in files]
            for split, files in pix2pix_splits(pix2pix_files(folder)).items()}
  if name in ('bsds500', 'camera_motion_clips'):
    splits = bsds500_splits(folder)
    if not any(splits.values()):
      raise FileNotFoundError(f'no .jpg images in {folder}/images/{{{",".join(splits)}}}')
    return splits
  if name == 'video_folder_clips':
    return video_folder_splits(folder)
  raise KeyError(f'{name!r} has no source folder')


def source_fingerprint(name: str, folder: Optional[str]) -> dict:
  """What a prepared copy of ``name`` is built from (reads file metadata only).

  Args:
    name: one of :data:`BUILDERS`.
    folder: its source folder; ``None`` for ``skimage_photos``.

  Returns:
    ``{'source', 'entries', 'digest'}``: for a folder, ``entries`` maps the path (relative to
    ``folder``) of every file the builder reads (images, ground truth, video files, the frames
    of frame folders) to ``[size, mtime_ns]``;
    for ``skimage_photos``, the scikit-image version and the photo names. ``digest`` is the
    SHA-256 of the sorted entries (independent of where the folder is).

  Raises:
    FileNotFoundError: as :func:`source_splits`.
  """
  if folder is None:
    import skimage  # pylint: disable=g-import-not-at-top
    source = f'scikit-image {skimage.__version__} photos'
    entries = {'scikit-image': skimage.__version__, 'photos': list(SKIMAGE_PHOTOS)}
  else:
    source = os.path.abspath(folder)
    paths = [path for files in source_splits(name, folder).values() for path in files]
    if name == 'bsds500':
      paths += [bsds500_truth(path) for path in paths if os.path.exists(bsds500_truth(path))]
    if name == 'video_folder_clips':  # A frame folder: its frames (a folder's mtime misses edits).
      from phipd_jax.data import videos  # pylint: disable=g-import-not-at-top
      paths = [frame for path in paths
               for frame in (videos.frame_files(path) if os.path.isdir(path) else [path])]
    entries = {}
    for path in sorted(set(paths)):
      stat = os.stat(path)
      entries[os.path.relpath(path, folder)] = [stat.st_size, stat.st_mtime_ns]
  digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
  return {'source': source, 'entries': entries, 'digest': digest}


def fingerprint_change(old: dict, new: dict) -> str:
  """What changed between two :func:`source_fingerprint` results, e.g. ``1 files added, ...``."""
  if 'scikit-image' in new['entries']:
    return (f"scikit-image {old['entries'].get('scikit-image')} -> "
            f"{new['entries']['scikit-image']}")
  before, after = old['entries'], new['entries']
  added = len(after.keys() - before.keys())
  removed = len(before.keys() - after.keys())
  changed = sum(before[key] != after[key] for key in after.keys() & before.keys())
  return f'{added} files added, {removed} removed, {changed} changed'


def read_fingerprint(dataset_dir: str) -> Optional[dict]:
  """The :data:`FINGERPRINT_FILE` record of a prepared copy; ``None`` if absent or unreadable."""
  try:
    with open(os.path.join(dataset_dir, FINGERPRINT_FILE)) as f:
      record = json.load(f)
    return record if isinstance(record, dict) and 'digest' in record else None
  except (OSError, ValueError):
    return None


def _write_fingerprint(dataset_dir: str, fingerprint: dict) -> None:
  path = os.path.join(dataset_dir, FINGERPRINT_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(fingerprint, f)
  os.replace(path + '.tmp', path)


@dataclasses.dataclass(frozen=True)
class Preparation:
  """Where a shipped dataset is (or will be) prepared, from what, and whether it is current.

  Attributes:
    name: the :data:`BUILDERS` name.
    folder: the source folder (``None``: the scikit-image photos).
    label: the source as the config sets it, for messages (``data.dir=...``).
    data_dir: the tfds ``data_dir`` given to the builder.
    dataset_dir: the prepared copy, ``<data_dir>/<name>/<version>``.
    fingerprint: :func:`source_fingerprint` of the source now.
    prepared: a prepared copy exists.
    change: what differs in the source since the prepared copy ('' if current or absent).
    stale: why the prepared copy must be rebuilt, one line ('' if it is current or absent).
  """

  name: str
  folder: Optional[str]
  label: str
  data_dir: str
  dataset_dir: str
  fingerprint: dict
  prepared: bool
  change: str
  stale: str

  @property
  def up_to_date(self) -> bool:
    return self.prepared and not self.stale


def plan_preparation(name: str, data_dir: str, manual_dir: Optional[str] = None) -> Preparation:
  """Reads (never writes) where ``name`` is prepared and whether that copy matches its source.

  Args:
    name: one of :data:`BUILDERS`.
    data_dir: the tfds root (``data.tfds_dir``).
    manual_dir: the source folder (``data.dir``); ``None`` for the shipped default. Ignored by
      ``skimage_photos``, which reads no folder.

  Raises:
    FileNotFoundError: the source folder is missing or holds none of the builder's images.
  """
  builder_class, default_dir = BUILDERS[name]
  folder = (manual_dir or default_dir) if default_dir is not None else None
  label = 'the installed scikit-image'
  if folder is not None:
    label = f'data.dir={manual_dir}' if manual_dir else f"data.dir='' (default {default_dir})"
    if not os.path.isdir(folder):
      raise FileNotFoundError(f'data: source folder for {name!r} not found: {label} '
                              '(set --config.data.dir)')
    if manual_dir and manual_dir != default_dir:
      tag = re.sub(r'[^A-Za-z0-9]+', '_', os.path.abspath(manual_dir)).strip('_')[-80:]
      data_dir = os.path.join(data_dir, 'custom', tag)
  try:
    fingerprint = source_fingerprint(name, folder)
  except FileNotFoundError as error:
    raise FileNotFoundError(f'data: {label}: {error} ({builder_class.__name__}: '
                            f'{builder_class.MANUAL_DOWNLOAD_INSTRUCTIONS})') from error
  builder = builder_class(data_dir=data_dir, file_format='array_record')
  prepared = bool(os.path.isdir(builder.data_dir) and builder.info.splits)
  change = stale = ''
  if prepared:
    old = read_fingerprint(builder.data_dir)
    if old is None:
      change = 'it records no source fingerprint: prepared by an older phipd_jax'
      stale = (f'the prepared copy in {builder.data_dir} records no source fingerprint (prepared '
               'by an older phipd_jax)')
    elif old['digest'] != fingerprint['digest']:
      change = fingerprint_change(old, fingerprint)
      what = label if folder is not None else 'the scikit-image photos'
      stale = f'{what} changed since the prepared copy in {builder.data_dir} ({change})'
  return Preparation(name, folder, label, data_dir, builder.data_dir, fingerprint, prepared,
                     change, stale)


@contextlib.contextmanager
def _no_progress_bars():
  """tfds progress bars off while one of our builders prepares; the caller's setting restored."""
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  previous = tqdm_utils._active  # pylint: disable=protected-access
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(previous)


def prepared_builder(name: str, data_dir: str, manual_dir: Optional[str] = None):
  """The tfds builder for one of :data:`BUILDERS`, prepared under ``data_dir`` and current.

  A custom ``manual_dir`` (e.g. any pix2pix AB folder) is prepared in its own sub-directory of
  ``data_dir`` so that it never mixes with the default copy. The copy is built on first use and
  rebuilt (one line says why) when its recorded source fingerprint differs from the source's.

  Raises:
    FileNotFoundError: the source folder is missing or holds no images.
    ValueError: a source file cannot be decoded (named).
  """
  plan = plan_preparation(name, data_dir, manual_dir)
  builder_class = BUILDERS[name][0]
  if plan.up_to_date:
    return builder_class(data_dir=plan.data_dir, file_format='array_record')
  if plan.prepared:
    print(f'{plan.stale}; rebuilding it', flush=True)
    shutil.rmtree(plan.dataset_dir)
  print(f"preparing {name} from {plan.fingerprint['source']} into {plan.dataset_dir} ...",
        flush=True)
  builder = builder_class(data_dir=plan.data_dir, file_format='array_record')
  with _no_progress_bars():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=plan.folder))
  _write_fingerprint(builder.data_dir, plan.fingerprint)
  return builder


JPEG_END_SEARCH_BYTES = 1024  # A JPEG's end-of-image marker must lie in its last KiB.
SUSPICIOUS_SIZE_FRACTION = 0.25  # Files under this fraction of the median size are decoded.


def check_images(paths: list[str]) -> None:
  """Cheap check that every image in ``paths`` will decode (what :func:`read_rgb` reads).

  Paths of videos (a video file or a frame folder: ``video_folder_clips``) go to
  :func:`check_videos` instead, which raises only when none of them is usable, and prints the
  ones the builder will skip to stderr.

  Every file is opened (header parsed) and ``verify()``-ed (for PNG that checks every chunk's
  CRC; for JPEG it checks nothing more), and a JPEG must end with its end-of-image marker, which a
  truncated file lacks. A file that fails the marker test, or is smaller than
  :data:`SUSPICIOUS_SIZE_FRACTION` of the median size, is decoded in full. Damage inside the
  entropy-coded data of a full-size JPEG is only found when the builder decodes it (named too).

  Raises:
    ValueError: the first unreadable file, named by its path.
  """
  if not paths:
    return
  from phipd_jax.data import videos  # pylint: disable=g-import-not-at-top
  if any(os.path.isdir(path) or path.lower().endswith(videos.VIDEO_EXTENSIONS)
         for path in paths):
    skipped = check_videos(paths)
    if skipped:
      print(f'{len(skipped)} of {len(set(paths))} videos will be skipped by the builder:',
            file=sys.stderr, flush=True)
      for reason in skipped:
        print(f'  {reason}', file=sys.stderr, flush=True)
    return
  sizes = [os.path.getsize(path) for path in paths]
  small = SUSPICIOUS_SIZE_FRACTION * float(np.median(sizes))
  for path, size in zip(paths, sizes):
    try:
      with Image.open(path) as image:
        image_format = image.format
        image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
      raise ValueError(f'{path}: unreadable image ({type(error).__name__}: {error})') from error
    suspicious = size < small
    if image_format == 'JPEG' and not suspicious:
      with open(path, 'rb') as f:
        f.seek(max(0, size - JPEG_END_SEARCH_BYTES))
        suspicious = b'\xff\xd9' not in f.read()
    if suspicious:
      read_rgb(path)


def check_videos(paths: list[str]) -> list[str]:
  """Cheap check of the videos (video files, frame folders) in ``paths``: each one's header and
  first frame are decoded, a frame folder's every frame header read and ``verify()``-ed, with
  one size (:func:`phipd_jax.data.videos.check_video`; tens of ms a video file). A video too
  short for a clip, or damaged past its first frame, is found only when the builder reads it.

  Returns:
    The reason (naming the file) for every video that the builder would skip, in order.

  Raises:
    ValueError: no video is usable (gives every reason).
  """
  from phipd_jax.data import videos  # pylint: disable=g-import-not-at-top
  unique = list(dict.fromkeys(paths))
  skipped = []
  for path in unique:
    try:
      videos.check_video(path)
    except (ValueError, FileNotFoundError) as error:
      skipped.append(str(error))
  if unique and len(skipped) == len(unique):
    raise ValueError(f'no usable video: {"; ".join(skipped)}')
  return skipped
