"""Catalog example: class-conditional FSS-noise flow matching on tfds ``cifar10`` (GPU/TPU).

Needs the tfds catalog download (not possible on offline machines):
  python -c "import tensorflow_datasets as tfds; tfds.data_source('cifar10')"  # downloads once
  python train.py --config configs/cifar10_phipd.py --workdir runs/cifar10_phipd
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  config = common.get_base_config()
  config.data.name = 'cifar10'
  config.data.image_key = 'image'
  config.data.label_key = 'label'
  config.data.image_size = 32
  config.data.resize = 32
  config.data.in_memory = True
  config.model.size = 'S'
  config.model.patch_size = 2
  config.model.num_classes = 10
  config.model.dtype = 'bfloat16'
  config.noise.kind = 'fss'
  config.noise.rate = 0.25
  config.optim.learning_rate = 2e-4
  config.optim.ema_decay = 0.9999
  config.train.batch_size = 256
  config.train.num_steps = 200_000
  config.train.checkpoint_every = 10_000
  config.sample.sampler = 'heun'
  config.sample.num_steps = 32
  config.sample.guidance_scale = 2.0
  config.sample.translate_source = 'image'
  if arg.runlocal:
    common.runlocal(config)
  return config
