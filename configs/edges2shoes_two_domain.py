"""The OVG setup: one class-conditional model on both domains of edges2shoes_handbags.

Bourriez et al., "Spectral Collapse in Diffusion Inversion" (arXiv:2602.13303): unpaired
translation with one model trained on every domain. Each training record gives three examples:
its edge map (class 0), its photo (class 1) and the photo x8 nearest down- then up-sampled
(class 2; the spectrally sparse source of the super-resolution task, the analogue of the paper's
x16 microscopy images). Label dropout 0.1 trains the null class for classifier-free guidance.
Translation inverts the input with its class (0 or 2) and samples class 1 from the inverted
noise (``sample.inversion_classes``, ``sample.guidance_scale``), with or without Orthogonal
Variance Guidance (``sample.ovg``).

Two parameterisations, as in the paper:

* EDM (default): ``x = x0 + sigma eps``, Karras preconditioning, conditioned on raw sigma as
  in the OVG code; Euler on the Karras grid (no Heun, as released).
* ``ddim``: DDPM eps-prediction on SD's scaled-linear betas (0.00085 -> 0.012), DDIM sampling
  and inversion; OVG's DDIM branch with forward fraction 0.02 (the released Edges2Shoes config).

  # Accelerator (DiT-S/4, 64 px, 50 sampler steps as released):
  python train.py --config configs/edges2shoes_two_domain.py --workdir runs/two_domain_edm
  python train.py --config configs/edges2shoes_two_domain.py:ddim --workdir runs/two_domain_ddim
  # 2 CPU cores (tiny DiT/4 at 32 px, 3000 steps, ~15 min each; px=64 for 64 px):
  python train.py --config configs/edges2shoes_two_domain.py:cpu --workdir runs/two_domain_edm_cpu
  python train.py --config configs/edges2shoes_two_domain.py:cpu,ddim --workdir ...
  # Translate edge maps with OVG:
  python sample.py --workdir runs/two_domain_edm_cpu --mode translate --method ovg \\
      --input edges/ --output out/ovg
"""

from configs import common, edges2shoes_phipd

DOMAINS = ('edges', 'photo', 'photo:down8')  # Classes 0, 1, 2.


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, runlocal=False, ddim=False, px=0)
  px = arg.px or (32 if arg.cpu or arg.runlocal else 64)
  if px not in (32, 64):
    raise ValueError(f'configs/edges2shoes_two_domain.py: px={px} must be 32 or 64')
  # The phi-PD photo run's model, optimiser and budget (DiT-S/4, or tiny/4 for cpu and runlocal).
  config = edges2shoes_phipd.get_config(','.join(
      name for name in ('cpu', 'runlocal') if arg[name]))
  config.data.image_key = 'photo'  # The target domain: realism reference of the evaluation.
  config.data.domains = DOMAINS
  config.data.image_size = config.data.resize = px
  config.model.num_classes = len(DOMAINS)
  config.train.label_dropout = 0.1  # p_uncond of the OVG code.
  config.noise.kind = 'gaussian'
  if arg.ddim:
    config.diffusion.process = 'ddpm'
    config.diffusion.prediction = 'eps'
    config.diffusion.ddpm.schedule = 'scaled_linear'
    config.diffusion.ddpm.beta_start, config.diffusion.ddpm.beta_end = 0.00085, 0.012
    config.sample.sampler = 'ddim'
    config.sample.ovg.forward_fraction = 0.02
  else:
    config.diffusion.process = 'edm'
    config.diffusion.prediction = 'edm'
    config.diffusion.edm.conditioning = 'sigma'  # Raw sigma, as the OVG code.
    config.sample.sampler = 'euler'
  config.sample.num_steps = 50
  config.sample.guidance_scale = 3.0  # The released Edges2Shoes sampling uses 7.5.
  config.sample.inversion_classes = (0, 1)
  config.sample.radii = ()
  config.sample.sdedit_strengths = (0.6,)
  config.sample.num_generate = 18  # Six of each class.
  if arg.cpu or arg.runlocal:
    config.train.batch_size = 48  # 16 records x 3 domains on average.
    config.train.num_steps = 3000
    config.train.checkpoint_every = 1000
    config.sample.num_steps = 25
  if arg.runlocal:
    common.runlocal(config)
  return config
