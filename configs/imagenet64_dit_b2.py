"""Pod config: class-conditional DiT-B/2 on ImageNet (tfds ``imagenet2012``) at 64x64 pixels.

FSS-noise flow matching, classifier-free guidance. Sized for a TPU v5e-64 slice (64 chips of
16 GiB HBM, 16 hosts x 4 chips):

  # on every host of the slice (jax.distributed is initialised automatically on TPU):
  python train.py --config configs/imagenet64_dit_b2.py --workdir gs://BUCKET/runs/in64_b2

Mesh and batch: ``data=16 x fsdp=4`` over the 64 chips; global batch 512 split over both axes,
so 8 images per chip and 32 per host (each host reads its own 32 from its slice of the data).

Expected memory per chip (worked out, not measured):

* parameters: DiT-B/2 with 3 input/output channels and 1000 classes has ~130 M parameters.
  float32 params + EMA + two Adam moments + gradients = 5 x 4 B x 130 M = 2.6 GB replicated;
  with ``fsdp=4`` every array above 16k elements is split 4 ways: ~0.65 GB per chip, plus one
  layer's gathered bf16 weights (~14 MB) at a time.
* activations (bf16, no rematerialisation), per image and block, after Korthikanti et al. 2022:
  ``34 s h + 5 a s^2`` bytes with s = 1024 tokens, h = 768, a = 12 heads = 27 MB + 63 MB
  (attention scores) = 90 MB; x 12 blocks = 1.08 GB per image; x 8 images = 8.6 GB per chip.
* total ~9.5 GB of 16 GiB, leaving room for XLA's temporaries. At 16 images per chip it would
  not fit without rematerialisation or a fused (flash) attention kernel.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  config = common.get_base_config()
  config.data.name = 'imagenet2012'
  config.data.tfds_dir = '~/tensorflow_datasets'  # Or gs://BUCKET/tensorflow_datasets.
  config.data.image_key = 'image'
  config.data.label_key = 'label'
  config.data.eval_split = 'validation'
  config.data.image_size = 64
  config.data.resize = 72
  config.data.in_memory = False  # 1.28 M images: stream and decode.
  config.model.size = 'B'
  config.model.patch_size = 2
  config.model.num_classes = 1000
  config.model.dtype = 'bfloat16'
  config.noise.kind = 'fss'
  config.noise.rate = 0.1
  config.optim.learning_rate = 1e-4
  config.optim.warmup_steps = 5000
  config.optim.weight_decay = 0.0
  config.optim.ema_decay = 0.9999
  config.train.batch_size = 512
  config.train.num_steps = 400_000
  config.train.log_every = 100
  config.train.checkpoint_every = 5000
  config.sample.sampler = 'heun'
  config.sample.num_steps = 32
  config.sample.guidance_scale = 1.5
  config.sample.translate_source = 'image'
  config.mesh.data = 16
  config.mesh.fsdp = 4
  if arg.runlocal:  # CPU smoke test of the same code path (needs the dataset prepared).
    common.runlocal(config)
  return config
