"""Quickstart: FSS-noise flow matching on the photos bundled with scikit-image (CPU, minutes).

Trains a tiny DiT (1.3M parameters) on 32x32 crops of the left two thirds of seven photographs,
then translates the held-out right thirds rendered flat-shaded (superpixel mean colours) back
into photo appearance with phi-PD, with SDEdit beside it.

  python train.py --config configs/quickstart.py --workdir runs/quickstart

Variants: ``--config configs/quickstart.py:runlocal`` is a 20-step smoke run.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  config = common.get_base_config()
  config.data.name = 'skimage_photos'
  config.data.image_size = 32
  config.data.resize = 96
  config.model.size = 'tiny'
  config.model.patch_size = 4
  config.noise.kind = 'fss'
  config.noise.r0 = 0.0
  config.noise.rate = 0.25  # Mean radius 4 on a 32-pixel crop (paper: mean 10 at 64+ latents).
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  config.train.batch_size = 32
  config.train.num_steps = 1500  # ~6.5 min at ~120 images/s on 2 CPU cores.
  config.train.log_every = 50
  config.train.checkpoint_every = 500
  config.sample.sampler = 'euler'
  config.sample.num_steps = 20
  config.sample.translate_source = 'flat_shaded'
  config.sample.translate_reference = 'image'
  config.sample.num_translate = 7
  config.sample.radii = (2.0, 4.0, 8.0)
  config.sample.sdedit_strengths = (0.5, 0.75)
  if arg.runlocal:
    common.runlocal(config)
  return config
