"""The autoencoder of a latent diffusion run, trained with Latent Wavelet Diffusion's
scale-consistent loss (Sigillo et al., arXiv:2506.00433, Eq. 1 and App. D) on
edges2shoes_handbags photos.

``L = MSE(D(z), x) + alpha MSE(D(pool_s z), pool_s x) + beta KL + lam LPIPS_vgg(D(z), x)`` with
``z`` the posterior mean and ``s`` drawn from (2, 4) each step. At every checkpoint the trainer
writes ``samples/reconstruct_<step>.png``: held-out photos beside their reconstructions.

  # Accelerator ('base' autoencoder, 256 px, f=8):
  python train.py --config configs/autoencoder_lwd.py --workdir runs/autoencoder_lwd
  # 2 CPU cores ('tiny', f=4, 64 px, 200 steps of batch 8, about 9 min):
  python train.py --config configs/autoencoder_lwd.py:cpu --workdir runs/autoencoder_lwd_cpu
  # Smoke run:
  python train.py --config configs/autoencoder_lwd.py:runlocal --workdir /tmp/ae

Options (comma-separated after the colon):
  cpu       the 2-core CPU run above.
  runlocal  a 20-step smoke run (32 px).
  released  the released script's weights: beta = 0 (no KL); default: the paper's App. D
            weights alpha 0.25, beta 0.001, lambda 0.05.
  plain     no scale-consistency term (alpha = 0): the baseline autoencoder.
  f=4|8     spatial downsampling factor (default 8; 4 with cpu / runlocal).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, runlocal=False, released=False, plain=False, f=0)
  config = common.get_base_config()
  common.set_autoencoder_recipe(config)
  config.data.name = 'edges2shoes_handbags'
  config.data.image_key = 'photo'
  config.data.image_size = 256
  config.data.resize = 256
  config.model.size = 'base'
  # f=8 at 256 px (32x32 latents); f=4 for the 64-px CPU run (16x16 latents).
  config.model.downsample = arg.f or (4 if arg.cpu or arg.runlocal else 8)
  config.model.dtype = 'bfloat16'
  config.optim.learning_rate = 1e-4  # From scratch (the paper finetunes a pretrained VAE at 1e-5).
  config.optim.warmup_steps = 500  # Released script.
  config.train.batch_size = 16
  config.train.num_steps = 60_000  # Released script (paper: 60k at 512 px).
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  if arg.released:
    config.autoencoder.beta = 0.0
  if arg.plain:
    config.autoencoder.alpha = 0.0
  if arg.cpu or arg.runlocal:
    config.model.size = 'tiny'
    config.model.dtype = 'float32'
    config.data.image_size = 64
    config.data.resize = 64
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 20
    config.optim.ema_decay = 0.99
    # Measured on 2 CPU cores: 2.4 s/step at batch 8, 64 px, f=4 with LPIPS: 9 min in all.
    config.train.batch_size = 8
    config.train.num_steps = 200
    config.train.log_every = 10
    config.train.checkpoint_every = 100
  if arg.runlocal:
    config.data.image_size = 32
    config.data.resize = 32
    common.runlocal(config)
  return config
