"""A clip run end to end on a folder of real video files: train.py's path on video_folder_clips,
sample.py translating an mp4 into mp4 / GIF outputs with temporal metrics, phipd_jax.load."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from phipd_jax import experiment, trainer, writers
from phipd_jax.data import clips

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def clip_run(tmp_path_factory):
  """Three 24-frame camera-motion videos (mp4) of scikit-image photos, a 4-step clip run on
  them (video_folder_clips: estimated flow, 8-frame clips, 4 frames used at 16 px)."""
  from configs import clips_phipd
  videos = tmp_path_factory.mktemp('videos')
  for index, (name, motion) in enumerate([('astronaut', 'pan'), ('coffee', 'zoom'),
                                          ('chelsea', 'rotate')]):
    frames, _ = clips.synthetic_clip(getattr(skimage.data, name)(),
                                     np.random.default_rng(index), motion, 24, 64)
    writers.write_video(str(videos / f'{name}.mp4'), frames)
  config = clips_phipd.get_config('runlocal')
  config.data.name, config.data.dir = 'video_folder_clips', str(videos)
  config.data.tfds_dir = str(tmp_path_factory.mktemp('tfds'))
  config.data.eval_split = 'train'  # 3 videos: the test split (every 10th) has only the first.
  config.data.frames, config.data.image_size, config.data.resize = 4, 16, 20
  config.noise.video = 'flow_warped'
  config.train.batch_size, config.train.num_steps = 4, 4
  config.train.checkpoint_every, config.train.log_every = 4, 2
  config.optim.warmup_steps = 1
  config.sample.num_steps, config.sample.num_translate = 2, 2
  workdir = str(tmp_path_factory.mktemp('run'))
  summary = trainer.train(experiment.build(config), workdir)
  assert np.isfinite(summary.final_loss)
  return workdir, str(videos)


def test_a_clip_run_trains_translates_a_video_file_and_loads(clip_run, tmp_path):
  workdir, videos = clip_run
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'translate_000004.png')))
  assert grid.shape[1] > 4 * 16 * 4  # Frames left to right, at 4x.
  generated = np.load(os.path.join(workdir, 'samples', 'generate_000004.npz'))['samples']
  assert generated.shape[1:] == (4, 16, 16, 3)
  output = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, 'sample.py', '--workdir', workdir, '--mode', 'translate', '--input',
       os.path.join(videos, 'astronaut.mp4'), '--method', 'phipd', '--radius', '3',
       '--video', 'flow_warped', '--steps', '2', '--output', str(output)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'translated 6 clip(s)' in result.stdout  # 24 frames / 4.
  assert 'RuntimeWarning' not in result.stderr, result.stderr[-2000:]
  metrics = json.loads((output / 'temporal.json').read_text())
  assert len(metrics['per_clip']['output']['warping_error']) == 6
  assert metrics['mean']['input']['warping_error'] < metrics['mean']['output']['warping_error']
  import imageio.v2 as imageio
  frames = imageio.mimread(output / 'astronaut_clip000.mp4')
  assert len(frames) == 4 and frames[0].shape == (16, 16, 3)
  assert Image.open(output / 'astronaut_clip005.gif').n_frames == 4
  inverted = tmp_path / 'inverted'
  result = subprocess.run(
      [sys.executable, 'sample.py', '--workdir', workdir, '--mode', 'invert', '--input',
       os.path.join(videos, 'coffee.mp4'), '--steps', '2', '--output', str(inverted)],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert np.load(inverted / 'inverted_clips.npz')['noise'].shape == (6, 4, 16, 16, 3)
  assert 'noise warping error' in result.stdout and (inverted / 'spectrum.png').exists()
  import phipd_jax
  run = phipd_jax.load(workdir, num_steps=2)
  clip = np.asarray(imageio.mimread(os.path.join(videos, 'coffee.mp4'))[:4])
  clip = np.stack([np.asarray(Image.fromarray(f).resize((16, 16), Image.BICUBIC)) for f in clip])
  x = clip[None].astype(np.float32) / 127.5 - 1
  flow = np.zeros((1, 3, 16, 16, 2), np.float32)
  out = run.translate(x, radius=3.0, video='flow_warped', flow=flow)
  assert out.shape == (1, 4, 16, 16, 3) and np.all(np.isfinite(out))
  per_frame = run.translate(x, radius=3.0, video='per_frame')
  assert not np.allclose(out, per_frame)
  with pytest.raises(ValueError, match="needs the clip's flow"):
    run.translate(x, radius=3.0, video='flow_warped')


def test_bad_clip_inputs_are_named_before_the_checkpoint_loads(clip_run, tmp_path):
  workdir, _ = clip_run
  (tmp_path / 'broken.mp4').write_bytes(b'not a video')
  result = subprocess.run(
      [sys.executable, 'sample.py', '--workdir', workdir, '--mode', 'translate', '--input',
       str(tmp_path / 'broken.mp4'), '--output', str(tmp_path / 'out')],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1 and 'broken.mp4' in result.stderr, result.stderr[-2000:]
  assert not (tmp_path / 'out').exists()


def test_the_readme_clip_commands_run(clip_run, tmp_path):
  """The README's clip-run sample.py commands, as written (the run directory and the output
  folder substituted), on the shipped GIF."""
  import re
  import shlex
  workdir, _ = clip_run
  text = open(os.path.join(REPO_ROOT, 'README.md')).read()
  commands = [line.split('#')[0].strip() for block in re.findall(r'```bash\n(.*?)```', text, re.S)
              for line in block.replace('\\\n', ' ').splitlines()
              if line.startswith('python sample.py') and 'runs/clips_runlocal' in line]
  assert {c.split('--mode ')[1].split()[0] for c in commands} == {'translate', 'generate',
                                                                  'invert'}
  for command in commands:
    args = [workdir if a == 'runs/clips_runlocal' else
            str(tmp_path / a[len('out/'):]) if a.startswith('out/') else a
            for a in shlex.split(command)]
    if '--output' not in args:
      args += ['--output', str(tmp_path / 'generate')]
    result = subprocess.run([sys.executable] + args[1:], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, command + '\n' + result.stderr[-2000:]
  metrics = json.loads((tmp_path / 'clips' / 'temporal.json').read_text())
  assert metrics['names'] == ['clips_s0_input_clip000', 'clips_s0_input_clip001']  # 8 frames / 4.
  assert (tmp_path / 'clips' / 'grid.png').exists()
  assert Image.open(tmp_path / 'generate' / 'sample_003.gif').n_frames == 4
