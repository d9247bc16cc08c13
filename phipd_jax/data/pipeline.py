"""grain input pipeline: ``[B, H, W, C]`` float32 batches in ``[-1, 1]`` indexed by step.

The training set is a ``grain.MapDataset`` whose element ``s`` is the local batch of step
``s``, so a resumed run reads exactly the batches an uninterrupted run would have read, and each
process reads its own contiguous rows of the global batch (process ``p`` of ``P``: rows
``[p B / P, (p + 1) B / P)``), so any process count assembles the same global batch.

Sources: the builders of :mod:`phipd_jax.data.builders` (``skimage_photos``,
``edges2shoes_handbags``, ``bsds500``) or any tfds catalog name (``cifar10``, ``celeb_a``,
``imagenet2012``, ...) read with ``tfds.data_source`` where it has been downloaded.
:func:`check_source` checks a config's data (read-only, cheap) before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence

import grain
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from phipd_jax.data import builders, clips

# Splits of small datasets are decoded and resized once and kept in memory below this size.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclasses.dataclass(frozen=True)
class Example:
  """A decoded training image (uint8 ``[h, w, 3]``) or clip (uint8 ``[T, h, w, 3]`` with its
  forward flow float32 ``[T - 1, h, w, 2]``, pixels), its class label (0 if none), and the
  block size of the down-then-up sampling applied after the crop (1 = none)."""

  image: np.ndarray  # uint8 [h, w, 3] or [T, h, w, 3]
  label: int
  block: int = 1
  flow: Optional[np.ndarray] = None  # float32 [T - 1, h, w, 2] (dx, dy) for clips.


def parse_domain(domain: str) -> tuple[str, int]:
  """A ``data.domains`` entry as ``(feature, block)``: ``'photo'`` -> ``('photo', 1)``,
  ``'photo:down8'`` -> ``('photo', 8)`` (the feature at the training size, x8 nearest
  downsampled then nearest upsampled: the spectrally sparse source of a super-resolution task).

  Raises:
    ValueError: a malformed entry (names it).
  """
  feature, _, degradation = domain.partition(':')
  if not degradation:
    return feature, 1
  match = re.fullmatch(r'down([1-9][0-9]*)', degradation)
  if not feature or not match:
    raise ValueError(f"data.domains: {domain!r} must be '<feature>' or '<feature>:down<k>'")
  return feature, int(match.group(1))


def down_up(images: np.ndarray, block: int) -> np.ndarray:
  """x``block`` nearest down- then up-sampling of ``[..., H, W, C]`` (H, W multiples of
  ``block``): every ``block x block`` tile takes its top-left pixel, as the OVG code's
  ``F.interpolate(mode='nearest')`` pair does."""
  if block == 1:
    return images
  height, width = images.shape[-3:-1]
  if height % block or width % block:
    raise ValueError(f'down_up: image {height}x{width} is not a multiple of block={block}')
  small = images[..., ::block, ::block, :]
  return np.repeat(np.repeat(small, block, axis=-3), block, axis=-2)


def to_model_range(images: np.ndarray) -> np.ndarray:
  """uint8 ``[0, 255]`` -> float32 ``[-1, 1]``."""
  return images.astype(np.float32) / 127.5 - 1.0


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
  """Bicubic (antialiased) resize so that the shorter side is ``size`` pixels."""
  height, width = image.shape[:2]
  scale = size / min(height, width)
  new = (max(size, round(width * scale)), max(size, round(height * scale)))
  if new == (width, height):
    return image
  return np.asarray(Image.fromarray(image).resize(new, Image.BICUBIC))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Central ``size x size`` crop of ``[H, W, C]`` (``H, W >= size``)."""
  height, width = image.shape[:2]
  top, left = (height - size) // 2, (width - size) // 2
  return image[top:top + size, left:left + size]


def as_rgb(image: np.ndarray) -> np.ndarray:
  """``[H, W]``, ``[H, W, 1]``, RGB or RGBA -> ``[H, W, 3]`` (gray replicated, alpha dropped)."""
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


def data_source(data_config, split: str):
  """Random-access tfds source of ``data_config.name`` / ``split`` (builds ours on first use).

  Raises:
    FileNotFoundError: the source folder of a shipped dataset is missing.
    ValueError: an unknown dataset name with no prepared tfds copy.
  """
  name = data_config.name
  data_dir = os.path.expanduser(data_config.tfds_dir)
  if name in builders.BUILDERS:
    builder = builders.prepared_builder(name, data_dir, data_config.dir or None)
    return builder.as_data_source(split)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir)
  except Exception as error:  # tfds raises several types; name the field either way.
    raise ValueError(
        f'data.name={name!r}: not a shipped dataset ({sorted(builders.BUILDERS)}) and tfds could '
        f'not open it under data.tfds_dir={data_dir!r} ({type(error).__name__}: {error})'
    ) from error


def check_source(data_config) -> str:
  """Checks, reading only, that ``data_config`` names data that training can use.

  Meant to run before anything is written (a workdir, a prepared copy): it never prepares,
  downloads or writes. For a shipped builder (:data:`builders.BUILDERS`) the source folder
  (``data.dir``, else the shipped default) must exist and hold the builder's images. Unless the
  prepared copy under ``data.tfds_dir`` records exactly these files (the same fingerprint: they
  were all decoded when it was built, and it is what training reads), every image is checked
  with :func:`builders.check_images`: opened and ``verify()``-ed, every JPEG's end marker
  present, the suspiciously small ones fully decoded (well under 1 ms a file), and every BSDS500
  ground-truth ``.mat`` must exist with a MATLAB header. A tfds catalog name must already be
  prepared under ``data.tfds_dir``. ``data.train_split`` and ``data.eval_split`` must exist
  and be non-empty.

  Args:
    data_config: the data spec (:class:`phipd_jax.specs.DataSpec`).

  Returns:
    One line saying what will be used, e.g. ``edges2shoes_handbags: 2000 images in
    data.dir=/x (1800 train, 200 test); prepared copy /t/.../1.0.0: up to date``.

  Raises:
    FileNotFoundError: the source folder is missing or holds no images, a ground-truth file is
      missing, or a catalog dataset is not prepared under ``data.tfds_dir``.
    ValueError: an unreadable file (named), an unknown dataset name, a missing or empty split,
      or ``data.dir`` set for a dataset that reads no folder.
  """
  name = data_config.name
  data_dir = os.path.expanduser(data_config.tfds_dir)
  manual_dir = data_config.dir or None
  if manual_dir and builders.BUILDERS.get(name, (None, None))[1] is None:
    raise ValueError(f'data.dir={manual_dir!r} is set but data.name={name!r} reads no folder '
                     f'(folder datasets: {_folder_builders()}); clear data.dir or change data.name')
  if name not in builders.BUILDERS:
    return _check_catalog(data_config, name, data_dir)
  plan = builders.plan_preparation(name, data_dir, manual_dir)
  if plan.folder is None:
    counts = {'train': len(builders.SKIMAGE_PHOTOS), 'test': len(builders.SKIMAGE_PHOTOS)}
    _check_splits(data_config, counts, name)
    if not plan.up_to_date:
      import skimage.data  # pylint: disable=g-import-not-at-top
      missing = [photo for photo in builders.SKIMAGE_PHOTOS if not hasattr(skimage.data, photo)]
      if missing:
        raise ValueError(f"data.name={name!r}: {plan.fingerprint['source']} lack {missing}")
    what = f"{name}: the {counts['train']} {plan.fingerprint['source']}"
  else:
    splits = builders.source_splits(name, plan.folder)
    counts = {split: len(files) for split, files in splits.items()}
    _check_splits(data_config, counts, f'{name} in {plan.label}')
    if not plan.up_to_date:
      images = [path for files in splits.values() for path in files]
      try:
        builders.check_images(images)
      except ValueError as error:
        raise ValueError(f'data: {plan.label}: {error}') from error
      if name == 'bsds500':
        _check_mat_files([builders.bsds500_truth(path) for path in images], plan.label)
    parts = ', '.join(f'{count} {split}' for split, count in counts.items())
    unit = 'videos' if name == 'video_folder_clips' else 'images'
    total = len({path for files in splits.values() for path in files})
    what = f'{name}: {total} {unit} in {plan.label} ({parts})'
  if plan.up_to_date:
    state = 'up to date'
  elif plan.prepared:
    state = f'to be rebuilt ({plan.change})'
  else:
    state = 'to be prepared'
  return f'{what}; prepared copy {plan.dataset_dir}: {state}'


def _folder_builders() -> list[str]:
  return sorted(name for name, (_, folder) in builders.BUILDERS.items() if folder is not None)


def _split_names(spec: str) -> list[str]:
  """Base split names of a tfds split spec: ``'train[:90%]+test'`` -> ``['train', 'test']``."""
  return [re.sub(r'\[.*\]$', '', part.strip()) for part in spec.split('+')]


def _check_splits(data_config, counts: dict, where: str) -> None:
  """``data.train_split`` and ``data.eval_split`` name splits of ``counts`` with examples."""
  for field in ('train_split', 'eval_split'):
    spec = getattr(data_config, field)
    for split in _split_names(spec) if spec else []:
      if split not in counts:
        raise ValueError(f'data.{field}={spec!r}: {where} has no split {split!r} '
                         f'(splits: {", ".join(counts)})')
      if not counts[split]:
        rule = (f' (the test split is the ids divisible by {builders.EDGES2SHOES_TEST_EVERY})'
                if where.startswith('edges2shoes_handbags') else '')
        raise ValueError(f'data.{field}={spec!r}: split {split!r} of {where} has no '
                         f'images{rule}')


def _check_mat_files(paths: Sequence[str], label: str) -> None:
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'data: {label}: ground truth not found: {path}')
    with open(path, 'rb') as f:
      if not f.read(6) == b'MATLAB':
        raise ValueError(f'data: {label}: {path}: not a MATLAB .mat file')


def _check_catalog(data_config, name: str, data_dir: str) -> str:
  """A tfds catalog dataset must be prepared under ``data_dir`` (nothing is downloaded)."""
  base = re.split(r'[:/]', name)[0]
  try:
    tfds.builder_cls(base)
  except Exception as error:  # DatasetNotFoundError (a ValueError) or an import problem.
    raise ValueError(
        f'data.name={name!r}: not a shipped dataset ({sorted(builders.BUILDERS)}) nor a tfds '
        f'catalog name ({type(error).__name__}: {str(error).splitlines()[0]})') from error
  how = (f'prepare it first: `tfds build {name} --data_dir={data_dir} --file_format=array_record` '
         f'(or build it into DIR on a machine with network access and copy DIR/{base} there; '
         'manual datasets such as imagenet2012 need their archives in <data_dir>/downloads/manual)')
  if not os.path.isdir(os.path.join(data_dir, base)):
    raise FileNotFoundError(f'data.name={name!r} is not prepared under data.tfds_dir='
                            f'{data_dir!r} (no {base}/ there); {how}')
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(f'data.name={name!r} is not prepared under data.tfds_dir='
                            f'{data_dir!r} (no {builder.data_dir}); {how}')
  file_format = getattr(builder.info.file_format, 'value', builder.info.file_format)
  if file_format != 'array_record':
    raise ValueError(f'data.name={name!r}: the copy in {builder.data_dir} is {file_format}, but '
                     f'training reads array_record; {how}')
  counts = {split: info.num_examples for split, info in builder.info.splits.items()}
  _check_splits(data_config, counts, name)
  parts = ', '.join(f'{count} {split}' for split, count in counts.items())
  return f'{name}: tfds catalog dataset prepared in {builder.data_dir} ({parts})'


def _decode(record, data_config) -> Example:
  if data_config.frames:
    return _decode_clip(record, data_config)
  image = as_rgb(np.asarray(record[data_config.image_key]))
  label = int(record[data_config.label_key]) if data_config.label_key else 0
  return Example(image, label)


def record_flow(record, size: int) -> np.ndarray:
  """A clip record's forward flow ``float32 [T - 1, size, size, 2]`` (pixels, ``(dx, dy)``): its
  ``'flow'`` feature (estimated, :mod:`phipd_jax.data.optical_flow`), else the exact flow of its
  ``'affines'`` (:func:`phipd_jax.data.clips.clip_flow`).

  Raises:
    ValueError: the record has neither.
  """
  if 'flow' in record:
    return np.asarray(record['flow'], np.float32)
  if 'affines' in record:
    return clips.clip_flow(np.asarray(record['affines']), size)
  raise ValueError(f"data.frames > 0: a clip record needs a 'flow' or 'affines' feature, got "
                   f'{sorted(record)}')


def _decode_clip(record, data_config) -> Example:
  """The first ``data.frames`` frames of ``record[data.image_key]`` and their flow."""
  if data_config.image_key not in record:
    raise ValueError(f'data.image_key={data_config.image_key!r}: the clip records have '
                     f"{sorted(record)} (clip datasets: image_key='frames')")
  frames = np.asarray(record[data_config.image_key])
  count = data_config.frames
  if frames.ndim != 4 or frames.shape[0] < count:
    raise ValueError(f'data.frames={count}: feature {data_config.image_key!r} holds '
                     f'{frames.shape} (needs clips [T >= {count}, H, W, C])')
  flow = record_flow(record, frames.shape[1])
  label = int(record[data_config.label_key]) if data_config.label_key else 0
  return Example(np.stack([as_rgb(f) for f in frames[:count]]), label, flow=flow[:count - 1])


def resize_clip(example: Example, size: int) -> Example:
  """A clip's frames and flow with the shorter side ``size`` pixels: each frame as
  :func:`resize_short_side`, the flow resized bilinearly and its vectors scaled by the same
  factor per axis (pixels of the new frames)."""
  frames = example.image
  height, width = frames.shape[1:3]
  resized = np.stack([resize_short_side(f, size) for f in frames])
  new_h, new_w = resized.shape[1:3]
  if (new_h, new_w) == (height, width):
    return example
  flow = np.stack([np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(f[..., c]), mode='F')
                                        .resize((new_w, new_h), Image.BILINEAR))
                             for c in range(2)], -1) for f in example.flow])
  flow = flow * np.array([new_w / width, new_h / height], np.float32)
  return dataclasses.replace(example, image=resized, flow=flow.astype(np.float32))


def crop_clip(example: Example, top: int, left: int, size: int, flip: bool = False) -> Example:
  """A ``size x size`` window of every frame and of the flow (displacements unchanged), then
  optionally mirrored left-right (the flow mirrored with ``dx`` negated)."""
  window = (slice(None), slice(top, top + size), slice(left, left + size))
  frames, flow = example.image[window], example.flow[window]
  if flip:
    frames, flow = frames[:, :, ::-1], flow[:, :, ::-1] * np.array([-1.0, 1.0], np.float32)
  return dataclasses.replace(example, image=np.ascontiguousarray(frames),
                             flow=np.ascontiguousarray(flow, dtype=np.float32))


def _decode_domains(record, data_config) -> list[Example]:
  """One example per ``data.domains`` entry (label = its index), or the one of ``_decode``."""
  domains = tuple(data_config.domains)
  if not domains:
    return [_decode(record, data_config)]
  examples = []
  for label, domain in enumerate(domains):
    feature, block = parse_domain(domain)
    examples.append(Example(as_rgb(np.asarray(record[feature])), label, block))
  return examples


def load_examples(data_config, split: str, resize: Optional[int]) -> Sequence[Example]:
  """All examples of a split, decoded and resized (short side = ``resize``), in memory.

  Raises:
    ValueError: the decoded split would exceed :data:`IN_MEMORY_LIMIT_BYTES`.
  """
  source = data_source(data_config, split)
  examples, total = [], 0
  for index in range(len(source)):
    for example in _decode_domains(source[index], data_config):
      if resize and example.flow is not None:
        example = resize_clip(example, resize)
      elif resize:
        example = dataclasses.replace(example, image=resize_short_side(example.image, resize))
      total += example.image.nbytes
      if total > IN_MEMORY_LIMIT_BYTES:
        raise ValueError(f'data: split {split!r} of {data_config.name!r} is too large to hold '
                         'in memory; set data.in_memory=False')
      examples.append(example)
  return examples


class _Augment(grain.transforms.RandomMap):
  """Random ``size x size`` crop and optional horizontal flip."""

  def __init__(self, size: int, flip: bool):
    self.size, self.flip = size, flip

  def random_map(self, example: Example, rng: np.random.Generator):
    image = example.image
    height, width = image.shape[-3:-1]
    if height < self.size or width < self.size:
      raise ValueError(f'data: image {image.shape} smaller than data.image_size={self.size}')
    top = rng.integers(0, height - self.size + 1)
    left = rng.integers(0, width - self.size + 1)
    if example.flow is not None:  # A clip: one window (and flip) for every frame and its flow.
      clip = crop_clip(example, top, left, self.size, self.flip and rng.random() < 0.5)
      return {'image': to_model_range(clip.image), 'label': np.int32(example.label),
              'flow': clip.flow}
    image = image[top:top + self.size, left:left + self.size]
    if self.flip and rng.random() < 0.5:
      image = image[:, ::-1]
    image = down_up(image, example.block)
    return {'image': to_model_range(image), 'label': np.int32(example.label)}


class _Decode(grain.transforms.Map):
  """Streaming path for large catalog datasets: decode, resize, then crop at random."""

  def __init__(self, data_config):
    self.data_config = data_config

  def map(self, record):
    example = _decode(record, self.data_config)
    return Example(resize_short_side(example.image, self.data_config.resize), example.label)


def train_dataset(data_config, global_batch: int, seed: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """Training batches: element ``s`` is this process's slice of the global batch of step ``s``.

  Args:
    data_config: the data spec (:class:`phipd_jax.specs.DataSpec`).
    global_batch: global batch size (divisible by ``process_count``).
    seed: shuffle and augmentation seed (the same on every process).
    num_steps: number of steps the dataset must cover.
    process_index, process_count: this process and the number of processes.

  Returns:
    ``MapDataset`` of ``{'image': float32 [B_local, S, S, 3] in [-1, 1], 'label': int32 [B]}``.
  """
  if global_batch % process_count:
    raise ValueError(f'batch_size={global_batch} must be divisible by the process count '
                     f'{process_count}')
  local_batch = global_batch // process_count
  if data_config.frames and not data_config.in_memory:
    raise ValueError(f'data.frames={data_config.frames} needs data.in_memory=True')
  if data_config.domains and not data_config.in_memory:
    raise ValueError(f'data.domains={tuple(data_config.domains)} needs data.in_memory=True')
  if data_config.in_memory:
    dataset = grain.MapDataset.source(load_examples(data_config, data_config.train_split,
                                                    data_config.resize))
  else:
    dataset = grain.MapDataset.source(data_source(data_config, data_config.train_split))
    dataset = dataset.map(_Decode(data_config))
  epochs = -(-num_steps * global_batch // len(dataset)) + 1
  dataset = dataset.repeat(epochs).shuffle(seed=seed)
  # Augment before slicing, so an example's crop depends on its global position only.
  dataset = dataset.random_map(_Augment(data_config.image_size, data_config.flip), seed=seed)
  rows = _ProcessRows(dataset, global_batch, local_batch, process_index)
  return grain.MapDataset.source(rows).batch(local_batch, drop_remainder=True)


def augmented_images(data_config, split: str) -> np.ndarray:
  """Every image the training augmentation can produce from ``split``, when it has no random
  crop (images exactly ``data.image_size``): each image and, with ``data.flip``, its mirror,
  through the same operations as the training pipeline (so the arrays are bit-identical to the
  training batches' rows). Used to encode a latent run's data once (``config.codec.cache``).

  Returns:
    float32 ``[N, S, S, 3]`` in ``[-1, 1]`` (``N`` = examples, x2 with flips).

  Raises:
    ValueError: an image whose size after ``data.resize`` is not ``S x S`` (random crops: every
      step sees new pixels, so encode inside the step with ``codec.cache = False``).
  """
  size = data_config.image_size
  images = []
  for example in load_examples(data_config, split, data_config.resize):
    if example.image.shape[:2] != (size, size):
      raise ValueError(f'config.codec.cache=True needs every training image to be exactly '
                       f'data.image_size={size} after data.resize={data_config.resize} (no random '
                       f'crop), got {example.image.shape[:2]}; set config.codec.cache=False')
    variants = [example.image] + ([example.image[:, ::-1]] if data_config.flip else [])
    images.extend(to_model_range(down_up(v, example.block)) for v in variants)
  return np.stack(images)


class _ProcessRows:
  """Rows ``[p * L, (p + 1) * L)`` of every global batch: process ``p``'s contiguous slice, so
  concatenating the processes' batches in order gives the single-process global batch."""

  def __init__(self, dataset, global_batch: int, local_batch: int, process_index: int):
    self.dataset, self.global_batch, self.local_batch = dataset, global_batch, local_batch
    self.offset = process_index * local_batch

  def __len__(self) -> int:
    return len(self.dataset) // self.global_batch * self.local_batch

  def __getitem__(self, index: int):
    step, row = divmod(index, self.local_batch)
    return self.dataset[step * self.global_batch + self.offset + row]


def eval_images(data_config, split: str, key: str, count: int) -> np.ndarray:
  """``count`` centre-cropped, resized images of ``split`` (for translation grids); ``key`` is a
  feature or a :func:`parse_domain` entry (``'photo:down8'``).

  Returns:
    float32 ``[count, S, S, 3]`` in ``[-1, 1]``, in split order (deterministic).
  """
  feature, block = parse_domain(key)
  source = data_source(data_config, split)
  images = []
  for index in range(min(count, len(source))):
    image = as_rgb(np.asarray(source[index][feature]))
    images.append(center_crop(resize_short_side(image, data_config.image_size),
                              data_config.image_size))
  return to_model_range(down_up(np.stack(images), block))


def eval_clips(data_config, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
  """``count`` held-out clips of ``split`` and their flow, resized to ``data.image_size`` on the
  short side and centre-cropped (deterministic): the clip grids' and the studies' inputs.

  Returns:
    ``(clips float32 [N, T, S, S, 3] in [-1, 1], flow float32 [N, T - 1, S, S, 2])``, ``T =
    data.frames``, ``S = data.image_size``.
  """
  size = data_config.image_size
  source = data_source(data_config, split)
  frames, flows = [], []
  for index in range(min(count, len(source))):
    example = resize_clip(_decode_clip(source[index], data_config), size)
    height, width = example.image.shape[1:3]
    example = crop_clip(example, (height - size) // 2, (width - size) // 2, size)
    frames.append(example.image)
    flows.append(example.flow)
  return to_model_range(np.stack(frames)), np.stack(flows)


def flat_shaded(images: np.ndarray, segments: int) -> np.ndarray:
  """Flat-shaded rendering: every SLIC superpixel filled with its mean colour.

  A stand-in for a simple renderer's output (sim-to-real in miniature): the layout and the
  mean colours of a photo without its texture and shading detail.

  Args:
    images: float32 ``[N, H, W, 3]`` in ``[-1, 1]``.
    segments: approximate number of superpixels per image.

  Returns:
    float32 ``[N, H, W, 3]`` in ``[-1, 1]``.
  """
  from skimage import color, segmentation  # pylint: disable=g-import-not-at-top
  out = []
  for image in images:
    labels = segmentation.slic((image + 1.0) / 2.0, n_segments=segments, compactness=10.0,
                               start_label=0, channel_axis=-1)  # slic expects [0, 1].
    out.append(color.label2rgb(labels, image, kind='avg', bg_label=-1))
  return np.stack(out).astype(np.float32)


def held_out_inputs(data_config, source: str, count: int, flat_shade_segments: int = 48,
                    reference: str = '') -> tuple[np.ndarray, Optional[np.ndarray]]:
  """A fixed batch of held-out inputs (``data.eval_split``) and their references: what the
  trainer's grids, the studies and the evaluation read.

  Args:
    data_config: the data spec (:class:`phipd_jax.specs.DataSpec`).
    source: ``'photo'`` (the trained feature, ``data.image_key``), ``'flat_shaded'`` (those
      photos rendered flat-shaded, :func:`flat_shaded`) or another feature name (``'edges'``),
      optionally degraded as in ``data.domains`` (``'photo:down8'``, :func:`parse_domain`).
    count: the first ``count`` records (all of them when the split is shorter).
    flat_shade_segments: superpixels of the ``'flat_shaded'`` rendering.
    reference: a feature to show beside the outputs, or ``''``.

  Returns:
    ``(inputs, references or None)``: float32 ``[N, S, S, 3]`` in ``[-1, 1]``.

  Raises:
    ValueError: a malformed ``source``, or a feature the dataset does not have.
  """
  split = data_config.eval_split
  shown = eval_images(data_config, split, reference, count) if reference else None
  if source == 'flat_shaded':
    photos = eval_images(data_config, split, data_config.image_key, count)
    return flat_shaded(photos, flat_shade_segments), shown
  feature, block = parse_domain(source)
  key = data_config.image_key if feature == 'photo' else feature
  return down_up(eval_images(data_config, split, key, count), block), shown
