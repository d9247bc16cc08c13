r"""Samples from a trained run: generation, structure-aligned translation, or inversion.

  # N samples -> <output>/samples.png and samples.npz
  python sample.py --workdir runs/quickstart --mode generate --num 16 --output out/gen

  # An image or a folder -> outputs with the same file names, plus <output>/grid.png
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method phipd --radius 4 --output out/phipd
  python sample.py --workdir runs/quickstart --mode translate --input photos/ \
      --method sdedit --strength 0.6 --output out/sdedit

  # Deterministic inversion -> <output>/inverted.npz (noise + diagnostics), noise.png, spectrum.png
  python sample.py --workdir runs/quickstart --mode invert --input photos/ --output out/invert

  # Clip runs (configs/clips_phipd.py): a video file, a frame folder or a folder of them ->
  # <name>_clip<k>.mp4 / .gif per clip, grid.png, temporal.json (warping error, flicker);
  # --mode invert: inverted_clips.npz, the per-frame spectral report, the noise's coherence
  python sample.py --workdir runs/clips --mode translate --input clip.mp4 --method phipd \
      --radius 4 --video flow_warped --output out/clips

  # Multi-domain runs (configs/edges2shoes_two_domain.py): invert with the source class, sample
  # the target class (ovg: with Orthogonal Variance Guidance); also writes the inverted noise.
  python sample.py --workdir runs/ovg/edm_cpu --mode translate --input edges/ --resize \
      --method ovg --output out/ovg

Only the latest checkpoint's EMA parameters are restored; flags and inputs are checked before
it loads. Inputs (phipd_jax.inputs): grayscale and RGBA files are converted with a warning; a
size other than the training size needs ``--resize`` or ``--any_size`` (up to ``--max_pixels``
unless ``--force``); an unreadable file is reported by name and the rest are processed;
sub-folders are skipped. The exit status is 1 if any input failed.
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

from phipd_jax import (console, experiment, inputs, sampling, saved_run, translate_folder,
                       video_noise, writers)

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by train.py.')
_MODE = flags.DEFINE_enum('mode', 'generate', ['generate', 'translate', 'invert'], 'What to do.')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder (default <workdir>/sample_<mode>).')
_NUM = flags.DEFINE_integer('num', 16, 'generate: number of samples.', lower_bound=1)
_INPUT = flags.DEFINE_string('input', None, 'translate/invert: an image file or a folder.')
_METHOD = flags.DEFINE_enum('method', 'phipd', [m for m in sampling.METHODS if m != 'generate'],
                            'phipd_jax.sampling.METHODS: phipd, sdedit, or (class-conditional '
                            'runs) invert or ovg (inversion with OVG, config sample.ovg).')
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
_MAX_PIXELS = flags.DEFINE_integer('max_pixels', 256 * 256, '--any_size: refuse larger images '
                                   '(pixels) unless --force.', lower_bound=1)
_FORCE = flags.DEFINE_bool('force', False, '--any_size: run images above --max_pixels.')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: config sample.num_steps).',
                              lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per compiled batch.', lower_bound=1)
_VIDEO = flags.DEFINE_enum('video', None, list(video_noise.VIDEO_OPTIONS), 'Clip runs: how '
                           'the clip noise is made (default: the run\'s config noise.video).')
_STRIDE = flags.DEFINE_integer('stride', 1, 'Clip runs: take every stride-th frame.',
                               lower_bound=1)
_FPS = flags.DEFINE_float('fps', 8.0, 'Clip runs: frames per second of the written videos.',
                          lower_bound=0.1)
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')
flags.mark_flag_as_required('workdir')
FLAG_NAMES = {'method': '--method', 'radius': '--radius', 'strength': '--strength', 'source':
              '--source_class', 'target': '--target_class', 'guidance_scale': '--guidance_scale'}


def check_flags():
  """The flags and the input path that need no config, before anything is read or written."""
  if not os.path.isfile(os.path.join(_WORKDIR.value, 'config.json')):
    raise FileNotFoundError(f'--workdir {_WORKDIR.value} is not a train.py run directory (no '
                            'config.json)')
  if _RESIZE.value and _ANY_SIZE.value:
    raise ValueError('--resize and --any_size exclude each other')
  if _MODE.value in ('translate', 'invert'):
    if not _INPUT.value:
      raise ValueError(f'--mode {_MODE.value} needs --input (an image file or a folder; a '
                       'video file or frame folder for a clip run)')
    if not os.path.exists(_INPUT.value):
      raise FileNotFoundError(f'--input {_INPUT.value} does not exist')


def setting(config) -> sampling.Setting:
  """The flags, else the run's ``sample.radii[0]``, ``sdedit_strengths[0]`` (sdedit; else 1),
  ``inversion_classes`` and ``guidance_scale``."""
  sample, pick = config.sample, lambda flag, default: default if flag.value is None else flag.value
  source, target = tuple(sample.inversion_classes) or (None, None)
  sdedit = _METHOD.value == 'sdedit' and sample.sdedit_strengths
  return sampling.Setting(
      radius=pick(_RADIUS, sample.radii[0] if sample.radii else None),
      strength=pick(_STRENGTH, sample.sdedit_strengths[0] if sdedit else 1.0),
      source=pick(_SOURCE_CLASS, source),
      target=pick(_TARGET_CLASS, target), guidance_scale=pick(_GUIDANCE, sample.guidance_scale))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  check_flags()
  config = saved_run.run_config(_WORKDIR.value)  # The config alone: checks before the checkpoint.
  chosen = setting(config)
  # --mode invert runs a method's own inversion for invert/ovg, plain inversion otherwise.
  by_method = _MODE.value == 'translate' or sampling.METHODS[_METHOD.value].conditional
  sampling.check(_METHOD.value if by_method else None, chosen, sampling.Capabilities(
      config.model.num_classes or None, experiment.build_process(config.diffusion)), FLAG_NAMES)
  clip_run = bool(config.data.frames)
  if _VIDEO.value and not clip_run:
    raise ValueError('--video is a clip-run flag; this run trains on images (data.frames=0)')
  clips = None
  if clip_run and _MODE.value != 'generate':  # Read (and refused) before the checkpoint loads.
    clips, failures = inputs.read_clip_inputs(_INPUT.value, config.data.frames,
                                              config.data.image_size, _STRIDE.value)
  config, exp, restored = saved_run.load_run(_WORKDIR.value, ('ema_params',), _STEPS.value)
  sampler, params = exp.sampler(video=_VIDEO.value), restored['ema_params']
  output = _OUTPUT.value or os.path.join(_WORKDIR.value, f'sample_{_MODE.value}')
  os.makedirs(output, exist_ok=True)
  key = jax.random.key(_SEED.value)
  if _MODE.value == 'generate':
    labels = jnp.arange(_NUM.value, dtype=jnp.int32) % exp.num_classes if exp.num_classes else None
    samples = np.asarray(sampler.generate(params, key, (_NUM.value,) + exp.image_shape, labels,
                                          config.sample.guidance_scale))
    np.savez(os.path.join(output, 'samples.npz'), samples=samples)
    if clip_run:  # Rows of frames, and one GIF per clip.
      writers.save_png(os.path.join(output, 'samples.png'), writers.clip_grid(
          list(samples), [f'sample {i}' for i in range(len(samples))]))
      for i, clip in enumerate(samples):
        writers.write_video(os.path.join(output, f'sample_{i:03d}.gif'), clip, _FPS.value)
    else:
      writers.save_png(os.path.join(output, 'samples.png'), writers.sample_grid(samples))
    print(f'wrote {len(samples)} samples to {output}/samples.png and samples.npz')
    return
  if clip_run and _MODE.value == 'invert':
    count, message = translate_folder.invert_clips(sampler, params, clips, output,
                                                   batch_size=_BATCH.value)
    print(f'{message}; {failures} failed')
    sys.exit(1 if failures or not count else 0)
  if clip_run:
    count, message = translate_folder.translate_clips(
        sampler, params, clips, output, _METHOD.value, chosen, key=key,
        batch_size=_BATCH.value, run_name=os.path.basename(os.path.normpath(_WORKDIR.value)),
        option=_VIDEO.value or config.noise.video, fps=_FPS.value)
    print(f'{message}; {failures} failed')
    sys.exit(1 if failures else 0)
  factor = exp.image_shape[0] // exp.model_shape[0]  # A latent run's inputs: x the codec's.
  images, failures = inputs.read_inputs(
      _INPUT.value, config.data.image_size, config.model.patch_size * factor,
      resize=_RESIZE.value, any_size=_ANY_SIZE.value,
      max_pixels=None if _FORCE.value else _MAX_PIXELS.value)
  if _MODE.value == 'translate':
    count, message = translate_folder.translate(
        sampler, params, images, output, _METHOD.value, chosen, key=key,
        batch_size=_BATCH.value, grid_size=config.data.image_size,
        run_name=os.path.basename(os.path.normpath(_WORKDIR.value)))
  else:
    count, message = translate_folder.invert(sampler, params, images, output, _METHOD.value,
                                             chosen, key=key, batch_size=_BATCH.value)
  print(f'{message}; {failures} failed')
  if failures or (_MODE.value == 'invert' and not count):
    sys.exit(1)


if __name__ == '__main__':
  console.run(main)
