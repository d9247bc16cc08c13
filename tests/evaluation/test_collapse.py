"""Spectral-collapse diagnostics (phipd_jax.evaluation.collapse; spec spectral_collapse_ovg.md
Secs. 4 and 8, test 7 and 8)."""

import math

import jax
import numpy as np
import pytest
from scipy import ndimage

from phipd_jax.evaluation import collapse


def _signed(index, size):
  """Signed integer frequency of FFT bin ``index`` (same as ``np.fft.fftfreq(size) * size``)."""
  return index if index <= (size - 1) // 2 else index - size


def _reference_bins(height, width):
  """Independent enumeration: band -> list of (i, j, self_conjugate), float rho with tolerance."""
  bins = {'dc': [], 'lf': [], 'hf': []}
  for i in range(height):
    for j in range(width):
      u, v = _signed(i, height), _signed(j, width)
      rho = 2.0 * math.sqrt((u / height) ** 2 + (v / width) ** 2)
      self_conjugate = (-i) % height == i and (-j) % width == j
      if rho == 0.0:
        band = 'dc'
      elif rho <= 1 / 8 + 1e-9:
        band = 'lf'
      elif 1 / 2 + 1e-9 < rho <= 1 + 1e-9:
        band = 'hf'
      else:
        continue
      bins[band].append((i, j, self_conjugate))
  return bins


def _white(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape)


def _blurred_white_noise(shape, sigma=2.0, seed=1):
  noise = np.random.default_rng(seed).normal(size=shape)
  blurred = np.stack([np.stack([ndimage.gaussian_filter(noise[b, ..., c], sigma, mode='wrap')
                                for c in range(shape[-1])], axis=-1)
                      for b in range(shape[0])])
  return (blurred / blurred.std()).astype(np.float32)


@pytest.mark.parametrize('height,width', [(32, 32), (15, 20), (16, 9)])
def test_band_masks_equal_an_explicit_enumeration(height, width):
  masks = collapse.band_masks(height, width)
  reference = _reference_bins(height, width)
  for band in collapse.BANDS:
    expected = np.zeros((height, width), bool)
    for i, j, _ in reference[band]:
      expected[i, j] = True
    np.testing.assert_array_equal(masks[band], expected, err_msg=band)
  # The 32x32 counts used by the sampling-error test below.
  if (height, width) == (32, 32):
    assert [len(reference[b]) for b in collapse.BANDS] == [1, 12, 598]


def test_white_noise_band_power_ratios_are_one_within_sampling_error():
  # |X|^2 of a unitary-FFT bin of N(0, I) is Exp(1) (a complex bin) or chi^2_1 (a real,
  # self-conjugate bin: DC, Nyquist); bins are independent except Hermitian pairs X(-k) = X(k)*.
  # Mean of a band with p pairs and s real bins (n = 2p + s) has variance (4p + 2s) / n^2 per
  # (sample, channel), and there are 64 * 3 = 192 independent (sample, channel) maps. At 32x32:
  #   DC: n = 1, s = 1       -> var 2        -> SE = sqrt(2 / 192)          = 0.102
  #   LF: n = 12, p = 6      -> var 1/6      -> SE = 1 / sqrt(6 * 192)      = 0.0295
  #   HF: n = 598, p = 298, s = 2 -> var 1196 / 598^2 = 3.34e-3 -> SE = 0.00417
  # (about 299 independent bins per map: Hermitian symmetry halves the 598).
  batch, size, channels = 64, 32, 3
  x = _white(0, (batch, size, size, channels)).astype(np.float32)
  reference = _reference_bins(size, size)
  functions = {'dc': collapse.dc_power_ratio, 'lf': collapse.lf_power_ratio,
               'hf': collapse.hf_power_ratio}
  expected_se = {'dc': 0.102, 'lf': 0.0295, 'hf': 0.00417}
  for band, function in functions.items():
    n_self = sum(s for _, _, s in reference[band])
    n = len(reference[band])
    pairs = (n - n_self) // 2
    se = math.sqrt((4 * pairs + 2 * n_self) / n ** 2 / (batch * channels))
    assert se == pytest.approx(expected_se[band], rel=0.01)
    value = float(np.mean(function(x)))
    assert abs(value - 1.0) < 4 * se, (band, value, se)
  # The scale argument divides x: N(0, 9 I) with scale 3 is the same as N(0, I).
  np.testing.assert_allclose(collapse.hf_power_ratio(3 * x, scale=3.0),
                             collapse.hf_power_ratio(x), rtol=1e-5)


def test_structure_corr_of_an_image_with_itself_is_one_and_decorrelation_of_independent_noise():
  x_src = _white(1, (64, 32, 32, 3)).astype(np.float32)
  noise = _white(2, (64, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(collapse.lowpass_structure_corr(x_src, x_src), 1.0, atol=1e-5)
  # Contrast/brightness invariance, and a different channel count (grey level = channel mean).
  grey = np.mean(x_src, axis=-1, keepdims=True)
  np.testing.assert_allclose(collapse.lowpass_structure_corr(2 * x_src + 1, grey), 1.0, atol=1e-5)
  # Independent: low-pass Pearson has ~12 real degrees of freedom (std ~0.3 per sample), mean ~0.
  assert abs(float(np.mean(collapse.lowpass_structure_corr(noise, x_src)))) < 0.15
  # 1 - |r| with |r| ~ 0.8 / sqrt(3072) = 0.014 for independent maps.
  decorrelation = np.asarray(collapse.source_decorrelation(noise, x_src))
  assert decorrelation.shape == (64,)
  assert decorrelation.mean() > 0.97 and decorrelation.min() > 0.9
  # A latent that copies the source (even with flipped sign) scores 0.
  np.testing.assert_allclose(collapse.source_decorrelation(-2 * x_src + 1, x_src), 0.0, atol=1e-5)


def test_blurred_noise_has_a_high_frequency_deficit_and_is_spatially_correlated():
  blurred = _blurred_white_noise((16, 32, 32, 3))
  white = _white(3, (16, 32, 32, 3)).astype(np.float32)
  # Gain exp(-(2 pi f sigma)^2) at f >= 1/4 cycle/px is < 6e-5 (times ~50 after renormalising).
  assert float(np.mean(collapse.hf_power_ratio(blurred))) < 0.05
  assert float(np.mean(collapse.lf_power_ratio(blurred))) > 1.0
  # Lag-1 autocorrelation of a 2-px Gaussian blur is exp(-1 / 16) = 0.94 -> score ~0.06.
  assert float(np.mean(collapse.lag1_decorrelation(blurred))) < 0.3
  assert float(np.mean(collapse.lag1_decorrelation(white))) > 0.95


@pytest.mark.parametrize('count, dim', [(200, 3072), (64, 64), (500, 48), (40, 768)])
def test_gaussian_pca_reference_is_the_marchenko_pastur_expectation(count, dim):
  """The Gaussian reference of pca_effective_rank for fewer maps than dimensions and for more
  (the old ~1 / (1 + d / M) reference is 0.06 for 200 maps of 3072 values; the truth 0.934)."""
  maps = jax.random.normal(jax.random.key(count + dim), (count, dim))
  simulated = float(collapse.pca_effective_rank(maps))
  assert collapse.gaussian_pca_effective_rank(count, dim) == pytest.approx(simulated, abs=0.01)
  if (count, dim) == (200, 3072):
    assert collapse.gaussian_pca_effective_rank(count, dim) == pytest.approx(0.934, abs=1e-3)


def test_pca_effective_rank_of_gaussian_maps_is_near_one_and_collapses_with_a_shared_field():
  count, shape = 2000, (6, 6, 1)
  rng = np.random.default_rng(4)
  gaussian = rng.normal(size=(count,) + shape).astype(np.float32)
  # Expected ~1 / (1 + d / M) = 1 / (1 + 36 / 2000) = 0.98.
  assert float(collapse.pca_effective_rank(gaussian)) > 0.9
  field = ndimage.gaussian_filter(rng.normal(size=shape[:2]), 1.5, mode='wrap')[..., None]
  field = field / field.std()
  weights = 3.0 * rng.normal(size=(count, 1, 1, 1))
  shared = (weights * field + 0.1 * rng.normal(size=(count,) + shape)).astype(np.float32)
  # One direction holds ~99.9% of the variance -> ~1 / 36 = 0.03.
  assert float(collapse.pca_effective_rank(shared)) < 0.3
  # The scale-free bound: one direction exactly -> 1 / min(M, d).
  rank_one = (weights * field).astype(np.float32)
  assert float(collapse.pca_effective_rank(rank_one)) == pytest.approx(1 / 36, rel=1e-3)
  # Fig. 3's curves: the cumulative explained variance equals NumPy's covariance eigenvalues;
  # Gaussian maps need most components, the shared field reaches 99% with one.
  for maps in (gaussian, shared):
    curve = np.asarray(collapse.pca_cumulative_variance(maps))
    flat = maps.reshape(count, -1).astype(np.float64)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(flat, rowvar=False)))[::-1]
    np.testing.assert_allclose(curve, np.cumsum(eigenvalues) / eigenvalues.sum(), atol=1e-4)
  assert np.asarray(collapse.pca_cumulative_variance(gaussian))[17] < 0.6
  assert np.asarray(collapse.pca_cumulative_variance(shared))[0] > 0.99


def test_band_power_equals_a_numpy_loop_implementation():
  rng = np.random.default_rng(5)
  for height, width in [(32, 19)]:
    x = (rng.normal(size=(3, height, width, 2)) * 1.7 + 0.3).astype(np.float32)
    spectrum = np.fft.fft2(x.astype(np.float64), axes=(1, 2), norm='ortho')
    for band, bins in _reference_bins(height, width).items():
      expected = np.zeros(3)
      for b in range(3):
        total = 0.0
        for c in range(2):
          for i, j, _ in bins:
            total += abs(spectrum[b, i, j, c]) ** 2
        expected[b] = total / (len(bins) * 2)
      np.testing.assert_allclose(collapse.band_power(x, band), expected, rtol=1e-5, err_msg=band)


def _numpy_radial_log_amplitude(x, average):
  """Replica of the released SpectralAnalyzer (NCHW torch -> here NHWC numpy)."""
  grey = x.astype(np.float64).mean(axis=-1)
  magnitude = np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(-2, -1)))
  _, h, w = magnitude.shape
  cy, cx = h // 2, w // 2
  y, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  r = np.sqrt((xx - cx) ** 2 + (y - cy) ** 2).reshape(-1).astype(int)
  max_r = min(cx, cy)

  def profile(mag):
    tbin = np.bincount(r, weights=mag.reshape(-1))
    nr = np.bincount(r)
    return np.log10(tbin[:max_r] / np.maximum(nr[:max_r], 1) + 1e-12)

  if average:
    return profile(magnitude.mean(axis=0))
  return np.stack([profile(m) for m in magnitude])


def test_radial_log_amplitude_equals_the_released_pipeline():
  shape = (3, 20, 15, 4)  # Non-square, odd width: R = min(20 // 2, 15 // 2) = 7 bins.
  x = (np.random.default_rng(6).normal(size=shape) + 0.2).astype(np.float32)
  curves = collapse.radial_log_amplitude(x)
  assert curves.shape == (shape[0], min(shape[1], shape[2]) // 2)
  np.testing.assert_allclose(curves, _numpy_radial_log_amplitude(x, False), atol=1e-5)
  np.testing.assert_allclose(collapse.radial_log_amplitude(x, average=True),
                             _numpy_radial_log_amplitude(x, True), atol=1e-5)


def test_gaussian_prior_curve_is_flat_at_the_rayleigh_mean_and_plot_writes_a_png(tmp_path):
  prior = np.asarray(collapse.gaussian_radial_log_amplitude(32, 32, 4, num_samples=64))
  expected = math.log10(math.sqrt(math.pi * 32 * 32 / 4) / 2)
  np.testing.assert_allclose(prior[2:], expected, atol=0.05)
  blurred = collapse.radial_log_amplitude(_blurred_white_noise((64, 32, 32, 4)), average=True)
  # The blurred curve falls well below the prior at high frequencies (spectral collapse).
  assert blurred[-1] < prior[-1] - 1.0
  path = collapse.plot_radial_spectra(
      {'blurred': blurred, 'white': collapse.radial_log_amplitude(_white(7, (2, 8, 8, 4)))},
      str(tmp_path / 'sub' / 'spectra.png'), 'test', prior_shape=(32, 32, 4))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_collapse_report_on_white_noise():
  # Same shapes as the blurred-noise and jit tests, so the compiled programs are shared.
  x = _white(8, (16, 32, 32, 3)).astype(np.float32)
  src = _blurred_white_noise((16, 32, 32, 3))
  report = collapse.collapse_report(5 * x, src, scale=5.0)
  assert set(report) == {'hf_power_ratio', 'lf_power_ratio', 'dc_power_ratio',
                         'lag1_decorrelation', 'source_decorrelation',
                         'lowpass_structure_corr', 'pca_effective_rank'}
  assert all(isinstance(v, float) for v in report.values())
  assert report['hf_power_ratio'] == pytest.approx(1.0, abs=0.05)
  assert report['source_decorrelation'] > 0.9
  assert report['lag1_decorrelation'] > 0.9
  small = collapse.collapse_report(x[:1, :8, :8, :1])
  assert 'pca_effective_rank' not in small
  assert math.isnan(small['lf_power_ratio'])  # No LF bins below 16 pixels: NaN, not an error.
  assert not math.isnan(small['hf_power_ratio'])


def test_every_metric_gives_the_same_value_inside_an_outer_jit():
  # The public metrics are jitted themselves; this checks they also trace inside a caller's jit
  # (traced inputs and a traced scale, no host round-trips) and agree with the direct calls.
  # Same shapes as the blurred-noise test, so most direct calls reuse compiled programs.
  x = _white(10, (16, 32, 32, 3)).astype(np.float32)
  y = _blurred_white_noise((16, 32, 32, 3))

  def all_metrics(a, b, scale):
    return {
        'band_power': collapse.band_power(a, 'lf'),
        'hf_power_ratio': collapse.hf_power_ratio(a, scale),
        'lf_power_ratio': collapse.lf_power_ratio(a),
        'dc_power_ratio': collapse.dc_power_ratio(a),
        'hf_texture_ratio': collapse.hf_texture_ratio(a, b),
        'lowpass_structure_corr': collapse.lowpass_structure_corr(a, b),
        'source_decorrelation': collapse.source_decorrelation(a, b),
        'lag1_decorrelation': collapse.lag1_decorrelation(b),
        'pca_effective_rank': collapse.pca_effective_rank(a),
        'radial_log_amplitude': collapse.radial_log_amplitude(a, average=True),
    }

  jitted = jax.jit(all_metrics)(x, y, 2.0)
  direct = all_metrics(x, y, 2.0)
  assert set(jitted) == set(direct)
  for name, value in direct.items():
    np.testing.assert_allclose(jitted[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_fig4_correlations_are_pearson_and_spearman_of_the_pooled_maps():
  """inversion_study.correlations: numpy's Pearson and the Pearson of ranks, NaN when constant."""
  from phipd_jax.evaluation import inversion_study
  rng = np.random.default_rng(0)
  x = rng.uniform(size=300)
  per_map = {'source_decorrelation': x, 'noise_hf_power_ratio': 2 * x + 0.3 * rng.normal(size=300),
             'hf_texture_ratio': np.exp(-5 * x), 'lowpass_structure_corr': np.ones(300)}
  result = inversion_study.correlations(per_map)
  assert result['noise_hf_power_ratio']['pearson'] == pytest.approx(
      np.corrcoef(x, per_map['noise_hf_power_ratio'])[0, 1], abs=1e-12)
  ranks = lambda v: np.argsort(np.argsort(v))
  assert result['noise_hf_power_ratio']['spearman'] == pytest.approx(
      np.corrcoef(ranks(x), ranks(per_map['noise_hf_power_ratio']))[0, 1], abs=1e-12)
  # A monotone falling map: Spearman exactly -1, Pearson above it.
  assert result['hf_texture_ratio']['spearman'] == pytest.approx(-1.0)
  assert -1.0 < result['hf_texture_ratio']['pearson'] < -0.8
  assert math.isnan(result['lowpass_structure_corr']['pearson'])
  assert result['noise_hf_power_ratio']['count'] == 300
  with pytest.raises(ValueError, match='hf_texture_ratio'):
    inversion_study.correlations(dict(per_map, hf_texture_ratio=x[:10]))
