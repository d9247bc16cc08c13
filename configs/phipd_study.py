"""The phi-PD vs SDEdit study: 32x32 edges2shoes_handbags photos, one checkpoint per noise.

Five checkpoints share the model, data and budget and differ only in the training noise
(``docs/results.md``, section "phi-PD vs SDEdit"):

  gaussian   Gaussian noise (the SDEdit / baseline model)
  fss0       FSS noise, training radius r = 0 + Exp(0.25)  (frequency-index units, 32-px crop)
  fss4       FSS noise, r = 4 + Exp(0.25)
  fss8       FSS noise, r = 8 + Exp(0.25)
  finetune   the paper's own setting: the Gaussian checkpoint finetuned with fss0's noise
             (pass ``--config.init_from=<the gaussian workdir>``)

and the same for the re-rendering of BSDS500 photos (``bsds_gaussian``, ``bsds_fss0``): trained
on BSDS500 train + val (300 photos, random 32x32 crops of the photo resized to a 32-pixel short
side), evaluated on its test split with the human boundaries as the structure reference.

  bash scripts/phipd_study.sh runs/study      # trains all five, then evaluates (see the script)
  python train.py --config configs/phipd_study.py:fss4 --workdir runs/study/fss4
  python train.py --config configs/phipd_study.py:fss0,runlocal --workdir /tmp/study  # smoke

Budget on 2 CPU cores: tiny DiT, patch 4 (64 tokens), batch 32, 2400 steps (76,800 images,
~43 epochs of the 1,800 training photos), ~10 min per run; the finetune adds 800 steps.
Held-out photos (``id % 10 == 0``) are never trained on.
"""

from configs import common

TRAIN_NOISE = {
    'gaussian': ('gaussian', 0.0),
    'fss0': ('fss', 0.0),
    'fss4': ('fss', 4.0),
    'fss8': ('fss', 8.0),
    'finetune': ('fss', 0.0),
    'bsds_gaussian': ('gaussian', 0.0),
    'bsds_fss0': ('fss', 0.0),
}


def get_config(arg=None):
  options = common.parse_arg(arg, runlocal=False, **{name: False for name in TRAIN_NOISE})
  chosen = [name for name in TRAIN_NOISE if options[name]]
  if len(chosen) > 1:
    raise ValueError(f'configs/phipd_study.py: choose one of {sorted(TRAIN_NOISE)}, got {chosen}')
  arg = chosen[0] if chosen else 'fss0'
  config = common.get_base_config()
  config.data.name = 'edges2shoes_handbags'
  config.data.image_key = 'photo'
  config.data.image_size = 32
  config.data.resize = 32
  config.model.size = 'tiny'
  config.model.patch_size = 4
  config.noise.kind, config.noise.r0 = TRAIN_NOISE[arg]
  config.noise.rate = 0.25  # Mean radius r0 + 4 on the 32-pixel crop.
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  config.train.batch_size = 32
  config.train.num_steps = 2400
  config.train.checkpoint_every = 800
  config.sample.sampler = 'euler'
  config.sample.num_steps = 20
  config.sample.translate_source = 'edges'
  config.sample.translate_reference = 'photo'
  config.sample.radii = (2.0, 4.0, 8.0)
  config.sample.sdedit_strengths = (0.5, 0.75)
  if arg.startswith('bsds_'):
    config.data.name = 'bsds500'
    config.data.image_key = 'image'
    config.data.train_split = 'train+val'
    config.sample.translate_source = 'photo'
    config.sample.translate_reference = ''
  if arg == 'finetune':
    config.optim.learning_rate = 5e-4
    config.optim.warmup_steps = 50
    config.train.num_steps = 800
    config.train.checkpoint_every = 400
  if options.runlocal:  # Smoke run: python train.py --config configs/phipd_study.py:runlocal
    common.runlocal(config)
  return config
