"""Latent Wavelet Diffusion: flow matching on the latents of a frozen scale-consistent
autoencoder, with the loss masked to detail-rich positions (Sigillo et al., arXiv:2506.00433,
Eqs. 6-7).

The autoencoder is a ``train.py`` run of ``configs/autoencoder_lwd.py`` named by
``config.codec.workdir``; it is copied into ``<workdir>/codec`` when the run starts, encodes each
batch inside the train step (posterior mean, scaled by 1 / std of the latents, measured at the
start) and decodes every sample before it is written. The mask ``M = 1[sigma <= A(z_t) + ell]``
is computed on the noisy latent (``config.diffusion.lwd``); the fraction of supervised latent
positions at five noise levels is logged as ``lwd_mask_fraction_s<sigma>`` in metrics.jsonl.

  # Accelerator (256-px photos, f=8 autoencoder -> 32x32x4 latents, DiT-S/2):
  python train.py --config configs/autoencoder_lwd.py --workdir runs/autoencoder_lwd
  python train.py --config configs/latent_lwd.py --workdir runs/latent_lwd
  # 2 CPU cores (64-px photos, f=4 autoencoder -> 16x16x4 latents, tiny DiT/2):
  python train.py --config configs/autoencoder_lwd.py:cpu --workdir runs/autoencoder_lwd_cpu
  python train.py --config configs/latent_lwd.py:cpu --workdir runs/latent_lwd_cpu
  # Smoke run (20 steps; any autoencoder run, e.g. the autoencoder smoke run):
  python train.py --config configs/latent_lwd.py:runlocal \
      --config.codec.workdir=/tmp/ae --workdir /tmp/latent

Options (comma-separated after the colon):
  cpu       the 2-core CPU run above.
  runlocal  a 20-step smoke run.
  nolwd     plain flow matching (the ablation's baseline; diffusion.lwd.enabled = False).
  ell=X     the mask's offset (paper 0.3; 0 = the strictest mask).
  fss       FSS noise (phi-PD training) instead of Gaussian: phi-PD in latent space, whose
            translation is encode -> FSS noise of the latent -> sample -> decode.
"""

from configs import common, edges2shoes_phipd


def get_config(arg=None):
  arg = common.parse_arg(arg, cpu=False, runlocal=False, nolwd=False, ell=0.3, fss=False)
  # The photos, sampler and grids of the pixel edges2shoes run (edge maps -> photos in the grids).
  config = edges2shoes_phipd.get_config('cpu' if arg.cpu or arg.runlocal else None)
  config.codec.workdir = 'runs/autoencoder_lwd_cpu' if arg.cpu or arg.runlocal else (
      'runs/autoencoder_lwd')
  config.model.patch_size = 2
  config.diffusion.lwd.enabled = not arg.nolwd
  config.diffusion.lwd.ell = arg.ell
  config.noise.kind = 'fss' if arg.fss else 'gaussian'
  config.sample.sampler = 'euler'
  config.sample.sdedit_strengths = (0.6, 0.8)
  if arg.cpu or arg.runlocal:
    # 0.33 s/step at batch 32 with cached latents on 2 CPU cores (0.75 s encoding in the
    # step): 1500 steps in about 10 min.
    config.train.num_steps = 1500
    config.train.log_every = 50
    config.sample.num_steps = 25
    config.sample.radii = (1.0, 2.0, 4.0)  # Frequency index of the 16x16 latent.
  else:  # 256-px photos, f=8 -> 32x32x4 latents.
    config.data.image_size = config.data.resize = 256
    config.optim.learning_rate = 1e-4
    config.train.num_steps = 100_000
    config.sample.num_steps = 50
    config.sample.radii = (2.0, 4.0, 8.0)  # Frequency index of the 32x32 latent.
  if arg.runlocal:
    common.runlocal(config)
  return config
