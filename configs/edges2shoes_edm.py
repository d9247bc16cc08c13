"""EDM (Karras et al. 2022) on edges2shoes_handbags photos, with FSS or Gaussian noise.

The third process of the library, trained like ``configs/edges2shoes_phipd.py`` (photos only,
64x64) but in EDM's sigma parameterisation: ``x = x0 + sigma eps``, ``ln sigma ~ N(-1.2, 1.2^2)``,
Karras preconditioning with ``sigma_data = 0.5`` and the loss weight
``(sigma^2 + sigma_d^2) / (sigma sigma_d)^2``; sampled with Heun on the Karras grid (rho 7,
80 -> 0.002). FSS noise is scaled by sigma, so phi-PD works unchanged: the edge map's phase
enters through the noise at sigma_max. SDEdit strengths are positions on the Karras ramp
(0.4 -> sigma ~ 1, 0.6 -> sigma ~ 5.9).

  # Accelerator (DiT-S/4, 50k steps):
  python train.py --config configs/edges2shoes_edm.py --workdir runs/edges2shoes_edm
  # 2 CPU cores (tiny DiT, 2000 steps):
  python train.py --config configs/edges2shoes_edm.py:cpu --workdir runs/edges2shoes_edm_cpu
  # Gaussian noise instead of FSS; the OVG code's raw-sigma conditioning:
  python train.py --config configs/edges2shoes_edm.py:cpu,gaussian,raw_sigma --workdir ...
"""

from configs import common, edges2shoes_phipd


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, runlocal=False, gaussian=False, raw_sigma=False)
  config = edges2shoes_phipd.get_config(','.join(
      name for name in ('cpu', 'runlocal') if arg[name]))
  config.diffusion.process = 'edm'
  config.diffusion.prediction = 'edm'
  config.diffusion.edm.conditioning = 'sigma' if arg.raw_sigma else 'log_sigma'
  if arg.gaussian:
    config.noise.kind = 'gaussian'
  config.sample.sampler = 'heun'
  config.sample.num_steps = 18  # 35 network evaluations (Karras et al. 2022, CIFAR-10 setting).
  config.sample.sdedit_strengths = (0.4, 0.6)
  if arg.cpu:
    config.sample.num_steps = 12
  if arg.runlocal:
    config.sample.num_steps = 4
  return config
