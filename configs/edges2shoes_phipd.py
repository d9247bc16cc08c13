"""phi-PD on edges2shoes_handbags: 64x64 photos trained with FSS noise; edge maps -> photos.

Trained on the photo halves only (no paired supervision: phi-PD needs none); at sampling time the
edge maps' phase carries the shoe's layout into a photo. Twin baseline with Gaussian noise:
``configs/edges2shoes_gaussian.py``. Any pix2pix AB folder (photo left, edge map right) works
with ``--config.data.dir=/path``.

  # Accelerator (DiT-S/4, 256 tokens, 50k steps):
  python train.py --config configs/edges2shoes_phipd.py --workdir runs/edges2shoes_phipd
  # 2 CPU cores (tiny DiT, 2000 steps, ~35 min):
  python train.py --config configs/edges2shoes_phipd.py:cpu --workdir runs/edges2shoes_phipd_cpu
  # Smoke run:
  python train.py --config configs/edges2shoes_phipd.py:runlocal --workdir /tmp/e2s
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, runlocal=False)
  config = common.get_base_config()
  config.data.name = 'edges2shoes_handbags'
  config.data.image_key = 'photo'
  config.data.image_size = 64
  config.data.resize = 64
  config.model.size = 'S'
  config.model.patch_size = 4
  config.model.dtype = 'bfloat16'
  config.noise.kind = 'fss'
  config.noise.r0 = 0.0
  config.noise.rate = 0.1  # Paper Eq. 20: mean radius 10.
  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 1000
  config.optim.ema_decay = 0.9995
  config.train.batch_size = 128
  config.train.num_steps = 50_000
  config.train.checkpoint_every = 5000
  config.sample.sampler = 'heun'
  config.sample.num_steps = 20
  config.sample.translate_source = 'edges'
  config.sample.translate_reference = 'photo'
  config.sample.radii = (4.0, 8.0, 16.0)
  config.sample.sdedit_strengths = (0.6, 0.8)
  if arg.cpu or arg.runlocal:
    config.model.size = 'tiny'
    config.model.dtype = 'float32'
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.optim.ema_decay = 0.995
    config.train.batch_size = 32
    config.train.num_steps = 2000
    config.train.checkpoint_every = 500
    config.sample.sampler = 'euler'
  if arg.runlocal:
    common.runlocal(config)
  return config
