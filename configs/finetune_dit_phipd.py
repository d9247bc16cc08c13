"""Fine-tunes a converted pretrained DiT (``convert.py --from dit``) to phi-PD's FSS noise.

The phi-PD paper's point (arXiv:2512.05106, Sec. 4): any pretrained diffusion model moves to
structured noise by fine-tuning, with no change of architecture. This config reads the converted
run's own config (model, DDPM process, codec and its scale) and starts from its weights
(``config.init_from``), then trains with FSS noise on images of the run's size.

  python convert.py --from diffusers_vae --checkpoint sd-vae-ft-ema/ --workdir runs/sd_vae
  python convert.py --from dit --checkpoint DiT-XL-2-256x256.pt --model DiT-XL/2 \\
      --codec runs/sd_vae --workdir runs/dit_xl2_256
  python train.py --config configs/finetune_dit_phipd.py:base=runs/dit_xl2_256 \\
      --workdir runs/dit_xl2_256_phipd

Options: ``base=DIR`` (required: the converted run), ``lora=R`` (LoRA adapters of rank R on
every block's linear layers instead of a full fine-tune: the base frozen, adapters checkpointed
alone), ``labels`` (the data's labels are the
model's classes, e.g. an ImageNet tfds; default off: every example trains the null class, an
unconditional fine-tune), ``runlocal`` (a 10-step CPU smoke run of the same path). The data
default is the bundled photos (``skimage_photos``) at the run's image size; BSDS500-layout folders
work with ``--config.data.name=bsds500 --config.data.dir=...``, tfds datasets by name.

Memory (float32 parameters, AdamW moments, batch 32 at 256 px, bf16 compute): DiT-XL/2 675 M
parameters need about 11 GB for parameters, EMA and optimizer state plus activations (use
``--config.model.remat=dots`` on 16 GB devices); DiT-B 130 M about 2 GB + activations.
"""

from configs import common
from phipd_jax import saved_run


def get_config(arg=None):
  arg = common.parse_arg(arg, base='', labels=False, lora=0, runlocal=False)
  if not arg.base:
    raise ValueError('configs/finetune_dit_phipd.py needs :base=<converted run directory>')
  config = saved_run.run_config(arg.base)  # Model, process, codec and sampler of the base run.
  config.init_from = arg.base
  if config.codec.workdir:  # The base run's own copy of its codec (self-contained).
    config.codec.workdir = saved_run.codec_dir(arg.base)
  config.data.name = 'skimage_photos'
  config.data.resize = config.data.image_size
  config.codec.cache = False  # Random crops of non-square photos: encode in the train step.
  config.data.label_key = config.data.label_key if arg.labels else ''
  config.train.label_dropout = 0.1 if arg.labels else 1.0
  config.noise.kind = 'fss'
  config.noise.r0 = 0.0
  config.noise.rate = 0.1  # Paper Eq. 20: mean radius 10 (frequency-index units of the latent).
  config.optim.learning_rate = 1e-4  # DiT's AdamW rate, no weight decay.
  config.optim.weight_decay = 0.0
  config.optim.warmup_steps = 500
  config.optim.ema_decay = 0.9999
  config.train.batch_size = 32
  config.train.num_steps = 20_000
  config.train.checkpoint_every = 2000
  config.sample.sampler = 'ddim'  # The checkpoint grids: 50 DDIM steps.
  config.sample.num_steps = 50
  config.sample.translate_source = 'photo'
  config.sample.radii = (4.0, 8.0)
  config.model.dtype = 'bfloat16'
  if arg.lora:  # LoRA of rank `lora` on every block's linear layers; the base frozen.
    config.lora.rank = arg.lora
    config.optim.learning_rate = 1e-4 * 4  # Adapters take a larger rate (LoRA paper, App. D).
  if arg.runlocal:
    config.model.dtype = 'float32'
    config.optim.warmup_steps = 2
    config.optim.ema_decay = 0.9
    config.train.batch_size = 4
    config.train.num_steps = 10
    config.train.log_every = 5
    config.train.checkpoint_every = 10
    config.sample.num_steps = 4
    config.sample.num_generate = 4
    config.sample.num_translate = 2
    config.codec.scale_images = 8
    config.mesh.data, config.mesh.fsdp = -1, 1
  return config
