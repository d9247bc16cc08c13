"""Real videos (phipd_jax.data.videos), their optical flow (optical_flow) and the
video_folder_clips builder, on small videos written here from known frames."""

import os
import re
import types

import imageio.v2 as imageio
import numpy as np
import pytest
import skimage.data
from PIL import Image

from phipd_jax.data import builders, clips, optical_flow, pipeline, videos

SIZE = 64
FRAMES = 16
MP4_MEAN_ERROR = 6.0  # Grey levels: H.264 (4:2:0 chroma) at quality 8 on 64-pixel frames.
GIF_MEAN_ERROR = 5.0  # Grey levels: each GIF frame is quantised to a 256-colour palette.


def _write_mp4(path, frames, **kwargs):
  imageio.mimwrite(path, frames, format='FFMPEG', fps=10, quality=8, **kwargs)
  return str(path)


def _write_gif(path, frames):
  imageio.mimwrite(path, frames, format='GIF', duration=100)
  return str(path)


def _write_folder(folder, frames, mode='RGB'):
  """One PNG a frame, ``frame_0.png ... frame_{N-1}.png`` (lexical order would misplace 10+)."""
  os.makedirs(folder, exist_ok=True)
  for index, frame in enumerate(frames):
    Image.fromarray(frame).convert(mode).save(os.path.join(folder, f'frame_{index}.png'))
  return str(folder)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope='module')
def pan():
  """A 16-frame 64-pixel pan over the astronaut, with its exact flow."""
  frames, affines = clips.synthetic_clip(skimage.data.astronaut(), np.random.default_rng(0),
                                         'pan', FRAMES, SIZE)
  return frames, clips.clip_flow(affines.astype(np.float64), SIZE)


@pytest.fixture(scope='module')
def written(pan, tmp_path_factory):
  """The pan as an mp4, a GIF and a PNG frame folder."""
  root = tmp_path_factory.mktemp('written')
  frames = pan[0]
  return {'mp4': _write_mp4(root / 'pan.mp4', frames), 'gif': _write_gif(root / 'pan.gif', frames),
          'folder': _write_folder(root / 'pan_frames', frames)}


def test_list_videos_finds_files_and_frame_folders_in_natural_order(tmp_path):
  for name in ('clip10.mp4', 'clip2.gif', 'notes.txt', '.hidden.mp4', 'sub/clip1.mkv',
               'sub/deeper/x.webm', 'frames_3/frame_10.png', 'frames_3/frame_2.png',
               'frames_3/frame_1.jpg', 'empty/README.md'):
    os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
    (tmp_path / name).write_bytes(b'')
  found = [os.path.relpath(path, tmp_path) for path in videos.list_videos(str(tmp_path))]
  assert found == ['clip2.gif', 'clip10.mp4', 'frames_3', 'sub/clip1.mkv', 'sub/deeper/x.webm']
  assert [os.path.basename(p) for p in videos.frame_files(str(tmp_path / 'frames_3'))] == [
      'frame_1.jpg', 'frame_2.png', 'frame_10.png']
  assert videos.list_videos(str(tmp_path / 'frames_3')) == [str(tmp_path / 'frames_3')]
  assert videos.list_videos(str(tmp_path / 'clip2.gif')) == [str(tmp_path / 'clip2.gif')]
  assert sorted(['f_10', 'f_9', 'f_1', 'F_2'], key=videos.natural_key) == [
      'f_1', 'F_2', 'f_9', 'f_10']
  with pytest.raises(FileNotFoundError, match='not found.*nowhere'):
    videos.list_videos(str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError, match='no videos.*empty'):
    videos.list_videos(str(tmp_path / 'empty'))
  with pytest.raises(ValueError, match=r'notes\.txt: not a video file'):
    videos.list_videos(str(tmp_path / 'notes.txt'))
  (tmp_path / 'sub' / 'stray.png').write_bytes(b'')
  with pytest.raises(ValueError, match=r'sub: holds both frame images .* and video files'):
    videos.list_videos(str(tmp_path))


def test_frame_folder_reads_back_exactly_in_frame_order_gray_and_rgba_to_rgb(pan, written,
                                                                             tmp_path):
  frames = pan[0]
  back = videos.read_frames(written['folder'])
  assert back.dtype == np.uint8 and back.shape == (FRAMES, SIZE, SIZE, 3)
  np.testing.assert_array_equal(back, frames)  # frame_10..15 after frame_9: natural order.
  np.testing.assert_array_equal(videos.read_frames(written['folder'], max_frames=5), frames[:5])
  gray = videos.read_frames(_write_folder(tmp_path / 'gray', frames[:3], 'L'))
  assert gray.shape == (3, SIZE, SIZE, 3)
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  expected = np.stack([np.asarray(Image.fromarray(f).convert('L')) for f in frames[:3]])
  np.testing.assert_array_equal(gray[..., 1], expected)
  rgba = videos.read_frames(_write_folder(tmp_path / 'rgba', frames[:3], 'RGBA'))
  np.testing.assert_array_equal(rgba, frames[:3])
  with pytest.raises(ValueError, match='max_frames=0'):
    videos.read_frames(written['folder'], max_frames=0)


def test_mp4_and_gif_decode_close_to_the_written_frames(pan, written):
  frames = pan[0].astype(np.float64)
  for kind, bound in (('mp4', MP4_MEAN_ERROR), ('gif', GIF_MEAN_ERROR)):
    back = videos.read_frames(written[kind])
    assert back.dtype == np.uint8 and back.shape == (FRAMES, SIZE, SIZE, 3), kind
    errors = np.abs(back - frames).mean(axis=(1, 2, 3))
    assert errors.max() < bound, (kind, errors)
    # In order: frame t is closer to written frame t than to its neighbours.
    assert np.abs(back[5] - frames[5]).mean() < np.abs(back[5] - frames[7]).mean(), kind
    first = videos.read_frames(written[kind], max_frames=3)
    np.testing.assert_array_equal(first, back[:3])


def test_clips_take_every_stride_th_frame_with_starts_step_apart():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (20, 6, 10, 3), dtype=np.uint8)
  for length, stride, step in ((4, 1, None), (4, 2, None), (3, 2, 1), (5, 1, 3), (1, 1, None)):
    result = videos.clips_from_frames(frames, length=length, stride=stride, step=step)
    step_ = length * stride if step is None else step
    count = (20 - ((length - 1) * stride + 1)) // step_ + 1
    assert result.shape == (count, length, 6, 6, 3), (length, stride, step)
    for k in range(count):
      for j in range(length):
        # size=None: centre crop to the short side (columns 2..7 of 10).
        np.testing.assert_array_equal(result[k, j], frames[k * step_ + j * stride][:, 2:8])
  assert videos.clips_from_frames(frames, length=4).shape == (5, 4, 6, 6, 3)  # No overlap.
  assert videos.clips_from_frames(frames, length=4, crop=None).shape == (5, 4, 6, 10, 3)
  resized = videos.clips_from_frames(frames, length=2, stride=3, size=4)
  assert resized.shape == (3, 2, 4, 4, 3)
  np.testing.assert_array_equal(
      resized[1, 1], pipeline.center_crop(pipeline.resize_short_side(frames[9], 4), 4))
  with pytest.raises(ValueError, match='6 frames, but a clip of length=4 with stride=2 needs 7'):
    videos.clips_from_frames(frames[:6], length=4, stride=2)
  for bad, pattern in (({'length': 0}, 'length=0'), ({'length': 2, 'stride': 0}, 'stride=0'),
                       ({'length': 2, 'step': -1}, 'step=-1'), ({'length': 2.0}, 'length=2.0'),
                       ({'length': 2, 'crop': 'random'}, "crop='random'")):
    with pytest.raises(ValueError, match=pattern):
      videos.clips_from_frames(frames, **bad)
  with pytest.raises(ValueError, match='uint8'):
    videos.clips_from_frames(frames.astype(np.float32), length=2)


def test_read_video_clips_equals_clips_of_all_frames(written):
  for kind in ('mp4', 'folder'):
    expected = videos.clips_from_frames(videos.read_frames(written[kind]), length=3, stride=2,
                                        step=3, size=32)
    streamed = videos.read_video_clips(written[kind], length=3, stride=2, step=3, size=32)
    assert streamed.shape == (4, 3, 32, 32, 3)  # Starts 0, 3, 6, 9; the last uses frame 13.
    np.testing.assert_array_equal(streamed, expected)


@pytest.fixture(scope='module')
def bad_folder(pan, written, tmp_path_factory):
  """A folder of one good mp4 and every kind of bad video; ``{name: path}``."""
  root = tmp_path_factory.mktemp('bad')
  frames = pan[0]
  paths = {'good': _write_mp4(root / 'good.mp4', frames)}
  content = open(written['mp4'], 'rb').read()
  (root / 'junk.mp4').write_bytes(np.random.default_rng(0).bytes(3000))
  (root / 'empty.avi').write_bytes(b'')
  (root / 'truncated.mp4').write_bytes(content[:len(content) // 2])  # Its index is at the end.
  paths.update({name: str(root / f'{name}.{ext}') for name, ext in
                (('junk', 'mp4'), ('empty', 'avi'), ('truncated', 'mp4'))})
  paths['short'] = _write_gif(root / 'short.gif', frames[:3])
  paths['mixed'] = _write_folder(root / 'mixed', frames[:4])
  Image.fromarray(frames[4, :32, :48]).save(root / 'mixed' / 'frame_4.png')
  paths['corrupt'] = _write_folder(root / 'corrupt', frames[:9])
  png = (root / 'corrupt' / 'frame_7.png').read_bytes()
  (root / 'corrupt' / 'frame_7.png').write_bytes(png[:len(png) // 3])
  (root / 'frameless').mkdir()
  return str(root), paths


BAD_REASONS = {
    'junk': r'junk\.mp4: unreadable video .*moov atom not found',
    'empty': r'empty\.avi: unreadable video \(empty file',
    'truncated': r'truncated\.mp4: unreadable video',
    'short': r'short\.gif: too short: 3 frames, but a clip of length=8 with stride=1 needs 8',
    'mixed': r'mixed/frame_4\.png: frame is 48x32 pixels but frame_0\.png is 64x64',
    'corrupt': r'corrupt/frame_7\.png: unreadable image',
}


def test_every_bad_video_is_named_and_read_clips_skips_it_with_the_reason(bad_folder):
  root, paths = bad_folder
  for name, pattern in BAD_REASONS.items():
    with pytest.raises(ValueError, match=pattern):
      videos.read_video_clips(paths[name], length=8)
    if name != 'short':
      with pytest.raises(ValueError, match=pattern):
        videos.read_frames(paths[name])
  with pytest.raises(ValueError, match='frameless: no frames'):
    videos.read_frames(os.path.join(root, 'frameless'))
  with pytest.raises(FileNotFoundError, match='missing.mp4'):
    videos.read_frames(os.path.join(root, 'missing.mp4'))
  found, skipped = videos.read_clips(root, length=8, size=32)
  assert list(found) == [paths['good']] and found[paths['good']].shape == (2, 8, 32, 32, 3)
  reasons = dict(skipped)
  assert sorted(reasons) == sorted(paths[name] for name in BAD_REASONS)
  for name, pattern in BAD_REASONS.items():
    assert re.search(pattern, reasons[paths[name]]), (name, reasons[paths[name]])
  with pytest.raises(ValueError, match=r'no usable video in .*short\.gif: too short'):
    videos.read_clips(paths['short'], length=8)
  with pytest.raises(ValueError, match='length=0'):  # Before any video is read.
    videos.read_clips(root, length=0)


def test_the_cheap_check_names_what_it_can_see_and_fails_only_when_nothing_is_usable(
    bad_folder, capsys):
  _, paths = bad_folder
  skipped = builders.check_videos(list(paths.values()))
  # The first frame of the short GIF decodes: too short is found when the builder reads it.
  assert len(skipped) == len(BAD_REASONS) - 1
  builders.check_images(list(paths.values()))  # The generic check: prints, does not raise.
  assert f'{len(skipped)} of {len(paths)} videos will be skipped' in capsys.readouterr().err
  with pytest.raises(ValueError, match=r'no usable video: .*junk\.mp4.*empty\.avi'):
    builders.check_videos([paths['junk'], paths['empty']])


def _endpoint_error(estimate, truth, margin=8):
  inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
  error = np.linalg.norm(estimate[inner] - truth[inner], axis=-1).mean()
  return float(error), float(np.linalg.norm(truth[inner], axis=-1).mean())


@pytest.mark.parametrize('motion', ['pan', 'zoom'])
def test_estimated_flow_follows_the_exact_flow_of_a_camera_motion(motion):
  photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((160, 160), Image.LANCZOS))
  affines = clips.camera_motion(np.random.default_rng(3), motion, 6, SIZE, photo.shape)
  frames = clips.render_clip(photo, affines, SIZE)
  truth = clips.clip_flow(affines, SIZE)
  flow = optical_flow.estimate_flow(frames)
  assert flow.dtype == np.float32 and flow.shape == (5, SIZE, SIZE, 2)
  error, magnitude = _endpoint_error(flow, truth)
  assert magnitude > 0.3 and error < 0.3 * magnitude, (motion, error, magnitude)
  # The sign convention: the mean estimated flow points the way the scene moves.
  assert float(np.sum(flow.mean(axis=(0, 1, 2)) * truth.mean(axis=(0, 1, 2)))) > 0


def test_flow_of_a_still_clip_is_zero_and_batches_match_single_clips(pan):
  still = np.repeat(pan[0][:1], 4, axis=0)
  assert np.abs(optical_flow.estimate_flow(still)).max() < 1e-3
  batch = np.stack([pan[0][:4], still])
  flows = optical_flow.estimate_flows(batch)
  assert flows.shape == (2, 3, SIZE, SIZE, 2) and flows.dtype == np.float32
  np.testing.assert_array_equal(flows[0], optical_flow.estimate_flow(pan[0][:4]))
  np.testing.assert_array_equal(flows[0], optical_flow.estimate_flow(pan[0][:4]))  # Repeatable.
  with pytest.raises(ValueError, match='at least 2 frames'):
    optical_flow.estimate_flow(still[:1])
  with pytest.raises(ValueError, match='uint8'):
    optical_flow.estimate_flow(still.astype(np.float32))
  with pytest.raises(ValueError, match=r'\[B, T, H, W, 3\]'):
    optical_flow.estimate_flows(still)


def test_builder_writes_the_clips_and_flow_of_each_video_and_reports_skipped_ones(
    pan, tmp_path, capsys):
  frames = pan[0]
  source = tmp_path / 'videos'
  source.mkdir()
  _write_mp4(source / 'a.mp4', frames)  # 2 clips; sorted first: the test split.
  _write_gif(source / 'b.gif', frames[:10])  # 1 clip (2 frames left over).
  tall = np.stack([np.asarray(Image.fromarray(f).resize((80, 96))) for f in frames[:8]])
  _write_folder(source / 'c_frames', tall)  # 1 clip, resized and centre-cropped.
  (source / 'd.mp4').write_bytes(b'not a video')
  data = types.SimpleNamespace(name='video_folder_clips', dir=str(source),
                               tfds_dir=str(tmp_path / 'tfds'), train_split='train',
                               eval_split='test')
  line = pipeline.check_source(data)
  assert 'video_folder_clips: 4 ' in line and '(3 train, 1 test)' in line, line
  assert 'to be prepared' in line and not os.path.exists(data.tfds_dir)
  assert '1 of 4 videos will be skipped' in capsys.readouterr().err
  builder = builders.prepared_builder('video_folder_clips', data.tfds_dir, str(source))
  err = capsys.readouterr().err
  assert "skipped 1 of 3 videos of split 'train'" in err and 'd.mp4: unreadable video' in err
  records = {split: {_text(r['id']): r for r in builder.as_data_source(split)}
             for split in ('train', 'test')}
  assert sorted(records['test']) == ['a/0', 'a/1']
  assert sorted(records['train']) == ['b/0', 'c_frames/0']
  expected, skipped = videos.read_clips(str(source), length=8, size=SIZE)
  assert [os.path.basename(path) for path, _ in skipped] == ['d.mp4']
  by_name = {name: path for path, name in builders.video_names(list(expected), str(source)).items()}
  for split, by_id in records.items():
    for key, record in by_id.items():
      name, index = key.split('/')
      path = by_name[name]
      np.testing.assert_array_equal(record['frames'], expected[path][int(index)])
      assert record['flow'].dtype == np.float32 and record['flow'].shape == (7, SIZE, SIZE, 2)
      np.testing.assert_array_equal(record['flow'], optical_flow.estimate_flow(record['frames']))
  assert 'up to date' in pipeline.check_source(data)


def test_video_names_drop_the_extension_unless_names_would_clash(tmp_path):
  paths = [str(tmp_path / name) for name in ('a.mp4', 'a.gif', 'b.mkv', 'sub/c.webm')]
  (tmp_path / 'a').mkdir()
  paths.append(str(tmp_path / 'a'))
  assert builders.video_names(paths, str(tmp_path)) == {
      paths[0]: 'a.mp4', paths[1]: 'a.gif', paths[2]: 'b', paths[3]: 'sub/c', paths[4]: 'a'}
  assert builders.video_names([str(tmp_path / 'a')], str(tmp_path / 'a')) == {
      str(tmp_path / 'a'): 'a'}


def test_one_video_alternates_its_clips_between_the_splits(pan, tmp_path):
  source = tmp_path / 'one'
  _write_folder(source, np.concatenate([pan[0], pan[0][:8]]))  # A frame folder: 24 frames.
  assert builders.source_splits('video_folder_clips', str(source)) == {
      'train': [str(source)], 'test': [str(source)]}
  builder = builders.prepared_builder('video_folder_clips', str(tmp_path / 'tfds'), str(source))
  ids = {split: sorted(_text(r['id']) for r in builder.as_data_source(split))
         for split in ('train', 'test')}
  assert ids == {'train': ['one/0', 'one/2'], 'test': ['one/1']}
