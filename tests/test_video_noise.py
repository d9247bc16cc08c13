"""Video noise (phipd_jax.video_noise): transport along a known flow, Gaussianity per frame, the
four structured options against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from phipd_jax import noise as noise_lib
from phipd_jax import video_noise


def _constant_flow(batch, frames, height, width, dx, dy):
  flow = np.zeros((batch, frames - 1, height, width, 2), np.float32)
  flow[..., 0], flow[..., 1] = dx, dy
  return jnp.asarray(flow)


def _zoom_flow(batch, frames, size, factor):
  """Zoom about the centre: pixel p of frame t is at c + factor (p - c) in frame t + 1 (factor
  < 1: several pixels land on one; > 1: holes)."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  centre = (size - 1) / 2
  flow = np.stack([(factor - 1) * (cols - centre), (factor - 1) * (rows - centre)], -1)
  return jnp.asarray(np.broadcast_to(flow, (batch, frames - 1, size, size, 2)).astype(np.float32))


def test_zero_flow_carries_every_value_and_a_shift_moves_them_with_fresh_noise_behind():
  key = jax.random.key(0)
  fresh = jax.random.normal(key, (2, 3, 8, 8, 3))
  still = video_noise.flow_warped_from_noise(fresh, _constant_flow(2, 3, 8, 8, 0.0, 0.0))
  for t in range(3):
    np.testing.assert_array_equal(still[:, t], fresh[:, 0])
  moved = video_noise.flow_warped_from_noise(fresh, _constant_flow(2, 3, 8, 8, 2.0, -1.0))
  # Frame 1: content two pixels right and one up; the uncovered left columns and bottom row are
  # frame 1's fresh draw, the rest frame 0 moved; values that left the frame are gone.
  np.testing.assert_array_equal(moved[:, 1, :7, 2:], fresh[:, 0, 1:, :6])
  np.testing.assert_array_equal(moved[:, 1, :, :2], fresh[:, 1, :, :2])
  np.testing.assert_array_equal(moved[:, 1, 7, :], fresh[:, 1, 7, :])
  np.testing.assert_array_equal(moved[:, 2, :6, 4:], fresh[:, 0, 2:, :4])


def test_colliding_values_are_summed_and_divided_by_the_square_root_of_their_count():
  noise = jnp.arange(1.0, 5.0).reshape(1, 1, 4, 1)  # One row of four pixels.
  fresh = jnp.full((1, 1, 4, 1), -7.0)
  flow = jnp.zeros((1, 1, 4, 2)).at[0, 0, 1, 0].set(-1.0).at[0, 0, 2, 0].set(-2.0)
  # Pixels 0, 1, 2 land on pixel 0; pixel 3 stays; pixels 1 and 2 are holes.
  out = video_noise.warp_frame(noise, fresh, flow)
  np.testing.assert_allclose(out[0, 0, :, 0], [(1 + 2 + 3) / np.sqrt(3), -7.0, -7.0, 4.0],
                             rtol=1e-6)


@pytest.mark.parametrize('factor', [0.7, 1.3])
def test_flow_warped_noise_is_unit_variance_gaussian_and_white_in_every_frame(factor):
  """A zoom out (collisions) and in (holes), 4 frames, 4000 clips: every frame's values are
  N(0, 1) (KS), each pixel has mean 0 and variance 1, and neighbours are uncorrelated."""
  clips, frames, size = 4000, 4, 12
  fresh = jax.random.normal(jax.random.key(1), (clips, frames, size, size, 1))
  warped = np.asarray(jax.jit(video_noise.flow_warped_from_noise)(
      fresh, _zoom_flow(clips, frames, size, factor)))[..., 0]
  for t in range(frames):
    frame = warped[:, t]
    assert stats.kstest(frame[:, ::3, ::3].reshape(-1)[:20000], 'norm').pvalue > 1e-3
    np.testing.assert_allclose(frame.mean(0), 0.0, atol=5 * 1 / np.sqrt(clips))
    np.testing.assert_allclose(frame.var(0), 1.0, atol=6 * np.sqrt(2 / clips))
    neighbours = np.mean(frame[:, :, 1:] * frame[:, :, :-1], axis=0)
    assert np.max(np.abs(neighbours)) < 6 / np.sqrt(clips), t
  # And it is temporally correlated where values move alone (what per-frame noise is not).
  assert np.mean(warped[:, 1] * warped[:, 0]) > 0.05


# Jitted once per option (eager dispatch of the FFT chain dominated these tests' time).
_video_fss = jax.jit(video_noise.video_fss, static_argnames=('radius', 'option'))


def test_each_option_is_its_definition():
  key = jax.random.key(3)
  x0 = jax.random.uniform(jax.random.key(4), (2, 4, 16, 16, 3), minval=-1, maxval=1)
  base = jax.random.normal(key, x0.shape)
  per_frame = _video_fss(key, x0, 4.0, 'per_frame')
  np.testing.assert_allclose(per_frame, noise_lib.fss_from_noise(x0, base, 4.0), atol=1e-6)
  spatiotemporal = _video_fss(key, x0, 4.0, 'spatiotemporal')
  np.testing.assert_allclose(
      spatiotemporal, noise_lib.fss_from_noise(x0, base, 4.0, axes=(-4, -3, -2)), atol=1e-6)
  # Shared magnitude: one Fourier magnitude for every frame, and still the input's phase inside
  # the cutoff of each frame.
  shared = _video_fss(key, x0, 4.0, 'shared_magnitude')
  # (The four self-conjugate bins keep only the real part of a partly masked phase: excluded.)
  magnitude = np.abs(np.fft.fft2(np.asarray(shared), axes=(2, 3)))
  general = np.ones((16, 16), bool)
  general[np.ix_([0, 8], [0, 8])] = False
  for t in range(1, 4):
    np.testing.assert_allclose(magnitude[:, t][:, general], magnitude[:, 0][:, general],
                               rtol=1e-3, atol=1e-3)
  independent = np.abs(np.fft.fft2(np.asarray(per_frame), axes=(2, 3)))
  assert not np.allclose(independent[:, 1], independent[:, 0], rtol=0.1)
  phase_x0 = np.angle(np.fft.fft2(np.asarray(x0), axes=(2, 3)))
  phase_eps = np.angle(np.fft.fft2(np.asarray(shared), axes=(2, 3)))
  diff = np.angle(np.exp(1j * (phase_eps[:, :, 0, 1] - phase_x0[:, :, 0, 1])))
  np.testing.assert_allclose(diff, 0.0, atol=1e-3)  # Bin (0, 1), radius 1 << 4.
  # Flow-warped: FSS of the warped sample; at radius -inf the warped Gaussian itself.
  flow = _constant_flow(2, 4, 16, 16, 1.0, 0.0)
  warped = video_noise.flow_warped_from_noise(base, flow)
  np.testing.assert_allclose(_video_fss(key, x0, 4.0, 'flow_warped', flow=flow),
                             noise_lib.fss_from_noise(x0, warped, 4.0), atol=1e-6)
  np.testing.assert_array_equal(
      _video_fss(key, x0, -jnp.inf, 'flow_warped', flow=flow), warped)


def test_flow_warping_lowers_the_noise_warping_error_of_a_moving_clip():
  """A clip that pans one pixel per frame: the flow-warped structured noise, moved back along
  the flow, matches the previous frame's far better than per-frame noise does."""
  frame = jax.random.uniform(jax.random.key(5), (1, 20, 20, 3), minval=-1, maxval=1)
  x0 = jnp.stack([jnp.roll(frame, t, axis=2) for t in range(4)], axis=1)
  flow = _constant_flow(1, 4, 20, 20, 1.0, 0.0)

  def warping_error(eps):
    eps = np.asarray(eps)
    return float(np.mean((eps[:, 1:, :, 1:-1] - eps[:, :-1, :, :-2]) ** 2))

  key = jax.random.key(6)
  per_frame = warping_error(video_noise.video_fss(key, x0, 3.0, 'per_frame'))
  warped = warping_error(video_noise.video_fss(key, x0, 3.0, 'flow_warped', flow=flow))
  assert per_frame > 1.0 and warped < 0.5 * per_frame, (per_frame, warped)


def test_jit_vmap_and_clear_errors():
  key = jax.random.key(7)
  x0 = jnp.zeros((2, 3, 8, 8, 3))
  flow = _constant_flow(2, 3, 8, 8, 0.5, 0.5)
  eager = video_noise.video_fss(key, x0, 2.0, 'flow_warped', flow=flow)
  jitted = jax.jit(lambda k, x, f: video_noise.video_fss(k, x, 2.0, 'flow_warped', flow=f))
  np.testing.assert_allclose(jitted(key, x0, flow), eager, atol=1e-6)
  keys = jax.random.split(key, 2)
  mapped = jax.vmap(lambda k, x, f: video_noise.video_fss(k, x[None], 2.0, 'flow_warped',
                                                          flow=f[None])[0])(keys, x0, flow)
  assert mapped.shape == x0.shape
  with pytest.raises(ValueError, match="option='optical'"):
    video_noise.video_fss(key, x0, 2.0, 'optical')
  with pytest.raises(ValueError, match=r'\[B, T, H, W, C\]'):
    video_noise.video_fss(key, x0[:, 0], 2.0)
  with pytest.raises(ValueError, match='flow is needed'):
    video_noise.video_fss(key, x0, 2.0, 'flow_warped')
  with pytest.raises(ValueError, match='flow is needed'):
    video_noise.video_fss(key, x0, 2.0, 'per_frame', flow=flow)
  with pytest.raises(ValueError, match=r'\[B, T - 1, H, W, 2\]'):
    video_noise.video_fss(key, x0, 2.0, 'flow_warped', flow=flow[:, :1])


def test_the_clip_noise_factory_is_each_option_with_the_run_settings():
  """video_noise_fn: per_frame is the image factory on 5-D arrays; the other options are
  video_fss at the drawn (or given) radius, scaled; Gaussian kind is the base (warped) noise."""
  key = jax.random.key(8)
  x0 = jax.random.uniform(jax.random.key(9), (2, 3, 8, 8, 3), minval=-1, maxval=1)
  flow = _constant_flow(2, 3, 8, 8, 1.0, 0.0)
  settings = dict(r0=1.0, rate=0.5, edge_width=2.0, scale=1.0)
  image_fn = noise_lib.noise_fn('fss', **settings)
  per_frame = video_noise.video_noise_fn('fss', 'per_frame', **settings)
  np.testing.assert_array_equal(per_frame(key, x0, flow=flow), image_fn(key, x0))
  radius = noise_lib.sample_radius(jax.random.fold_in(key, 2), (2,), 1.0, 0.5)
  for option in ('shared_magnitude', 'spatiotemporal', 'flow_warped'):
    fn = video_noise.video_noise_fn('fss', option, **settings)
    given = {'flow': flow} if option == 'flow_warped' else {}
    np.testing.assert_allclose(fn(key, x0, flow=flow),
                               video_noise.video_fss(key, x0, radius, option, **given), atol=1e-6)
  scaled = video_noise.video_noise_fn('fss', 'flow_warped', **dict(settings, scale=2.0))
  np.testing.assert_allclose(scaled(key, x0, 3.0, flow=flow),
                             2 * video_noise.video_fss(key, x0, 3.0, 'flow_warped', flow=flow),
                             atol=1e-5)
  gaussian = video_noise.video_noise_fn('gaussian', 'flow_warped')
  base = noise_lib.standard_normal(key, x0.shape)
  np.testing.assert_array_equal(gaussian(key, x0, flow=flow),
                                video_noise.flow_warped_from_noise(base, flow))
  np.testing.assert_array_equal(gaussian(key, x0), base)  # Generation: no clip, no flow.
  with pytest.raises(ValueError, match="needs the clip's flow"):
    video_noise.video_noise_fn('fss', 'flow_warped')(key, x0)
  with pytest.raises(ValueError, match="mode='paper'"):
    video_noise.video_noise_fn('fss', 'spatiotemporal', mode='reference')
  with pytest.raises(ValueError, match="video='optical'"):
    video_noise.video_noise_fn('fss', 'optical')
