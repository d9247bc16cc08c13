"""Pod config: class-conditional JiT-B/16 on ImageNet (tfds ``imagenet2012``) at 256x256 pixels.

JiT's recipe (Li & He 2025, arXiv:2511.13720, Table 9 and Sec. 4) in the
library's time convention: x-prediction with the v-loss and the ``max(t, 0.05)`` clamp,
logit-normal time with mean +0.8 (JiT's -0.8) and std 0.8, noise scale 1, AdamW (0.9, 0.95)
without weight decay, lr 2e-4 (= 5e-5 x 1024 / 256) constant after 5 warmup epochs, EMA 0.9999,
label dropout 0.1; Heun with 50 steps and CFG 2.9 on the interval ``t_data in (0.1, 1)`` =
``t in (0, 0.9)`` here. ``:sf`` adds Spectral Forcing (released linear schedule), the SF paper's
``130M/16`` setting; ``:sf,p32`` is its ``130M/32`` (JiT-B/32 at 256, 64 tokens).

  # on every host of a TPU v5e-64 slice (jax.distributed is initialised automatically):
  python train.py --config configs/imagenet256_jit_b16.py:sf --workdir gs://BUCKET/runs/jit_b16_sf

Mesh and batch: ``data=16 x fsdp=4`` over the 64 chips; global batch 1024, 16 images per chip.

Expected memory per chip (worked out, not measured):

* parameters: JiT-B/16 has 131.1 M parameters (checked in tests). float32 params + EMA + two
  Adam moments + gradients = 5 x 4 B x 131 M = 2.6 GB, split 4 ways by ``fsdp``: ~0.66 GB.
* activations (bf16, no rematerialisation), per image and block, after Korthikanti et al. 2022,
  ``34 s h + 5 a s^2`` bytes with s = 256 + 32 in-context tokens, h = 768, a = 12: 7.5 MB + 5.0 MB;
  the float32 attention softmax adds ~5 MB: ~18 MB x 12 blocks = 0.21 GB per image, x 16 images
  = 3.4 GB per chip. Spectral Forcing adds two 256x256 DCT matmuls per channel (~0.4 MB).
* total ~4.1 GB of 16 GiB: room for 32 images per chip (batch 2048) if wanted.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, sf=False, sf_power=False, p32=False, runlocal=False)
  config = common.get_base_config()
  config.data.name = 'imagenet2012'
  config.data.tfds_dir = '~/tensorflow_datasets'  # Or gs://BUCKET/tensorflow_datasets.
  config.data.image_key = 'image'
  config.data.label_key = 'label'
  config.data.eval_split = 'validation'
  config.data.image_size = 256
  config.data.resize = 256  # Short side 256, random 256 crop (ADM-style centre crop at eval).
  config.data.in_memory = False
  common.set_jit_recipe(config)
  config.model.size = 'B'
  config.model.patch_size = 32 if arg.p32 else 16
  config.model.num_classes = 1000
  config.model.in_context_len = 32
  config.model.dtype = 'bfloat16'
  common.set_spectral_forcing(config, arg)
  config.optim.learning_rate = 2e-4
  config.optim.warmup_steps = 6256  # 5 epochs of 1,281,167 images at batch 1024.
  config.train.batch_size = 1024
  config.train.num_steps = 250_200  # 200 epochs (JiT's ablation length).
  config.train.label_dropout = 0.1
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  config.sample.guidance_scale = 2.9
  config.sample.guidance_interval = (0.0, 0.9)
  config.sample.translate_source = 'image'
  config.mesh.data = 16
  config.mesh.fsdp = 4
  if arg.runlocal:  # CPU smoke test of the same code path (needs the dataset).
    config.data.image_size = config.data.resize = 64
    common.runlocal(config)
  return config
