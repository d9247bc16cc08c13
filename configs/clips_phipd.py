"""Video phi-PD: FSS-noise flow matching of a spatio-temporal DiT on camera-motion clips.

Clips of 8 frames (32 x 32 crops of 40-pixel frames) from ``camera_motion_clips``: a virtual
camera panning, zooming and rotating over the BSDS500 photos of ``../shared/data/bsds500``, with
the exact optical flow of every clip. The model is a tiny spatio-temporal DiT
(``model.name='video_dit'``: 4 x 4 x 2 patches, full attention over space and time); the noise
is phi-PD's FSS noise, made for a clip as ``noise.video`` says (``per_frame``, the paper;
``shared_magnitude``, ``spatiotemporal`` or ``flow_warped``). The checkpoint grids translate
held-out clips (rows of frames) with phi-PD and SDEdit.

  python train.py --config configs/clips_phipd.py --workdir runs/clips
  python sample.py --workdir runs/clips --mode translate --input clip.mp4 --output out/ --radius 4

Options (after the colon): ``runlocal`` (a 20-step smoke run), ``video=<option>`` (the noise
option, default per_frame), ``factorised`` (space-then-time attention).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, video='per_frame', factorised=False)
  config = common.get_base_config()
  config.data.name = 'camera_motion_clips'
  config.data.image_key = 'frames'
  config.data.frames = 8
  config.data.image_size = 32
  config.data.resize = 40
  config.model.name = 'video_dit'
  config.model.size = 'tiny'
  config.model.patch_size = 4
  config.model.temporal_patch_size = 2
  config.model.attention = 'factorised' if arg.factorised else 'full'
  config.noise.kind = 'fss'
  config.noise.video = arg.video
  config.noise.rate = 0.25  # Mean radius 4 on a 32-pixel frame, as configs/quickstart.py.
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  config.train.batch_size = 8
  config.train.num_steps = 1500
  config.train.log_every = 50
  config.train.checkpoint_every = 500
  config.sample.sampler = 'euler'
  config.sample.num_steps = 20
  config.sample.num_generate = 4
  config.sample.num_translate = 2
  config.sample.radii = (2.0, 4.0)
  config.sample.sdedit_strengths = (0.75,)
  if arg.runlocal:
    common.runlocal(config)
  return config
