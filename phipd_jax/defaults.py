"""Today's defaults of every run-config field, and the model recipes a saved run is rebuilt with.

Config files (``configs/``) start from :func:`get_base_config` and override what they need;
a saved run's ``config.json`` is read back onto the same defaults
(:func:`config_from_saved`), so the package alone (no ``configs/`` on the path, any working
directory, a non-editable install) rebuilds any run it saved. Fields added after a run was saved
take these defaults; :func:`migrate` rewrites fields whose meaning moved.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # PRNG of the run's stream (noise, times, label dropout): 'threefry2x32' (JAX's default),
  # 'rbg' or 'unsafe_rbg' (XLA's RngBitGenerator, what large TPU runs use). Fixed per run.
  config.rng_impl = 'threefry2x32'
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
  # Multi-domain training (the OVG setup): one example per entry and record, labelled by the
  # entry's index; an entry is a feature or '<feature>:down<k>' (x k nearest down-up after the
  # crop). E.g. ('edges', 'photo'): edge maps = class 0, photos = class 1. () = off.
  data.domains = ()
  # Clips: 0 = images [B, H, W, C]; T >= 1 = clips [B, T, H, W, C] of the first T frames of each
  # record's data.image_key (a clip dataset: camera_motion_clips, video_folder_clips) with its
  # forward optical flow (batch['flow'], [B, T - 1, H, W, 2], pixels). Needs model.name='video_dit'.
  data.frames = 0

  config.model = model = ml_collections.ConfigDict()
  model.name = 'dit'  # 'dit' (latent-style DiT) or 'jit' (pixel-space JiT).
  model.size = 'tiny'  # DiT: tiny, small, S, B, L, XL; JiT: tiny, small, B, L, H, G.
  model.patch_size = 2
  model.num_classes = 0
  model.dtype = 'float32'  # Compute dtype; 'bfloat16' on accelerators.
  # Parameter (and optimizer-state) dtype: 'float32' with a bf16 dtype is mixed precision.
  model.param_dtype = 'float32'
  # Transformers (dit, jit): the attention form ('auto' = the fastest for the backend; 'xla',
  # 'cpu', 'cudnn', 'tpu') and per-block rematerialisation ('none', 'dots', 'full'): activation
  # memory for recomputation. `benchmark.py --what train` reports time and memory of each.
  model.attention_impl = 'auto'
  model.remat = 'none'
  # Every field of config.model is a keyword of the model's builder (phipd_jax.models.MODELS);
  # JiT adds in_context_len and spectral_forcing (set_jit_recipe).

  config.diffusion = diffusion = ml_collections.ConfigDict()
  diffusion.process = 'flow'  # 'flow' (t = 0 data), 'ddpm' or 'edm' (t = sigma).
  diffusion.prediction = 'v'  # 'v', 'x', 'eps'; EDM: 'edm' (preconditioned), 'x', 'eps'.
  diffusion.loss_space = 'prediction'  # 'prediction' or 'v' (JiT: x-prediction, v-loss).
  # Each process's settings: the keyword arguments of its class (diffusion/processes.py), the
  # section named by diffusion.process is the one used.
  diffusion.flow = flow = ml_collections.ConfigDict()  # Flow matching, t in [0, 1].
  flow.t_clamp = 1e-3  # Min t divided by in x/eps -> v conversions (JiT 0.05).
  flow.time_sampler = 'logit_normal'  # 'uniform' or 'logit_normal'.
  flow.logit_mean = 0.0
  flow.logit_std = 1.0
  diffusion.ddpm = ddpm = ml_collections.ConfigDict()  # DDPM / DDIM, integer steps.
  ddpm.schedule = 'cosine'  # alpha_bar: 'cosine', 'linear' or 'scaled_linear'.
  ddpm.num_steps = 1000  # K.
  ddpm.beta_start = 1e-4  # linear / scaled_linear betas (SD: 0.00085, 0.012).
  ddpm.beta_end = 0.02
  ddpm.spacing = 'linspace'  # DDIM grid: 'linspace', 'trailing' or 'leading' (released OVG).
  diffusion.edm = edm = ml_collections.ConfigDict()  # Karras et al. 2022.
  edm.sigma_data = 0.5
  edm.sigma_min = 0.002
  edm.sigma_max = 80.0
  edm.rho = 7.0
  edm.p_mean = -1.2
  edm.p_std = 1.2
  edm.conditioning = 'log_sigma'  # 'log_sigma' (EDM: ln(sigma)/4) or 'sigma' (the OVG code).
  # Latent Wavelet Diffusion (Sigillo et al., arXiv:2506.00433, Eqs. 6-7): the loss is masked
  # to positions with sigma <= A + ell, A the wavelet detail-energy map of the noisy input.
  # Flow matching only (sigma = t in [0, 1]).
  diffusion.lwd = lwd = ml_collections.ConfigDict()
  lwd.enabled = False
  lwd.ell = 0.3  # The paper's value in every experiment (the released trainer defaults to 0.1).
  # 'all': mean over all elements, masked ones included (released code, the reference);
  # 'mask': mean over supervised elements (a DEVIATION from the paper's code).
  lwd.normalize = 'all'
  # The energy map's channels: 'all' (paper Eq. 2, every study here) or 'released' (the
  # released compute_wavelet_attention reads latent channels 0-2 only).
  lwd.channels = 'all'
  lwd.log_bins = 5  # Mask fraction logged at the centres of this many sigma bins (0 = none).

  # Latent diffusion: the frozen autoencoder of a train.py autoencoder run (configs/
  # autoencoder_lwd.py) turns images into the space the diffusion runs in; '' = pixel space.
  # The codec is copied into <workdir>/codec at the start of a run (the run stays loadable if
  # the autoencoder run moves), encodes each batch inside the train step (posterior mean) and
  # decodes every sample before it is written. Noise (FSS / phi-PD), losses, the LWD mask and
  # radii are then in latent units (frequency index of the latent).
  # LoRA fine-tuning (Hu et al. 2022) of a base run (config.init_from, referenced, not copied):
  # the base frozen, rank-r adapters on the named linear layers of DiT / JiT blocks trained.
  config.lora = lora = ml_collections.ConfigDict()
  lora.rank = 0  # 0 = off (a full fine-tune when init_from is set).
  lora.alpha = 0.0  # Scale alpha / rank; 0 = rank (scale 1).
  lora.targets = ('qkv', 'proj', 'mlp', 'adaln')  # phipd_jax.lora.TARGETS.
  lora.dropout = 0.0  # Drop probability of the adapter branch's input (training only).
  config.codec = codec = ml_collections.ConfigDict()
  codec.workdir = ''
  codec.scale = 0.0  # 1 / std of the latents; 0 = measured on training images at the start.
  codec.shift = 0.0  # Subtracted before scaling: z = (E(x) - shift) * scale (SD3 / FLUX VAEs).
  codec.scale_images = 256  # Training images the scale is measured on.
  # Encode every training image (and its mirror) once at the start instead of inside each step:
  # the encoder was 56% of the CPU latent step (benchmark.py --what train). Needs images of
  # exactly data.image_size after data.resize (no random crops); False = encode in the step.
  codec.cache = True

  config.noise = noise = ml_collections.ConfigDict()
  noise.kind = 'fss'  # 'fss', 'phase_preserving' or 'gaussian'.
  noise.r0 = 0.0  # Minimum training radius (frequency-index units of the training crop).
  noise.rate = 0.1  # r = r0 + Exp(rate): mean 1 / rate (paper Eq. 20).
  noise.edge_width = 2.0  # Gaussian edge of the FSS mask (paper sigma = 2).
  noise.mode = 'paper'  # 'paper' or 'reference' (the released implementation).
  noise.magnitude = 'gaussian'  # 'gaussian' or 'rayleigh'.
  noise.scale = 1.0  # Noise std multiplier (JiT's s; training and sampling).
  noise.pad_factor = 0.0  # Mirror padding before the FFT; 0 = the mode's own (paper 1, ref 1.5).
  # Clips (data.frames > 0): how a clip's noise is made (phipd_jax.video_noise.VIDEO_OPTIONS):
  # 'per_frame' (the paper: independent per frame), 'shared_magnitude', 'spatiotemporal' (3-D
  # FFT) or 'flow_warped' (Gaussian transported along the flow, then FSS per frame).
  noise.video = 'per_frame'

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
  sample.sampler = 'euler'  # Flow and EDM: 'euler' or 'heun'; DDPM: 'ddim' or 'ddpm' (ancestral).
  sample.num_steps = 25
  sample.num_generate = 16
  sample.guidance_scale = 1.0
  sample.guidance_interval = ()  # () = everywhere; (low, high) in t (0 = data); JiT (0.0, 0.9).
  sample.guidance_channels = 0  # Guide the first N channels only (0 = all; converted DiT: 3).
  sample.clip_x0 = 0.0  # Clip x0_hat to [-c, c] at every step (0 = off; DDPM eps: 1).
  sample.translate_source = 'photo'  # Grid inputs: 'photo', 'flat_shaded' or a feature name.
  sample.translate_reference = ''  # Feature shown beside the outputs ('' = none).
  sample.num_translate = 8
  sample.radii = (2.0, 4.0)  # phi-PD radii in the grids (frequency-index units).
  sample.phipd_strength = 1.0  # 1 = from noise; < 1 = structured SDEdit.
  sample.sdedit_strengths = (0.5, 0.75)
  sample.flat_shade_segments = 48  # Superpixels of the 'flat_shaded' rendering.
  # Translation by inversion (class-conditional multi-domain runs): invert with the source
  # class, sample with the target class at sample.guidance_scale. () = no inversion columns.
  sample.inversion_classes = ()  # (source, target), e.g. (0, 1): edges -> photos.
  sample.ovg = ovg = ml_collections.ConfigDict()  # Orthogonal Variance Guidance (EDM, DDPM).
  ovg.eta_n = 1e9  # Variance step (released Edges2Shoes config's cgd_eta).
  ovg.eta_c = 7.08e-5  # Structure step (scp_eta).
  ovg.kappa = 1.0  # Clip of each correction, a fraction of the Euler drift norm.
  ovg.forward_fraction = 0.0  # DDPM only: share of steps replaced by forward noising (0.02).

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
  config.model.in_context_len = 32  # In-context class tokens (0 = none).
  config.model.spectral_forcing = forcing = ml_collections.ConfigDict()
  forcing.schedule = ''  # '' = off; 'linear' (released code) or 'power_law' (paper contour).
  forcing.kappa = 30.0  # Mask slope.
  forcing.c_min = 0.05  # Cutoff at the noise end (normalised DCT radius).
  forcing.c_max = 1.0  # Linear schedule: cutoff at the data end.
  forcing.alpha = 2.0  # Power-law schedule: spectral slope of natural images.
  forcing.window = 0  # 0 = one DCT over the image; w = per w x w tile.
  diffusion = config.diffusion
  diffusion.process, diffusion.prediction, diffusion.loss_space = 'flow', 'x', 'v'
  flow = diffusion.flow
  flow.t_clamp = 0.05
  flow.time_sampler, flow.logit_mean, flow.logit_std = 'logit_normal', 0.8, 0.8
  config.noise.kind, config.noise.scale = 'gaussian', 1.0
  optim = config.optim
  optim.schedule, optim.b1, optim.b2, optim.weight_decay = 'constant', 0.9, 0.95, 0.0
  optim.ema_decay = 0.9999
  config.sample.sampler = 'heun'
  config.sample.num_steps = 50
  return config


def set_autoencoder_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Trains the KL autoencoder (``model.name = 'autoencoder'``) with the scale-consistent loss
  of Latent Wavelet Diffusion (Sigillo et al., arXiv:2506.00433, Eq. 1 and App. D).

  ``L = MSE(D(z), x) + alpha MSE(D(pool_s z), pool_s x) + beta KL + lam LPIPS_vgg(D(z), x)``,
  ``s`` drawn from ``scales`` each step (:func:`phipd_jax.latent.scale_consistent_vae_loss`).
  Defaults are the paper's weights (App. D): alpha 0.25, beta 0.001, lam 0.05; the released
  script uses beta = 0. The optimizer follows the released finetuning script (AdamW, betas
  (0.9, 0.99), weight decay 0.01, EMA 0.9998) at a from-scratch learning rate. The model has no
  ``patch_size``; ``num_classes`` stays 0. Size, data, batch, rate and steps are the caller's.
  """
  model = config.model
  for field in ('patch_size', 'attention_impl', 'remat'):  # Transformer-only settings.
    if field in model:
      del model[field]
  model.name = 'autoencoder'
  model.size = 'tiny'  # 'tiny' (CPU) or 'base'.
  model.downsample = 8  # Spatial factor f: 4 or 8.
  model.latent_channels = 4
  model.num_classes = 0
  config.autoencoder = ae = ml_collections.ConfigDict()
  ae.alpha = 0.25  # Scale-consistency term (paper and released script; released default 0.1).
  ae.beta = 0.001  # KL (paper App. D; the released script: 0).
  ae.lam = 0.05  # LPIPS-VGG weight (0 skips the network).
  ae.scales = (2, 4)  # Pooling factors s drawn each step.
  ae.num_reconstruct = 8  # Held-out photos in the reconstruction grid at each checkpoint.
  optim = config.optim
  optim.b1, optim.b2, optim.weight_decay = 0.9, 0.99, 0.01
  optim.ema_decay = 0.9998
  return config


def migrate(saved: dict) -> dict:
  """A saved ``config.json`` (any version) as today's fields.

  Turn-1 runs stored the JiT-only ``model.in_context_len`` / ``model.spectral_forcing`` for
  every model; a DiT run's copies (which it never used) are dropped. Runs saved before the
  process sections kept flow matching's and DDPM's settings flat in ``diffusion``; they move
  into ``diffusion.flow`` and ``diffusion.ddpm`` (``num_train_steps`` -> ``ddpm.num_steps``).

  Raises:
    ValueError: a non-JiT run saved with a Spectral Forcing schedule (it cannot have trained so).
  """
  saved = dict(saved)
  model = dict(saved.get('model', {}))
  if model.get('name', 'dit') != 'jit':
    model.pop('in_context_len', None)
    forcing = model.pop('spectral_forcing', None)
    if forcing and forcing.get('schedule'):
      raise ValueError(f'saved run: model.spectral_forcing={forcing} on model.name='
                       f'{model.get("name")!r}')
  saved['model'] = model
  diffusion = dict(saved.get('diffusion', {}))
  for section, fields in _FLAT_PROCESS_FIELDS.items():
    moved = {new: diffusion.pop(old) for old, new in fields.items() if old in diffusion}
    if moved:
      diffusion[section] = {**diffusion.get(section, {}), **moved}
  saved['diffusion'] = diffusion
  return saved


# Flat ``diffusion`` fields of older runs -> (section, field).
_FLAT_PROCESS_FIELDS = {
    'flow': {'t_clamp': 't_clamp', 'time_sampler': 'time_sampler', 'logit_mean': 'logit_mean',
             'logit_std': 'logit_std'},
    'ddpm': {'schedule': 'schedule', 'num_train_steps': 'num_steps', 'beta_start': 'beta_start',
             'beta_end': 'beta_end', 'spacing': 'spacing'},
}


def config_from_saved(saved: dict) -> ml_collections.ConfigDict:
  """Today's defaults (with the saved model's recipe) updated with a migrated saved config."""
  saved = migrate(saved)
  config = get_base_config()
  name = saved['model'].get('name')
  if name == 'jit':
    set_jit_recipe(config)
  elif name in ('autoencoder', 'autoencoder_kl'):
    set_autoencoder_recipe(config)  # Its model fields (no patch_size) and loss section.
    if name == 'autoencoder_kl':  # A converted diffusers VAE: its own (diffusers') fields only.
      config.model = ml_collections.ConfigDict()
  config.update(saved)
  return config
