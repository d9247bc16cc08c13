"""Orthonormal DCT and the Spectral Forcing operator (spec spectral_forcing_and_jit.md Sec. 9)."""

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from phipd_jax import spectral


@pytest.mark.parametrize('size', [1, 7, 16, 64])
def test_dct_matrix_is_orthonormal_and_equals_scipy(size):
  d = np.asarray(spectral.dct_matrix(size), np.float64)
  np.testing.assert_allclose(d @ d.T, np.eye(size), atol=1e-5)
  x = np.random.default_rng(size).normal(size=(size, 3))
  np.testing.assert_allclose(d @ x, scipy.fft.dct(x, type=2, norm='ortho', axis=0), atol=1e-5)


def dct2_oracle(x):
  """Orthonormal 2-D DCT-II of ``[B, H, W, C]`` over ``H, W`` from :func:`spectral.dct_matrix`
  (as :func:`spectral.spectral_forcing` applies it)."""
  d_h, d_w = spectral.dct_matrix(x.shape[1]), spectral.dct_matrix(x.shape[2])
  return jnp.einsum('uh,bhwc,vw->buvc', d_h, x.astype(jnp.float32), d_w)


def idct2_oracle(coefficients):
  """Its inverse (DCT-III): the transposed matrices."""
  d_h, d_w = spectral.dct_matrix(coefficients.shape[1]), spectral.dct_matrix(coefficients.shape[2])
  return jnp.einsum('uh,buvc,vw->bhwc', d_h, coefficients.astype(jnp.float32), d_w)


def test_dct2_round_trip_and_equals_scipy_dctn_on_non_square_images():
  x = np.random.default_rng(0).normal(size=(2, 12, 20, 3)).astype(np.float32)
  coefficients = dct2_oracle(jnp.asarray(x))
  np.testing.assert_allclose(coefficients, scipy.fft.dctn(x, type=2, norm='ortho', axes=(1, 2)),
                             atol=1e-5)
  np.testing.assert_allclose(idct2_oracle(coefficients), x, atol=1e-5)


@pytest.mark.parametrize('height, width', [(1, 1), (1, 6), (7, 8), (16, 16), (31, 64)])
def test_frequency_grids_equal_their_fftfreq_definitions(height, width):
  """Integer indices, rounded and released-OVG (floor, shifted-grid) radius bins, and the float32
  distance in the full and rfft half layouts, each against the formula it documents."""
  for n in (height, width):
    np.testing.assert_array_equal(spectral.frequency_indices(n),
                                  np.rint(np.fft.fftfreq(n) * n).astype(np.int64))
  ky, kx = np.fft.fftfreq(height) * height, np.fft.fftfreq(width) * width
  distance = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
  bins = spectral.radius_bins(height, width)
  assert bins.dtype == np.int32
  np.testing.assert_array_equal(bins, np.rint(distance))
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  np.testing.assert_array_equal(
      spectral.released_ovg_radius_bins(height, width),
      np.sqrt((cols - width // 2) ** 2 + (rows - height // 2) ** 2).astype(np.int64))
  full = spectral.frequency_distance((2, height, width, 3), (1, 2))
  half = spectral.frequency_distance((2, height, width, 3), (1, 2), half=True)
  assert full.shape == (1, height, width, 1) and full.dtype == jnp.float32
  np.testing.assert_allclose(full[0, ..., 0], distance, rtol=1e-6)
  np.testing.assert_allclose(half[0, ..., 0], distance[:, :width // 2 + 1], rtol=1e-6)


def test_released_mask_values_at_the_ends():
  # Spec Sec. 7: DC at t_data = 0 is sigmoid(30 * 0.05) = 0.8176; the far corner at t_data = 1
  # is exactly sigmoid(0) = 0.5 (the released operator is not the identity at the data end).
  mask = np.asarray(spectral.forcing_mask(jnp.array([0.0, 1.0]), 256, 256))
  assert mask[0, 0, 0] == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-6)
  assert mask[0, 0, 0] == pytest.approx(0.8176, abs=1e-4)
  assert mask[1, 255, 255] == pytest.approx(0.5, abs=1e-6)
  # The spec's table at t_data = 1: mean mask 0.996, 5.1% of coefficients below 0.99.
  assert mask[1].mean() == pytest.approx(0.996, abs=5e-4)
  assert (mask[1] < 0.99).mean() == pytest.approx(0.051, abs=2e-3)
  # And at the median training time t_data = 0.31: mean 0.193 (spec table row for c = 0.345).
  assert float(spectral.forcing_mask(0.31, 256, 256).mean()) == pytest.approx(0.193, abs=2e-3)


@pytest.mark.parametrize('schedule', spectral.SCHEDULES)
def test_mask_is_non_decreasing_in_time_at_every_coefficient(schedule):
  times = jnp.linspace(0.0, 1.0, 41)
  mask = np.asarray(spectral.forcing_mask(times, 32, 24, schedule=schedule))
  assert np.all(np.diff(mask, axis=0) >= -1e-7)
  assert np.all((mask > 0) & (mask <= 1))
  # The cutoff opens up: strictly more energy passes at the data end than at the noise end.
  assert mask[-1].sum() > mask[0].sum() + 0.5 * mask[0].size


def test_identity_where_the_mask_is_one():
  z = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  # Power-law contour: cutoff = inf at t_data = 1, an exact identity (up to float32 DCT error).
  out = spectral.spectral_forcing(z, jnp.ones((2,)), schedule='power_law')
  np.testing.assert_allclose(out, z, atol=1e-5)
  # Any schedule with a cutoff far beyond the corner: M = 1 everywhere.
  out = spectral.spectral_forcing(z, jnp.zeros((2,)), c_min=5.0, c_max=5.0)
  np.testing.assert_allclose(out, z, atol=1e-5)
  # The released linear schedule at t_data = 1 is close to, not exactly, the identity: only the
  # highest radii are attenuated (documented tolerance: relative error below 5% on white noise,
  # below 1e-3 on a smooth image whose energy sits at low frequencies).
  out = spectral.spectral_forcing(z, jnp.ones((2,)))
  relative = float(jnp.linalg.norm(out - z) / jnp.linalg.norm(z))
  assert 1e-3 < relative < 0.05, relative
  grid = jnp.linspace(-1, 1, 32)
  smooth = jnp.broadcast_to(jnp.sin(2 * grid)[:, None, None] * jnp.cos(grid)[None, :, None],
                            (1, 32, 32, 3))
  out = spectral.spectral_forcing(smooth, jnp.ones((1,)))
  assert float(jnp.linalg.norm(out - smooth) / jnp.linalg.norm(smooth)) < 1e-3


def test_operator_is_linear_per_channel_and_never_adds_energy():
  keys = jax.random.split(jax.random.key(1), 2)
  a = jax.random.normal(keys[0], (3, 16, 16, 3))
  b = jax.random.normal(keys[1], (3, 16, 16, 3))
  t = jnp.array([0.0, 0.4, 0.9])
  sf = lambda z: spectral.spectral_forcing(z, t)
  np.testing.assert_allclose(sf(2.0 * a - 0.5 * b), 2.0 * sf(a) - 0.5 * sf(b), atol=1e-5)
  # Per channel: channel 1 of the output depends only on channel 1 of the input.
  changed = a.at[..., 0].set(0.0).at[..., 2].set(5.0)
  np.testing.assert_allclose(sf(changed)[..., 1], sf(a)[..., 1], atol=1e-6)
  energy_in = jnp.sum(a**2, axis=(1, 2, 3))
  energy_out = jnp.sum(sf(a)**2, axis=(1, 2, 3))
  assert np.all(np.asarray(energy_out) <= np.asarray(energy_in) + 1e-4)
  assert float(energy_out[0]) < 0.1 * float(energy_in[0])  # Noise end: a strong low-pass.
  # Each sample uses its own t: the batch is the vmap of single images.
  single = jnp.concatenate([spectral.spectral_forcing(a[i:i + 1], t[i]) for i in range(3)])
  np.testing.assert_allclose(sf(a), single, atol=1e-6)


def test_window_equal_to_the_image_is_the_full_image_operator_and_tiles_are_independent():
  z = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))
  t = jnp.array([0.2, 0.7])
  np.testing.assert_allclose(spectral.spectral_forcing(z, t, window=16),
                             spectral.spectral_forcing(z, t), atol=1e-6)
  tiled = spectral.spectral_forcing(z, t, window=8)
  top_left = spectral.spectral_forcing(z[:, :8, :8], t)
  np.testing.assert_allclose(tiled[:, :8, :8], top_left, atol=1e-5)
  with pytest.raises(ValueError, match='window=6'):
    spectral.spectral_forcing(z, t, window=6)


def test_jit_equals_no_jit_and_bad_arguments_fail_early():
  z = jax.random.normal(jax.random.key(3), (2, 16, 24, 3))
  t = jnp.array([0.1, 0.8])
  for schedule in spectral.SCHEDULES:
    eager = spectral.spectral_forcing(z, t, schedule=schedule)
    jitted = jax.jit(lambda z, t: spectral.spectral_forcing(z, t, schedule=schedule))(z, t)
    np.testing.assert_allclose(eager, jitted, atol=1e-6)
  with pytest.raises(ValueError, match='schedule'):
    spectral.spectral_forcing(z, t, schedule='cosine')
  with pytest.raises(ValueError, match='c_min'):
    spectral.spectral_forcing(z, t, c_min=0.0)
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    spectral.spectral_forcing(z[0], t)



# Haar wavelets and the LWD energy map (Latent Wavelet Diffusion, arXiv:2506.00433, Sec. 3.2).
# Jitted once per shape: far cheaper on CPU than op-by-op eager compilation.
_haar = jax.jit(spectral.haar_dwt2)
_energy = jax.jit(spectral.wavelet_energy_map)
_upsample = jax.jit(spectral.upsample_bilinear_half_pixel, static_argnums=(1, 2))


def _numpy_half_pixel_bilinear(e, height, width):
  """Per-pixel loop reference of PyTorch ``interpolate(bilinear, align_corners=False)``."""
  batch, in_h, in_w = e.shape
  out = np.zeros((batch, height, width), np.float64)

  def taps(o, in_size, out_size):
    s = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
    i0 = min(int(math.floor(s)), in_size - 1)
    return i0, min(i0 + 1, in_size - 1), s - i0

  for y in range(height):
    y0, y1, ly = taps(y, in_h, height)
    for x in range(width):
      x0, x1, lx = taps(x, in_w, width)
      out[:, y, x] = ((1 - ly) * ((1 - lx) * e[:, y0, x0] + lx * e[:, y0, x1])
                      + ly * ((1 - lx) * e[:, y1, x0] + lx * e[:, y1, x1]))
  return out


def test_haar_bands_equal_pywavelets_with_the_same_names_and_signs():
  pywt = pytest.importorskip('pywt')
  for shape in [(2, 6, 10, 3), (1, 7, 9, 2)]:
    x = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    bands = _haar(x)
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x.astype(np.float64), 'haar', mode='zero', axes=(1, 2))
    half = (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])
    for band, reference in zip(bands, (c_a, c_h, c_v, c_d)):  # LL, LH (horiz.), HL (vert.), HH.
      assert band.shape == half and band.dtype == jnp.float32
      np.testing.assert_allclose(band, reference, atol=1e-5)


def test_haar_taps_are_orthonormal_with_the_documented_signs():
  # One block [[a, b], [c, d]] = [[1, 2], [3, 5]].
  x = np.array([[1.0, 2.0], [3.0, 5.0]], np.float32).reshape(1, 2, 2, 1)
  ll, lh, hl, hh = (float(band.squeeze()) for band in _haar(x))
  assert (ll, lh, hl, hh) == (5.5, -2.5, -1.5, 0.5)  # (a+b+c+d)/2, (a+b-c-d)/2, ...
  z = np.random.default_rng(0).normal(size=(2, 6, 10, 3)).astype(np.float32)
  energy = sum(np.sum(np.square(band, dtype=np.float64)) for band in _haar(z))
  assert energy == pytest.approx(np.sum(np.square(z, dtype=np.float64)), rel=1e-5)


def test_haar_of_a_constant_image_and_zero_padding_of_odd_sizes():
  ll, lh, hl, hh = _haar(np.full((2, 6, 10, 3), 1.5, np.float32))
  np.testing.assert_allclose(ll, 3.0, atol=1e-6)  # 2x the value.
  for band in (lh, hl, hh):
    np.testing.assert_allclose(band, 0.0, atol=1e-6)
  # Odd sizes: a zero row/column is appended at the bottom/right (mode 'zero').
  z = np.random.default_rng(1).normal(size=(1, 7, 9, 2)).astype(np.float32)
  padded = np.pad(z, ((0, 0), (0, 1), (0, 1), (0, 0)))
  for band, reference in zip(_haar(z), _haar(padded)):
    assert band.shape == (1, 4, 5, 2)
    np.testing.assert_allclose(band, reference, atol=1e-6)
  ll, _, _, hh = _haar(np.ones((1, 7, 9, 2), np.float32))
  np.testing.assert_allclose(ll[0, ::3, ::4, 0], [[2.0, 1.0], [1.0, 0.5]], atol=1e-6)
  np.testing.assert_allclose(hh[0, ::3, ::4, 0], [[0.0, 0.0], [0.0, 0.5]], atol=1e-6)


def test_half_pixel_bilinear_upsampling_equals_the_numpy_reference():
  for in_h, in_w, height, width in [(4, 5, 8, 10), (4, 5, 7, 9), (3, 5, 3, 5)]:
    e = np.random.default_rng(in_h * height).normal(size=(2, in_h, in_w)).astype(np.float32)
    out = _upsample(e, height, width)
    assert out.shape == (2, height, width) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, _numpy_half_pixel_bilinear(e, height, width), atol=1e-6)
    if height == 2 * in_h and width == 2 * in_w:  # jax.image.resize agrees for 2x upsampling.
      resized = jax.jit(jax.image.resize, static_argnums=(1, 2))(e, out.shape, 'bilinear')
      np.testing.assert_allclose(out, resized, atol=1e-6)
  # torch interpolate([0, 1], size=4 / 3, bilinear, align_corners=False).
  row = np.array([[[0.0, 1.0]]], np.float32)
  np.testing.assert_allclose(_upsample(row, 1, 4)[0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)
  np.testing.assert_allclose(_upsample(row, 1, 3)[0, 0], [0.0, 0.5, 1.0], atol=1e-7)


def test_wavelet_energy_map_equals_a_pywavelets_numpy_reference():
  pywt = pytest.importorskip('pywt')
  z = np.random.default_rng(3).normal(size=(2, 7, 9, 2)).astype(np.float32)
  z[:, 2:5, 3:8] *= 4.0
  _, (c_h, c_v, c_d) = pywt.dwt2(z.astype(np.float64), 'haar', mode='zero', axes=(1, 2))
  energy = _numpy_half_pixel_bilinear((c_h ** 2 + c_v ** 2 + c_d ** 2).mean(-1), 7, 9)
  low = energy.min(axis=(1, 2), keepdims=True)
  reference = (energy - low) / (energy.max(axis=(1, 2), keepdims=True) - low + 1e-8)
  np.testing.assert_allclose(_energy(z), reference, atol=1e-5)


def test_released_channels_energy_map_equals_the_released_indexing():
  """channels='released' is what the released compute_wavelet_attention computes: it indexes
  pytorch_wavelets' [B, C, 3, h, w] detail tensor on axis 1 (channels) as if it were the bands,
  then averages the three "bands" -> channels 0-2 only (a numpy replica of that indexing on
  PyWavelets' bands). On 4-channel noisy latents the masks then differ from the paper's
  all-channel rule on a sizeable share of positions."""
  pywt = pytest.importorskip('pywt')
  z = np.random.default_rng(4).normal(size=(2, 8, 10, 4)).astype(np.float32)
  z[:, 2:5, 3:8, 3] *= 6.0  # Detail energy in channel 3 only: invisible to the released map.
  _, (c_h, c_v, c_d) = pywt.dwt2(z.astype(np.float64), 'haar', mode='zero', axes=(1, 2))
  yh = np.stack([c_h, c_v, c_d], axis=1).transpose(0, 4, 1, 2, 3)  # [B, C, 3, h, w] as torch.
  lh, hl, hh = yh[:, 0], yh[:, 1], yh[:, 2]  # The slip: channels 0, 1, 2 read as the bands.
  energy = _numpy_half_pixel_bilinear((lh ** 2 + hl ** 2 + hh ** 2).mean(1), 8, 10)
  low = energy.min(axis=(1, 2), keepdims=True)
  reference = (energy - low) / (energy.max(axis=(1, 2), keepdims=True) - low + 1e-8)
  released = np.asarray(spectral.wavelet_energy_map(jnp.asarray(z), 'released'))
  np.testing.assert_allclose(released, reference, atol=1e-5)
  paper = np.asarray(spectral.wavelet_energy_map(jnp.asarray(z)))
  assert np.abs(paper - released).max() > 0.3  # Channel 3's energy counts only in the paper's.
  with pytest.raises(ValueError, match="channels='some' must be 'all' or 'released'"):
    spectral.wavelet_energy_map(jnp.asarray(z), 'some')


def test_wavelet_energy_map_range_constant_input_and_scale_invariance():
  np.testing.assert_array_equal(_energy(np.full((2, 6, 10, 3), 3.0, np.float32)), 0.0)
  z = np.random.default_rng(4).normal(size=(2, 6, 10, 3)).astype(np.float32)
  a = _energy(z)
  assert a.shape == (2, 6, 10) and a.dtype == jnp.float32
  np.testing.assert_allclose(a.min(axis=(1, 2)), 0.0, atol=1e-7)
  np.testing.assert_allclose(a.max(axis=(1, 2)), 1.0, atol=1e-6)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  for k in (0.1, 2.0, 50.0):
    np.testing.assert_allclose(_energy(np.float32(k) * z), a, atol=1e-5)
  # bfloat16 input is computed in float32.
  assert _energy(jnp.asarray(z, jnp.bfloat16)).dtype == jnp.float32


def test_wavelet_energy_map_has_no_gradient_and_runs_under_jit():
  z = np.random.default_rng(5).normal(size=(2, 6, 10, 3)).astype(np.float32)
  weights = np.random.default_rng(6).normal(size=(2, 6, 10)).astype(np.float32)
  grad = jax.jit(jax.grad(lambda z: jnp.sum(weights * spectral.wavelet_energy_map(z))))(z)
  np.testing.assert_array_equal(grad, 0.0)
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    spectral.wavelet_energy_map(z[0])


# Real FFTs that keep a batch sharding (spectral.rfftn / irfftn).


def test_rfftn_and_irfftn_are_jnp_fft_under_jit_vmap_and_both_autodiff_modes():
  x = jax.random.normal(jax.random.key(0), (4, 12, 10, 3))
  spectrum = jax.jit(lambda x: spectral.rfftn(x, (1, 2)))(x)
  np.testing.assert_array_equal(spectrum, jnp.fft.rfftn(x, axes=(1, 2)))
  assert spectrum.shape == (4, 12, 6, 3) and spectrum.dtype == jnp.complex64
  signal = jax.jit(lambda s: spectral.irfftn(s, (12, 10), (1, 2)))(spectrum)
  np.testing.assert_allclose(signal, jnp.fft.irfftn(spectrum, s=(12, 10), axes=(1, 2)),
                             atol=1e-6)
  np.testing.assert_allclose(signal, x, atol=1e-5)
  # Trailing and negative axes; vmap adds a leading axis.
  np.testing.assert_array_equal(jax.vmap(lambda a: spectral.rfftn(a, (-2, -1)))(x),
                                jnp.fft.rfftn(x, axes=(2, 3)))
  # Linear maps: reverse and forward mode through them equal jnp.fft's.
  loss = lambda fft: lambda a: jnp.sum(jnp.abs(fft(a)) ** 2 * jnp.arange(6.0)[:, None])
  np.testing.assert_allclose(jax.grad(loss(lambda a: spectral.rfftn(a, (1, 2))))(x),
                             jax.grad(loss(lambda a: jnp.fft.rfftn(a, axes=(1, 2))))(x),
                             rtol=1e-5, atol=1e-4)
  tangent = jax.jvp(lambda a: spectral.irfftn(a, (12, 10), (1, 2)), (spectrum,), (spectrum,))[1]
  np.testing.assert_allclose(tangent, signal, atol=1e-6)
  with pytest.raises(ValueError, match='distinct axes'):
    spectral.rfftn(x, (1, 1))
  with pytest.raises(ValueError, match='distinct axes'):
    spectral.rfftn(x, (1, 4))
  with pytest.raises(ValueError, match='2 lengths for 1 axes'):
    spectral.irfftn(spectrum, (12, 10), (1,))


SHARDED_FFT_SCRIPT = '''
    import re, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from phipd_jax import noise
    mesh = Mesh(np.array(jax.devices()), ('data',))
    batch = NamedSharding(mesh, P('data'))
    x = jax.random.normal(jax.random.key(1), (16, 32, 32, 3))
    for mode in ('paper', 'reference'):
      draw = noise.noise_fn('fss', mode=mode)
      fn = lambda key, x: draw(key, x, 4.0)
      sharded = jax.jit(fn, out_shardings=batch)
      hlo = sharded.lower(jax.random.key(2), jax.device_put(x, batch)).compile().as_text()
      ffts = re.findall(r'= [a-z0-9]+\\[(\\d+),[^=]*? fft\\(', hlo)
      # Each device transforms its 2 of the 16 images (on CPU the inverse in two slices).
      assert len(ffts) >= 3 and set(ffts) <= {'1', '2'}, (mode, ffts)
      assert 'all-gather' not in hlo, mode
      got = sharded(jax.random.key(2), jax.device_put(x, batch))
      np.testing.assert_allclose(got, jax.jit(fn)(jax.random.key(2), x), atol=1e-6)
    print('OK')
'''


def test_noise_ffts_run_on_each_devices_shard_of_the_batch():
  """XLA all-gathers an fft's operand under a mesh; spectral.rfftn / irfftn keep the shard."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=repo, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  result = subprocess.run([sys.executable, '-c', textwrap.dedent(SHARDED_FFT_SCRIPT)], env=env,
                          cwd=repo, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-3000:]
