"""LoRA vs full fine-tuning into phi-PD: moving a Gaussian-noise model to FSS noise.

The phi-PD paper (arXiv:2512.05106) moves pretrained models to structured noise with LoRA and
leaves the rank / learning-rate ablation open. This study asks it at the scale of the phi-PD vs
SDEdit study (``configs/phipd_study.py``: 32x32 edges2shoes_handbags photos, tiny DiT, patch 4):

  base      the Gaussian-noise model (the starting point of every fine-tune)
  lora      ``base`` + LoRA adapters (``rank=R``, ``lr=X``) trained with FSS noise (r0 = 0)
  full      ``base`` fully fine-tuned with FSS noise (lr 5e-4, the study's finetune rate)
  scratch   FSS noise from scratch for the same total steps as ``base`` + a fine-tune

  bash scripts/lora_study.sh runs/lora_study       # every cell x 3 seeds, then the evaluation
  python train.py --config configs/lora_study.py:base --workdir runs/lora_study/base
  python train.py --config configs/lora_study.py:lora,rank=16,lr=2e-3 \\
      --config.init_from=runs/lora_study/base --workdir runs/lora_study/lora_r16_lr2e-3_s0

Budget on 2 CPU cores: the base 1200 steps (2.5 min), each fine-tune ``FINETUNE_STEPS`` steps
of batch 32 (0.5 min), ``scratch`` 1200 + ``FINETUNE_STEPS`` (3 min); the whole study with its
evaluations about 80 min. LoRA uses scale alpha / r = 1 (``lora.alpha = 0``) on qkv, proj, MLP
and adaLN of every block; the seed (``--config.seed``) sets the adapters' ``A``, the data order
and the noise. Shorter fine-tunes: ``--config.train.num_steps=N``.
"""

from configs import common, phipd_study

BASE_STEPS = 1200
FINETUNE_STEPS = 200


def get_config(arg=None):
  options = common.parse_arg(arg, base=False, lora=False, full=False, scratch=False, rank=16,
                             lr=2e-3, runlocal=False)
  cells = [name for name in ('base', 'lora', 'full', 'scratch') if options[name]]
  if len(cells) != 1:
    raise ValueError(f'configs/lora_study.py: choose one of base, lora, full, scratch; got {cells}')
  cell = cells[0]
  config = phipd_study.get_config('gaussian' if cell == 'base' else 'fss0')
  config.train.num_steps = BASE_STEPS
  config.train.checkpoint_every = BASE_STEPS // 2
  if cell in ('lora', 'full'):
    config.train.num_steps = FINETUNE_STEPS
    config.train.checkpoint_every = FINETUNE_STEPS
    config.optim.warmup_steps = 20
    config.optim.learning_rate = 5e-4  # The phi-PD study's fine-tune rate.
  if cell == 'lora':
    config.lora.rank = options.rank
    config.optim.learning_rate = options.lr
  if cell == 'scratch':
    config.train.num_steps = BASE_STEPS + FINETUNE_STEPS
    config.train.checkpoint_every = config.train.num_steps
  config.sample.write_grids = False
  if options.runlocal:
    common.runlocal(config)
  return config
