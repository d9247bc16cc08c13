"""Defaults shared by every experiment; each config file overrides what it needs.

Every field can be overridden on the command line: ``--config.train.num_steps=100``.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.init_from = ''  # A workdir whose latest checkpoint initialises params and EMA.

  config.data = data = ml_collections.ConfigDict()
  data.name = 'skimage_photos'  # A shipped builder (skimage_photos, edges2shoes_handbags,
  #                               bsds500) or a tfds catalog name (cifar10, ...).
  data.dir = ''  # Source folder of a shipped builder (e.g. any pix2pix AB folder).
  data.tfds_dir = '~/tensorflow_datasets'
  data.train_split = 'train'
  data.eval_split = 'test'
  data.image_key = 'image'  # Feature trained on.
  data.label_key = ''  # Feature with class labels ('' = unconditional).
  data.image_size = 32  # Training crop, pixels (square).
  data.resize = 32  # Shorter side before the random crop, pixels.
  data.flip = True
  data.in_memory = True  # Decode the split once into memory (small datasets).

  config.model = model = ml_collections.ConfigDict()
  model.name = 'dit'  # 'dit' (latent-style DiT) or 'jit' (pixel-space JiT).
  model.size = 'tiny'  # DiT: tiny, small, S, B, L, XL; JiT: tiny, small, B, L, H, G.
  model.patch_size = 2
  model.num_classes = 0
  model.in_context_len = 32  # JiT in-context tokens (0 = none).
  model.spectral_forcing = forcing = ml_collections.ConfigDict()  # JiT only.
  forcing.schedule = ''  # '' = off; 'linear' (released code) or 'power_law' (paper contour).
  forcing.kappa = 30.0  # Mask slope.
  forcing.c_min = 0.05  # Cutoff at the noise end (normalised DCT radius).
  forcing.c_max = 1.0  # Linear schedule: cutoff at the data end.
  forcing.alpha = 2.0  # Power-law schedule: spectral slope of natural images.
  forcing.window = 0  # 0 = one DCT over the image; w = per w x w tile.
  model.dtype = 'float32'  # Compute dtype; 'bfloat16' on accelerators.

  config.diffusion = diffusion = ml_collections.ConfigDict()
  diffusion.process = 'flow'  # 'flow' (t = 0 data) or 'ddpm'.
  diffusion.prediction = 'v'  # 'v', 'x' or 'eps'.
  diffusion.loss_space = 'prediction'  # 'prediction' or 'v' (JiT: x-prediction, v-loss).
  diffusion.t_clamp = 1e-3  # Flow: min t divided by in x/eps -> v conversions (JiT 0.05).
  diffusion.time_sampler = 'logit_normal'  # Flow: 'uniform' or 'logit_normal'.
  diffusion.logit_mean = 0.0
  diffusion.logit_std = 1.0
  diffusion.schedule = 'cosine'  # DDPM alpha_bar: 'cosine' or 'linear'.
  diffusion.num_train_steps = 1000  # DDPM K.

  config.noise = noise = ml_collections.ConfigDict()
  noise.kind = 'fss'  # 'fss', 'phase_preserving' or 'gaussian'.
  noise.r0 = 0.0  # Minimum training radius (frequency-index units of the training crop).
  noise.rate = 0.1  # r = r0 + Exp(rate): mean 1 / rate (paper Eq. 20).
  noise.edge_width = 2.0  # Gaussian edge of the FSS mask (paper sigma = 2).
  noise.mode = 'paper'  # 'paper' or 'reference' (the released implementation).
  noise.magnitude = 'gaussian'  # 'gaussian' or 'rayleigh'.
  noise.scale = 1.0  # Noise std multiplier (JiT's s; training and sampling).

  config.optim = optim = ml_collections.ConfigDict()
  optim.learning_rate = 3e-4
  optim.warmup_steps = 100
  optim.schedule = 'cosine'  # 'cosine' or 'constant' after warmup.
  optim.final_lr_fraction = 0.1
  optim.weight_decay = 0.0
  optim.b1 = 0.9
  optim.b2 = 0.99
  optim.grad_clip = 1.0
  optim.ema_decay = 0.999

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 32  # Global batch.
  train.num_steps = 1000
  train.log_every = 50
  train.checkpoint_every = 500
  train.keep_checkpoints = 3
  train.label_dropout = 0.1  # Class-conditional models: classifier-free guidance training.

  config.sample = sample = ml_collections.ConfigDict()
  sample.write_grids = True  # Generation and translation PNGs at every checkpoint.
  sample.sampler = 'euler'  # Flow: 'euler' or 'heun'; DDPM: 'ddim'.
  sample.num_steps = 25
  sample.num_generate = 16
  sample.guidance_scale = 1.0
  sample.guidance_interval = ()  # () = everywhere; (low, high) in t (0 = data); JiT (0.0, 0.9).
  sample.translate_source = 'photo'  # Grid inputs: 'photo', 'flat_shaded' or a feature name.
  sample.translate_reference = ''  # Feature shown beside the outputs ('' = none).
  sample.num_translate = 8
  sample.radii = (2.0, 4.0)  # phi-PD radii in the grids (frequency-index units).
  sample.phipd_strength = 1.0  # 1 = from noise; < 1 = structured SDEdit.
  sample.sdedit_strengths = (0.5, 0.75)
  sample.flat_shade_segments = 48  # Superpixels of the 'flat_shaded' rendering.

  config.distributed = distributed = ml_collections.ConfigDict()
  distributed.enabled = False  # jax.distributed.initialize (automatic on multi-host TPU).
  distributed.coordinator_address = ''  # '' = auto-detect (TPU, SLURM, ...).
  distributed.num_processes = 0  # 0 = auto-detect.
  distributed.process_id = -1  # -1 = auto-detect.

  config.mesh = mesh = ml_collections.ConfigDict()
  mesh.data = -1  # -1: all devices.
  mesh.fsdp = 1  # Parameter sharding; -1: all devices left after data.
  mesh.fsdp_min_size = 2**14  # Arrays smaller than this (elements) stay replicated.
  return config


def set_jit_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """JiT's objective, optimizer and sampler (Li & He 2025, Table 9) in the library's time.

  x-prediction with the v-loss and the ``max(t, 0.05)`` clamp; logit-normal time with mean
  +0.8 and std 0.8 (JiT's -0.8 with t = 1 data); Gaussian noise of scale 1; AdamW (0.9, 0.95)
  without weight decay at a constant rate after warmup; EMA 0.9999; Heun sampling. Sets
  ``model.name = 'jit'``; size, patch, data, batch, rate and steps are the caller's.
  """
  config.model.name = 'jit'
  diffusion = config.diffusion
  diffusion.process, diffusion.prediction, diffusion.loss_space = 'flow', 'x', 'v'
  diffusion.t_clamp = 0.05
  diffusion.time_sampler, diffusion.logit_mean, diffusion.logit_std = 'logit_normal', 0.8, 0.8
  config.noise.kind, config.noise.scale = 'gaussian', 1.0
  optim = config.optim
  optim.schedule, optim.b1, optim.b2, optim.weight_decay = 'constant', 0.9, 0.95, 0.0
  optim.ema_decay = 0.9999
  config.sample.sampler = 'heun'
  config.sample.num_steps = 50
  return config


def set_spectral_forcing(config: ml_collections.ConfigDict, options) -> None:
  """Config-string options ``sf`` (released linear schedule) / ``sf_power`` (paper contour)."""
  if 'sf' in options:
    config.model.spectral_forcing.schedule = 'linear'
  if 'sf_power' in options:
    config.model.spectral_forcing.schedule = 'power_law'


def set_smoke_run(config: ml_collections.ConfigDict) -> None:
  """The ``runlocal`` option: 20 steps with checkpoints and grids every 10 (a smoke test)."""
  config.optim.warmup_steps = 5
  config.train.num_steps = 20
  config.train.log_every = 10
  config.train.checkpoint_every = 10
  config.sample.num_steps = 4
