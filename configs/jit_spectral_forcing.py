"""JiT (pixel-space x-prediction DiT) with and without Spectral Forcing: the patch-size ablation.

64x64 photos of edges2shoes_handbags (its held-out test split, ``id % 10 == 0``, is the
evaluation reference). The config string picks the cell, comma-separated:

* ``p4`` / ``p8`` / ``p16``: patch size (256 / 64 / 16 tokens at 64 px; default ``p16``);
* ``sf``: Spectral Forcing with the released linear schedule; ``sf_power``: the paper's
  power-law contour (``alpha = 2``); neither: plain JiT;
* ``cpu``: the 2-core CPU budget (tiny JiT, 600 steps of batch 32: ~1, 3 and 15 minutes at
  p16, p8, p4); ``runlocal``: a smoke run.

  # The CPU ablation (docs/results.md, section "Spectral Forcing"): six runs, evaluation, plot.
  bash scripts/spectral_forcing_ablation.sh

  # Accelerator (JiT-B, JiT's recipe: batch 256, 100k steps, bf16):
  python train.py --config configs/jit_spectral_forcing.py:p4,sf --workdir runs/jit_b4_sf

Recipe (JiT, arXiv:2511.13720, Table 9 and Sec. 4, converted to the library's t = 0 data): x-prediction
with the v-loss and ``max(t, 0.05)`` clamp, logit-normal time with mean +0.8 (JiT's -0.8 in its
convention) and std 0.8, AdamW (0.9, 0.95) without weight decay, constant learning rate after a
linear warmup, EMA; Heun sampling (last step Euler). Noise scale 1 (JiT's default; its
``image_size / 256`` rule is stated for 256 px and above).
"""

from configs import common

PATCH_SIZES = {'p4': 4, 'p8': 8, 'p16': 16}


def get_config(arg=None):
  arg = common.parse_arg(arg, p4=False, p8=False, p16=False, sf=False, sf_power=False, cpu=False,
                         runlocal=False)
  config = common.get_base_config()
  config.data.name = 'edges2shoes_handbags'
  config.data.image_key = 'photo'
  config.data.image_size = 64
  config.data.resize = 64

  common.set_jit_recipe(config)
  config.model.size = 'B'
  config.model.patch_size = 16
  for option, patch_size in PATCH_SIZES.items():
    if arg[option]:
      config.model.patch_size = patch_size
  config.model.in_context_len = 32
  config.model.dtype = 'bfloat16'
  common.set_spectral_forcing(config, arg)
  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 5000
  config.train.batch_size = 256
  config.train.num_steps = 100_000
  config.train.checkpoint_every = 5000

  config.sample.translate_source = 'edges'
  config.sample.translate_reference = 'photo'
  config.sample.radii = (4.0, 8.0, 16.0)
  config.sample.sdedit_strengths = (0.6, 0.8)

  if arg.cpu or arg.runlocal:
    config.model.size = 'tiny'
    config.model.in_context_len = 8
    config.model.dtype = 'float32'
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.optim.ema_decay = 0.995
    config.train.batch_size = 32
    config.train.num_steps = 600
    config.train.log_every = 50
    config.train.checkpoint_every = 300
    config.sample.num_steps = 20
  if arg.runlocal:
    common.runlocal(config)
  return config
