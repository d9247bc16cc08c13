r"""Samples from a trained run: unconditional generation or structure-aligned translation.

  # N samples -> <output>/samples.png and samples.npz
  python sample.py --workdir runs/quickstart --mode generate --num 16 --output out/gen

  # An image or a folder -> outputs with the same file names, plus <output>/grid.png
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method phipd --radius 4 --output out/phipd
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method sdedit --strength 0.6 --output out/sdedit

The run's config is read from ``<workdir>/config.json`` and the latest checkpoint's EMA
parameters are used. Inputs: grayscale and RGBA files are converted to RGB with a warning; an
image whose size differs from the training size is an error unless ``--resize`` (shorter side
resized, then centre-cropped) or ``--any_size`` (run at the image's own size, which must be a
multiple of the patch size); an unreadable file is reported by name and the rest are processed.
The exit status is 1 if any input failed.
"""

import os
import sys

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from configs import common
from phipd_jax import checkpoint, sampling, sharding, training, writers
from phipd_jax.data import pipeline

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by train.py.')
_MODE = flags.DEFINE_enum('mode', 'generate', ['generate', 'translate'], 'What to do.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder (default <workdir>/sample_<mode>).')
_NUM = flags.DEFINE_integer('num', 16, 'generate: number of samples.')
_INPUT = flags.DEFINE_string('input', None, 'translate: an image file or a folder of images.')
_METHOD = flags.DEFINE_enum('method', 'phipd', ['phipd', 'sdedit'], 'translate: method.')
_RADIUS = flags.DEFINE_float('radius', None, 'phipd: cutoff radius in frequency-index units '
                             '(default: the config\'s first sample.radii).')
_STRENGTH = flags.DEFINE_float('strength', None, 'Start time in (0, 1]; phipd default 1 (from '
                               'noise), sdedit default the config\'s first sdedit strength.')
_RESIZE = flags.DEFINE_bool('resize', False, 'Resize/crop inputs to the training size.')
_ANY_SIZE = flags.DEFINE_bool('any_size', False, 'Run at each image\'s own size (multiple of '
                              'the patch size).')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: config sample.num_steps).')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per compiled batch.')
flags.mark_flag_as_required('workdir')

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def load_run(workdir: str):
  """``(config, sampler, ema_params)`` of the latest checkpoint of ``workdir``."""
  return sampling.load_run(workdir, common.get_base_config(), _STEPS.value)


def read_image(path: str, config) -> np.ndarray:
  """One input as float32 ``[H, W, 3]`` in ``[-1, 1]``, converted and sized per the flags.

  Raises:
    ValueError: unreadable file, or a size the model cannot take (with the fix in the message).
  """
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode != 'RGB':
        logging.warning('%s: mode %s converted to RGB', path, image.mode)
        image = image.convert('RGB')
      array = np.asarray(image)
  except (UnidentifiedImageError, OSError) as error:
    raise ValueError(f'{path}: not a readable image ({error})') from error
  size, patch = config.data.image_size, config.model.patch_size
  height, width = array.shape[:2]
  if _RESIZE.value:
    array = pipeline.center_crop(pipeline.resize_short_side(array, size), size)
  elif _ANY_SIZE.value:
    if height % patch or width % patch:
      raise ValueError(f'{path}: {height}x{width} is not a multiple of the patch size {patch}; '
                       'pass --resize')
  elif (height, width) != (size, size):
    raise ValueError(f'{path}: {height}x{width} differs from the training size {size}x{size}; '
                     'pass --resize (resize and centre-crop) or --any_size')
  return pipeline.to_model_range(array)


def list_inputs(path: str) -> list[str]:
  if os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if not n.startswith('.'))
    return [os.path.join(path, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)
            or not os.path.splitext(n)[1]]
  if os.path.exists(path):
    return [path]
  raise FileNotFoundError(f'--input {path} does not exist')


def translate_batch(config, sampler, params, images: np.ndarray, key) -> np.ndarray:
  """Translates ``[N, H, W, 3]``, padding to a full ``--batch_size`` (one compilation)."""
  count = len(images)
  pad = -count % _BATCH.value if count > _BATCH.value else 0
  batch = jnp.asarray(np.concatenate([images, images[:1].repeat(pad, 0)]) if pad else images)
  if _METHOD.value == 'phipd':
    radius = _RADIUS.value if _RADIUS.value is not None else config.sample.radii[0]
    strength = _STRENGTH.value if _STRENGTH.value is not None else 1.0
    out = sampler.phipd(params, batch, key, jnp.float32(radius), jnp.float32(strength))
  else:
    strength = (_STRENGTH.value if _STRENGTH.value is not None
                else config.sample.sdedit_strengths[0])
    out = sampler.sdedit(params, batch, key, jnp.float32(strength))
  return np.asarray(out)[:count]


def run_translate(config, sampler, params, output: str) -> int:
  """Translates every input; returns the number of failed inputs."""
  if _STRENGTH.value is not None and not 0 < _STRENGTH.value <= 1:
    raise ValueError(f'--strength={_STRENGTH.value} must be in (0, 1]')
  paths = list_inputs(_INPUT.value)
  images, failures = {}, 0
  for path in paths:
    try:
      images[path] = read_image(path, config)
    except ValueError as error:
      logging.error('skipped %s', error)
      print(f'error: {error}', file=sys.stderr)
      failures += 1
  by_shape = {}
  for path, image in images.items():
    by_shape.setdefault(image.shape, []).append(path)
  key = jax.random.key(_SEED.value)
  inputs, outputs = [], []
  for shape, group in by_shape.items():
    for start in range(0, len(group), _BATCH.value):
      names = group[start:start + _BATCH.value]
      result = translate_batch(config, sampler, params, np.stack([images[n] for n in names]), key)
      for name, out in zip(names, result):
        destination = os.path.join(output, os.path.basename(name))
        Image.fromarray(pipeline.to_uint8(out)).save(
            destination, format='PNG' if not os.path.splitext(name)[1] else None)
        if shape[:2] == (config.data.image_size,) * 2:
          inputs.append(images[name])
          outputs.append(out)
  if outputs:
    grid = writers.image_grid([np.stack(inputs), np.stack(outputs)], ['input', _METHOD.value],
                              upscale=max(1, 96 // config.data.image_size))
    writers.save_png(os.path.join(output, 'grid.png'), grid)
  print(f'translated {len(images)} image(s) into {output}; {failures} failed')
  return failures


def main(argv):
  del argv
  config, sampler, params = load_run(_WORKDIR.value)
  output = _OUTPUT.value or os.path.join(_WORKDIR.value, f'sample_{_MODE.value}')
  os.makedirs(output, exist_ok=True)
  if _MODE.value == 'generate':
    size = config.data.image_size
    labels = None
    if config.model.num_classes:
      labels = jnp.arange(_NUM.value, dtype=jnp.int32) % config.model.num_classes
    samples = np.asarray(sampler.generate(params, jax.random.key(_SEED.value), (size, size, 3),
                                          num=_NUM.value, labels=labels,
                                          guidance_scale=config.sample.guidance_scale))
    np.savez(os.path.join(output, 'samples.npz'), samples=samples)
    writers.save_png(os.path.join(output, 'samples.png'), writers.sample_grid(samples))
    print(f'wrote {len(samples)} samples to {output}/samples.png and samples.npz')
    return
  if not _INPUT.value:
    raise app.UsageError('--mode translate needs --input')
  if run_translate(config, sampler, params, output):
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
