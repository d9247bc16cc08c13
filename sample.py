r"""Samples from a trained run: generation, structure-aligned translation, or inversion.

  # N samples -> <output>/samples.png and samples.npz
  python sample.py --workdir runs/quickstart --mode generate --num 16 --output out/gen

  # An image or a folder -> outputs with the same file names, plus <output>/grid.png
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method phipd --radius 4 --output out/phipd
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method sdedit --strength 0.6 --output out/sdedit

  # Deterministic inversion -> <output>/inverted.npz (noise maps + diagnostics), noise.png and
  # spectrum.png (the inverted noise's radially averaged spectrum next to a Gaussian's)
  python sample.py --workdir runs/quickstart --mode invert --input photos/ --output out/invert

  # Multi-domain runs (configs/edges2shoes_two_domain.py): translation by inversion with the
  # source class, sampling the target class (sample.inversion_classes, sample.guidance_scale);
  # --method ovg adds Orthogonal Variance Guidance (sample.ovg) to every inversion step. Writes
  # the outputs, grid.png and the inverted noise with its diagnostics (as --mode invert).
  python sample.py --workdir runs/ovg/edm_cpu --mode translate --input edges/ --resize \
      --method ovg --output out/ovg
  # --mode invert --method ovg: the OVG-inverted noise alone.

The run's config is read from ``<workdir>/config.json`` and only the latest checkpoint's EMA
parameters are restored. Flags and inputs are checked before the checkpoint loads. Inputs:
grayscale and RGBA files are converted to RGB with a warning; an image whose size differs from the
training size is an error unless ``--resize`` (shorter side resized, then centre-cropped) or
``--any_size`` (run at the image's own size, a multiple of the patch size (x the codec's
factor for a latent run), up to
``--max_pixels`` unless ``--force``); an unreadable file is reported by name and the rest are
processed; sub-folders are skipped. The exit status is 1 if any input failed.
"""

import phipd_jax

if __name__ == '__main__':  # First: re-executes once, before JAX loads.
  phipd_jax.use_huge_page_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position

import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import console, inputs as inputs_lib, saved_run, writers

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by train.py.')
_MODE = flags.DEFINE_enum('mode', 'generate', ['generate', 'translate', 'invert'], 'What to do.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder (default <workdir>/sample_<mode>).')
_NUM = flags.DEFINE_integer('num', 16, 'generate: number of samples.', lower_bound=1)
_INPUT = flags.DEFINE_string('input', None, 'translate/invert: an image file or a folder.')
_METHOD = flags.DEFINE_enum('method', 'phipd', ['phipd', 'sdedit', 'invert', 'ovg'],
                            'translate: phipd, sdedit, or (class-conditional multi-domain runs) '
                            'invert (deterministic inversion with the source class, sampling '
                            'with the target class) or ovg (the same with Orthogonal Variance '
                            'Guidance at every inversion step, config sample.ovg).')
_SOURCE_CLASS = flags.DEFINE_integer('source_class', None, 'invert/ovg: class of the inputs '
                                     '(default: the config\'s sample.inversion_classes[0]).')
_TARGET_CLASS = flags.DEFINE_integer('target_class', None, 'invert/ovg/sdedit/phipd on a '
                                     'conditional run: class to sample (default: '
                                     'sample.inversion_classes[1]).')
_GUIDANCE = flags.DEFINE_float('guidance_scale', None, 'Classifier-free guidance of the target '
                               'class (default: the config\'s sample.guidance_scale).')
_RADIUS = flags.DEFINE_float('radius', None, 'phipd: cutoff radius >= 0 in frequency-index '
                             'units (inf: the whole phase; default: the config\'s first '
                             'sample.radii).')
_STRENGTH = flags.DEFINE_float('strength', None, 'Start time in (0, 1]; phipd default 1 (from '
                               'noise), sdedit default the config\'s first sdedit strength.')
_RESIZE = flags.DEFINE_bool('resize', False, 'Resize/crop inputs to the training size.')
_ANY_SIZE = flags.DEFINE_bool('any_size', False, 'Run at each image\'s own size (multiple of '
                              'the patch size).')
_MAX_PIXELS = flags.DEFINE_integer('max_pixels', 256 * 256, '--any_size: refuse images with '
                                   'more pixels than this (memory and time grow with the '
                                   'pixel count) unless --force.', lower_bound=1)
_FORCE = flags.DEFINE_bool('force', False, '--any_size: run images above --max_pixels.')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: config sample.num_steps).',
                              lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per compiled batch.', lower_bound=1)
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')
flags.mark_flag_as_required('workdir')


def check_flags():
  """Every flag and the input path, before anything is loaded or written."""
  if not os.path.isfile(os.path.join(_WORKDIR.value, 'config.json')):
    raise FileNotFoundError(f'--workdir {_WORKDIR.value} is not a train.py run directory (no '
                            'config.json)')
  if _STRENGTH.value is not None and not 0 < _STRENGTH.value <= 1:
    raise ValueError(f'--strength={_STRENGTH.value} must be in (0, 1]')
  if _RADIUS.value is not None and not _RADIUS.value >= 0:
    raise ValueError(f'--radius={_RADIUS.value} must be >= 0 (frequency-index units; inf keeps '
                     'the whole phase)')
  if _RESIZE.value and _ANY_SIZE.value:
    raise ValueError('--resize and --any_size exclude each other')
  if _MODE.value in ('translate', 'invert'):
    if not _INPUT.value:
      raise ValueError(f'--mode {_MODE.value} needs --input (an image file or a folder)')
    if not os.path.exists(_INPUT.value):
      raise FileNotFoundError(f'--input {_INPUT.value} does not exist')


def check_run_flags(config):
  """Flags that depend on the run's config (read from config.json, before the checkpoint)."""
  num_classes = config.model.num_classes
  if _GUIDANCE.value is not None and not _GUIDANCE.value >= 0:
    raise ValueError(f'--guidance_scale={_GUIDANCE.value} must be >= 0')
  by_inversion = (_MODE.value == 'translate' and _METHOD.value in ('invert', 'ovg')) or (
      _MODE.value == 'invert' and _METHOD.value == 'ovg')
  if by_inversion:
    if not num_classes:
      raise ValueError(f'--method {_METHOD.value} translates between classes of one model, but '
                       f'{_WORKDIR.value} is unconditional (model.num_classes=0); use phipd or '
                       'sdedit, or train a multi-domain run (configs/edges2shoes_two_domain.py)')
    if _METHOD.value == 'ovg' and config.diffusion.process not in ('edm', 'ddpm'):
      raise ValueError(f'--method ovg needs an EDM or DDPM run, not diffusion.process='
                       f'{config.diffusion.process!r}')
    if _SOURCE_CLASS.value is None and not config.sample.inversion_classes:
      raise ValueError(f'--method {_METHOD.value}: pass --source_class and --target_class (the '
                       'run sets no sample.inversion_classes)')
  for name, flag in (('--source_class', _SOURCE_CLASS), ('--target_class', _TARGET_CLASS)):
    if flag.value is not None and not 0 <= flag.value < max(num_classes, 1):
      raise ValueError(f'{name}={flag.value} must be in [0, {num_classes}) (model.num_classes)')


def classes(config) -> tuple:
  """``(source, target)`` classes: the flags, else ``sample.inversion_classes``."""
  default = tuple(config.sample.inversion_classes) or (None, None)
  source = _SOURCE_CLASS.value if _SOURCE_CLASS.value is not None else default[0]
  target = _TARGET_CLASS.value if _TARGET_CLASS.value is not None else default[1]
  if _METHOD.value in ('invert', 'ovg') and target is None:
    raise ValueError(f'--method {_METHOD.value}: pass --target_class')
  return source, target


def read_inputs(config, exp) -> tuple[dict, int]:
  """``({path: image [H, W, 3] in [-1, 1]}, failures)``; failures are reported once each.
  ``--any_size`` images must be multiples of the patch in pixels (times the codec's factor for a
  latent run)."""
  images, failures = {}, 0
  factor = exp.image_shape[0] // exp.model_shape[0]
  size, patch = config.data.image_size, config.model.patch_size * factor
  for path in inputs_lib.list_images(_INPUT.value):
    try:
      images[path] = inputs_lib.read_image(
          path, size, patch, resize=_RESIZE.value, any_size=_ANY_SIZE.value,
          max_pixels=None if _FORCE.value else _MAX_PIXELS.value)
    except ValueError as error:
      print(f'error: {error}', file=sys.stderr, flush=True)
      failures += 1
  return images, failures


def batches(images: dict):
  """Groups of same-shape paths, each padded to a full ``--batch_size`` (one compilation per
  shape); yields ``(paths, batch [batch_size, H, W, 3], batch index)``."""
  by_shape = {}
  for path, image in images.items():
    by_shape.setdefault(image.shape, []).append(path)
  index = 0
  for group in by_shape.values():
    size = min(_BATCH.value, len(group))
    for start in range(0, len(group), size):
      paths = group[start:start + size]
      stacked = np.stack([images[p] for p in paths])
      pad = size - len(paths)
      if pad:
        stacked = np.concatenate([stacked, np.repeat(stacked[:1], pad, 0)])
      yield paths, stacked, index
      index += 1


def run_translate(config, exp, sampler, params, output: str) -> int:
  images, failures = read_inputs(config, exp)
  source, target = classes(config)
  guidance = _GUIDANCE.value if _GUIDANCE.value is not None else config.sample.guidance_scale
  inverted = {}
  if _METHOD.value in ('invert', 'ovg'):
    radius = strength = None
    setting = (f'{"OVG" if _METHOD.value == "ovg" else "inversion"} class {source}->{target} '
               f'w={guidance:g}')
  elif _METHOD.value == 'phipd':
    radius = _RADIUS.value if _RADIUS.value is not None else config.sample.radii[0]
    strength = _STRENGTH.value if _STRENGTH.value is not None else 1.0
    setting = f'phi-PD r={radius:g} s={strength:g}'
  else:
    radius = None
    strength = (_STRENGTH.value if _STRENGTH.value is not None
                else config.sample.sdedit_strengths[0])
    setting = f'SDEdit s={strength:g}'
  key = jax.random.key(_SEED.value)
  shown_inputs, shown_outputs, names = [], [], []
  for paths, batch, index in batches(images):
    # A new key per batch: image i and image i + batch_size get different noise.
    batch_key = jax.random.fold_in(key, index)
    if _METHOD.value in ('invert', 'ovg'):
      result, noise = sampler.translate_by_inversion(params, jnp.asarray(batch), batch_key,
                                                     _METHOD.value, source, target, guidance)
      inverted.update(zip(paths, np.asarray(noise)[:len(paths)]))
    else:
      label = target if exp.num_classes else None
      result = sampler.translate(params, jnp.asarray(batch), batch_key, _METHOD.value, radius,
                                 strength, label, guidance)
    result = np.asarray(result)[:len(paths)]
    for path, out in zip(paths, result):
      writers.save_png(inputs_lib.output_path(output, path), writers.to_uint8(out))
      if out.shape[:2] == (config.data.image_size,) * 2:
        shown_inputs.append(images[path])
        shown_outputs.append(out)
        names.append(os.path.basename(path))
  if shown_outputs:
    grid = writers.labelled_grid(np.stack(shown_inputs), np.stack(shown_outputs), names,
                                 f'{os.path.basename(os.path.normpath(_WORKDIR.value))}: {setting}')
    writers.save_png(os.path.join(output, 'grid.png'), grid)
  report = ''
  if inverted:
    report = '; inverted noise: ' + write_noise_report(
        exp, output, list(inverted.values()), [images[p] for p in inverted],
        [os.path.basename(p) for p in inverted])
  print(f'translated {len(images)} image(s) with {setting} into {output}{report}; '
        f'{failures} failed')
  return failures


def run_invert(config, exp, sampler, params, output: str) -> int:
  images, failures = read_inputs(config, exp)
  source, _ = classes(config)
  noise, names, sources = [], [], []
  key = jax.random.key(_SEED.value)
  for paths, batch, index in batches(images):
    if _METHOD.value in ('invert', 'ovg') and source is not None:
      inverted = sampler.invert_source(params, jnp.asarray(batch), jax.random.fold_in(key, index),
                                       _METHOD.value, source)
    else:
      labels = None if source is None else jnp.full((len(batch),), source, jnp.int32)
      inverted = sampler.invert(params, jnp.asarray(batch), labels)
    inverted = np.asarray(inverted)[:len(paths)]
    noise.extend(inverted)
    sources.extend(batch[:len(paths)])
    names.extend(os.path.basename(p) for p in paths)
  if not noise:
    print(f'inverted 0 image(s); {failures} failed')
    return failures or 1
  summary = write_noise_report(exp, output, noise, sources, names)
  print(f'inverted {len(names)} image(s) into {output}/inverted.npz; {summary}; '
        f'{failures} failed')
  return failures


def write_noise_report(exp, output: str, noise: list, sources: list, names: list) -> str:
  """``inverted.npz`` (noise maps, names, prior std, collapse diagnostics), ``noise.png`` and
  ``spectrum.png`` in ``output``; returns the diagnostics as one line."""
  from phipd_jax.evaluation import collapse  # pylint: disable=g-import-not-at-top
  shapes = {n.shape for n in noise}
  scale = float(exp.process.sigma(exp.process.time_grid(1)[0]))  # Prior std at the noise end.
  report = {}
  if len(shapes) == 1:
    stacked, src = np.stack(noise), np.stack(sources)
    # A latent run's noise is compared with the latents of its inputs, and shown by its first
    # three channels at the image size.
    src_model = src if exp.codec is None else np.asarray(exp.codec.encode(jnp.asarray(src)))
    report = collapse.collapse_report(jnp.asarray(stacked), jnp.asarray(src_model), scale)
    np.savez(os.path.join(output, 'inverted.npz'), noise=stacked, names=np.array(names),
             scale=scale, **{k: np.float32(v) for k, v in report.items()})
    shown = np.clip(stacked / (3 * scale), -1, 1)
    if exp.codec is not None:
      factor = exp.codec.downsample
      shown = np.repeat(np.repeat(shown[..., :3], factor, axis=1), factor, axis=2)
    writers.save_png(os.path.join(output, 'noise.png'),
                     writers.labelled_grid(src, shown, names, 'input | inverted noise / 3 sigma'))
    curves = {'inverted noise': np.asarray(collapse.radial_log_amplitude(
        jnp.asarray(stacked / scale), average=True))}
    collapse.plot_radial_spectra(curves, os.path.join(output, 'spectrum.png'),
                                 title=f'{len(names)} inverted maps vs N(0, I)',
                                 prior_shape=stacked.shape[1:])
  else:
    np.savez(os.path.join(output, 'inverted.npz'),
             **{f'noise_{i}': n for i, n in enumerate(noise)}, names=np.array(names))
  return ', '.join(f'{k} {v:.3f}' for k, v in report.items()) or 'mixed sizes, no diagnostics'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  check_flags()
  check_run_flags(saved_run.run_config(_WORKDIR.value))
  config, exp, restored = saved_run.load_run(_WORKDIR.value, ('ema_params',), _STEPS.value)
  sampler, params = exp.sampler(), restored['ema_params']
  output = _OUTPUT.value or os.path.join(_WORKDIR.value, f'sample_{_MODE.value}')
  os.makedirs(output, exist_ok=True)
  if _MODE.value == 'generate':
    labels = None
    if exp.num_classes:
      labels = jnp.arange(_NUM.value, dtype=jnp.int32) % exp.num_classes
    samples = np.asarray(sampler.generate(params, jax.random.key(_SEED.value),
                                          (_NUM.value,) + exp.image_shape, labels,
                                          config.sample.guidance_scale))
    np.savez(os.path.join(output, 'samples.npz'), samples=samples)
    writers.save_png(os.path.join(output, 'samples.png'), writers.sample_grid(samples))
    print(f'wrote {len(samples)} samples to {output}/samples.png and samples.npz')
    return
  if _MODE.value == 'translate':
    failures = run_translate(config, exp, sampler, params, output)
  else:
    failures = run_invert(config, exp, sampler, params, output)
  if failures:
    sys.exit(1)


if __name__ == '__main__':
  console.run(main)
