"""Spectral-collapse diagnostics for inverted noise maps and translated outputs.

Deterministic inversion of a spectrally sparse source (a down/up-sampled image, an edge map)
gives a latent ``x_T`` that is not isotropic Gaussian: it lacks high-frequency energy and keeps
low-frequency imprints of the source, and sampling from it gives oversmoothed outputs ("spectral
collapse"; Bourriez, Verine & Genovesio, *Spectral Collapse in Diffusion Inversion*,
arXiv:2602.13303). The paper scores this with S_HF, S_LF and S_DC, whose exact definitions were
not available to us. **Every metric here is this library's proposed definition**, named after
the paper's candidate symbol where one fits; none is the paper's own until verified.

Conventions:

* Inputs are NHWC float arrays ``[B, H, W, C]``; every function is batched, vectorised (no
  Python loop over the batch) and jit-able; outputs are float32.
* Unitary FFT per channel, ``X_c = fft2(x_c, norm='ortho')``: white noise of unit variance has
  ``E|X_c(u, v)|^2 = 1`` at every bin, so band powers of N(0, I) are 1.
* Signed integer frequencies ``u`` (rows, ``-H/2 .. H/2 - 1``) and ``v`` (columns;
  :func:`phipd_jax.spectral.frequency_indices`), normalised
  radius ``rho = 2 sqrt((u / H)^2 + (v / W)^2)`` (1 at the Nyquist frequency of either axis).
  Bands: ``'dc'`` ``rho = 0``; ``'lf'`` ``0 < rho <= 1/8``; ``'hf'`` ``1/2 < rho <= 1`` (the
  corners beyond ``rho = 1`` are excluded). Band membership is decided in exact integer
  arithmetic.
* ``P_B(x)`` = mean over channels and the bins of band B of ``|X_c(u, v)|^2`` (units of
  ``x^2``, per sample).

:func:`radial_log_amplitude` instead reproduces the released OVG code's spectral plot
(channel mean, unnormalised FFT amplitude, radial average, log10), for figures.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import spectral
from phipd_jax.evaluation import report

Array = jax.Array

BANDS = ('dc', 'lf', 'hf')
_EPS = 1e-12


def band_masks(height: int, width: int) -> dict[str, np.ndarray]:
  """Boolean masks ``[H, W]`` of the DC, LF and HF bands on the unshifted ``fft2`` grid.

  Args:
    height, width: the image size ``H, W`` (any size, odd or even).

  Returns:
    ``{'dc': ..., 'lf': ..., 'hf': ...}``, bool numpy arrays ``[H, W]`` indexed like
    ``np.fft.fft2`` output (bin ``[i, j]`` has frequency ``u = fftfreq(H)[i] * H``,
    ``v = fftfreq(W)[j] * W``). DC: ``rho = 0``; LF: ``0 < rho <= 1/8``; HF:
    ``1/2 < rho <= 1``, with ``rho = 2 sqrt((u/H)^2 + (v/W)^2)``.
  """
  u = spectral.frequency_indices(height)[:, None]
  v = spectral.frequency_indices(width)[None, :]
  # rho^2 = q / n exactly, with q and n integers.
  q = 4 * (u * u * width * width + v * v * height * height)
  n = height * height * width * width
  return {
      'dc': q == 0,
      'lf': (q > 0) & (64 * q <= n),
      'hf': (4 * q > n) & (q <= n),
  }


def _ortho_power(x: Array) -> Array:
  """``|fft2(x_c, norm='ortho')|^2`` per channel, float32 ``[B, H, W, C]``."""
  x = jnp.asarray(x, jnp.float32)
  spectrum = jnp.fft.fft2(x, axes=(1, 2), norm='ortho')
  return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


@functools.partial(jax.jit, static_argnames=('band',))
def band_power(x: Array, band: str) -> Array:
  """Mean unitary-FFT power of a band, per sample, float32 ``[B]``.

  ``P_B(x)`` = mean over channels ``c`` and bins ``(u, v)`` of band ``B`` of
  ``|fft2(x_c, norm='ortho')(u, v)|^2``. In units of ``x^2``; N(0, s^2 I) gives ``s^2`` in
  expectation for every band.

  Args:
    x: ``[B, H, W, C]`` float.
    band: ``'dc'``, ``'lf'`` or ``'hf'`` (see :func:`band_masks`); static under jit.

  Returns:
    float32 ``[B]``; NaN when the band has no bins (LF is empty when ``H, W < 16``).
  """
  if band not in BANDS:
    raise ValueError(f'band must be one of {BANDS}, got {band!r}')
  _, height, width, channels = x.shape
  mask = band_masks(height, width)[band]
  count = int(mask.sum()) * channels
  if count == 0:  # LF is empty below 16 pixels on both axes.
    return jnp.full((x.shape[0],), jnp.nan, jnp.float32)
  weights = jnp.asarray(mask, jnp.float32)[None, :, :, None]
  return jnp.sum(_ortho_power(x) * weights, axis=(1, 2, 3)) / count


@jax.jit
def hf_power_ratio(x_t: Array, scale: float = 1.0) -> Array:
  """High-frequency power of a noise map relative to N(0, I), ``P_HF(x_T / s)``, ``[B]``.

  Candidate S_HF on noise (library definition, see module docstring). Gaussian reference 1;
  below 1 is a high-frequency deficit (spectral collapse).

  Args:
    x_t: inverted latents ``[B, H, W, C]``.
    scale: ``s``, the prior std at the inversion end (1 for DDIM, sigma_max for EDM, or
      ``sqrt(sigma_max^2 + Var x_src)``).
  """
  return band_power(jnp.asarray(x_t, jnp.float32) / scale, 'hf')


@jax.jit
def lf_power_ratio(x_t: Array, scale: float = 1.0) -> Array:
  """Low-frequency power ``P_LF(x_T / s)`` relative to N(0, I) (reference 1), ``[B]``.

  Above 1 is a low-frequency imprint of the source. Library definition. Args as
  :func:`hf_power_ratio`.
  """
  return band_power(jnp.asarray(x_t, jnp.float32) / scale, 'lf')


@jax.jit
def dc_power_ratio(x_t: Array, scale: float = 1.0) -> Array:
  """Zero-frequency power ``P_DC(x_T / s)`` (reference 1), ``[B]``.

  ``P_DC = mean_c (H W) mean(x_c / s)^2``: a mean offset of the latent. This is the "DC energy"
  reading of S_DC; the paper's S_DC is more likely a decorrelation score (see
  :func:`source_decorrelation`). Library definition. Args as :func:`hf_power_ratio`.
  """
  return band_power(jnp.asarray(x_t, jnp.float32) / scale, 'dc')


@jax.jit
def hf_texture_ratio(y: Array, y_real: Array) -> Array:
  """High-frequency energy of outputs relative to real target images, ``[B]``.

  ``P_HF(y) / mean_{y_real} P_HF(y_real)`` (candidate S_HF on outputs; library definition).
  1 = target-domain texture energy; below 1 = oversmoothed.

  Args:
    y: generated images ``[B, H, W, C]`` in ``[-1, 1]``.
    y_real: real target-domain images ``[N, H, W, C]`` in ``[-1, 1]`` (any N >= 1, same H, W).
  """
  return band_power(y, 'hf') / jnp.maximum(jnp.mean(band_power(y_real, 'hf')), _EPS)


def _pearson(a: Array, b: Array) -> Array:
  """Pearson correlation per sample over all non-batch elements, ``[B]``; 0 if constant."""
  a = a.reshape(a.shape[0], -1)
  b = b.reshape(b.shape[0], -1)
  a = a - jnp.mean(a, axis=1, keepdims=True)
  b = b - jnp.mean(b, axis=1, keepdims=True)
  denominator = jnp.sqrt(jnp.sum(a * a, axis=1) * jnp.sum(b * b, axis=1))
  return jnp.sum(a * b, axis=1) / jnp.maximum(denominator, _EPS)


def _lowpass_grey(x: Array) -> Array:
  """Channel-mean grey level low-passed to ``rho <= 1/8`` (DC and LF bins), ``[B, H, W]``."""
  grey = jnp.mean(jnp.asarray(x, jnp.float32), axis=-1)
  _, height, width = grey.shape
  masks = band_masks(height, width)
  keep = jnp.asarray(masks['dc'] | masks['lf'], jnp.float32)
  return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(grey, axes=(1, 2)) * keep, axes=(1, 2)))


@jax.jit
def lowpass_structure_corr(y: Array, x_src: Array) -> Array:
  """Pearson correlation of the low-passed grey levels of two images, per sample, ``[B]``.

  Candidate S_LF (library definition): ``Pearson(L(y), L(x_src))``, where the grey level is the
  channel mean and ``L`` keeps the unitary-FFT bins with ``rho <= 1/8``. In ``[-1, 1]``; 1 =
  the coarse structure is kept; about 0 for unrelated images (and for independent N(0, I) maps).
  Invariant to the brightness and contrast of either input.

  Args:
    y: outputs ``[B, H, W, C]`` on the source grid (same ``H, W`` as ``x_src``).
    x_src: sources ``[B, H, W, C']`` (``C'`` may differ from ``C``, e.g. an edge map).
  """
  if y.shape[:3] != x_src.shape[:3]:
    raise ValueError(f'y {y.shape} and x_src {x_src.shape} must share [B, H, W]')
  return _pearson(_lowpass_grey(y), _lowpass_grey(x_src))


@jax.jit
def source_decorrelation(x_t: Array, x_src: Array) -> Array:
  """``1 - |Pearson(x_T, x_src)|`` per sample over all elements, ``[B]``, in ``[0, 1]``.

  Candidate S_DC in its "decorrelation" reading (library definition). About 1 for noise
  independent of the source (N(0, I) gives ``1 - O(1/sqrt(HWC))``); small when the latent still
  copies the source.

  Args:
    x_t: inverted latents ``[B, H, W, C]``.
    x_src: clean sources in the same space and shape (the latent of the source for latent
      models).
  """
  if x_t.shape != x_src.shape:
    raise ValueError(f'x_t {x_t.shape} and x_src {x_src.shape} must have the same shape')
  return 1.0 - jnp.abs(_pearson(jnp.asarray(x_t, jnp.float32), jnp.asarray(x_src, jnp.float32)))


@jax.jit
def lag1_decorrelation(x: Array) -> Array:
  """``1 - (|r(1, 0)| + |r(0, 1)|) / 2`` per sample, averaged over channels, ``[B]``.

  ``r(1, 0)`` and ``r(0, 1)`` are the lag-1 spatial autocorrelations along rows and columns of
  each mean-removed channel ``z``: ``mean(z[i, j] z[i + 1, j]) / mean(z^2)`` over the
  ``(H - 1) W`` valid pairs (no wrap-around), and likewise along columns. The per-channel score
  is averaged over channels. Library definition. About 1 for N(0, I)
  (``E|r| ~ 0.8 / sqrt(HW)``); small for spatially smooth (collapsed) noise, e.g. about 0.06 for
  white noise blurred with a 2-pixel Gaussian.

  Args:
    x: ``[B, H, W, C]`` float, ``H, W >= 2``.
  """
  z = jnp.asarray(x, jnp.float32)
  z = z - jnp.mean(z, axis=(1, 2), keepdims=True)
  variance = jnp.maximum(jnp.mean(z * z, axis=(1, 2)), _EPS)  # [B, C]
  r_rows = jnp.mean(z[:, 1:] * z[:, :-1], axis=(1, 2)) / variance
  r_cols = jnp.mean(z[:, :, 1:] * z[:, :, :-1], axis=(1, 2)) / variance
  return jnp.mean(1.0 - 0.5 * (jnp.abs(r_rows) + jnp.abs(r_cols)), axis=-1)


@jax.jit
def pca_effective_rank(maps: Array) -> Array:
  """Normalised participation ratio of the covariance of M flattened maps, float32 scalar.

  ``(sum lambda)^2 / sum lambda^2 / min(M, d)``, with ``lambda`` the eigenvalues of the sample
  covariance of the ``M`` maps flattened to ``d = H W C`` values (Fig. 3-style dimensionality
  collapse; library definition). Computed from the singular values of the centred ``[M, d]``
  data matrix (``lambda`` proportional to their squares), so ``d`` may be large. In
  ``(0, 1]``; ``1 / min(M, d)`` when one direction holds all the variance. N(0, I) maps do not
  give 1 but :func:`gaussian_pca_effective_rank` (the Marchenko-Pastur expectation: about
  ``1 / (1 + d / M)`` when ``M >> d`` and ``1 / (1 + M / d)`` when ``M << d``; 0.934 for 200
  maps of 32x32x3). With ``M <= d`` centring leaves at most ``M - 1`` directions.

  Args:
    maps: ``[M, ...]`` (e.g. ``[M, H, W, C]``), ``M >= 2``.
  """
  data = jnp.asarray(maps, jnp.float32).reshape(maps.shape[0], -1)
  count, dim = data.shape
  if count < 2:
    raise ValueError(f'pca_effective_rank needs at least 2 maps, got {count}')
  data = data - jnp.mean(data, axis=0, keepdims=True)
  # Scale to unit RMS first: the participation ratio is scale-free, and this keeps the fourth
  # powers of the singular values well inside float32.
  data = data / jnp.maximum(jnp.sqrt(jnp.mean(data * data)), _EPS)
  eigenvalues = jnp.linalg.svd(data, compute_uv=False) ** 2
  ratio = jnp.sum(eigenvalues) ** 2 / jnp.maximum(jnp.sum(eigenvalues ** 2), _EPS)
  return ratio / min(count, dim)


def gaussian_pca_effective_rank(count: int, dim: int) -> float:
  """What :func:`pca_effective_rank` gives for ``count`` N(0, I) maps of ``dim`` values: the
  Gaussian reference row, for any ``count`` and ``dim``.

  The centred ``[M, d]`` data has ``n = M - 1`` effective samples; by the Marchenko-Pastur law
  (Marchenko & Pastur 1967) its ``m = min(n, d)`` non-zero covariance eigenvalues have
  ``(sum lambda)^2 / sum lambda^2 -> m / (1 + m / max(n, d))``, divided here by ``min(M, d)``
  as :func:`pca_effective_rank` divides. Within 0.01 of simulation from 64 x 64 up
  (``tests/evaluation/test_collapse.py``).

  Raises:
    ValueError: ``count < 2`` or ``dim < 1``.
  """
  if count < 2 or dim < 1:
    raise ValueError(f'gaussian_pca_effective_rank: need count >= 2 and dim >= 1, got {count}, '
                     f'{dim}')
  samples = count - 1
  small, large = min(samples, dim), max(samples, dim)
  return small / (1.0 + small / large) / min(count, dim)


@jax.jit
def pca_cumulative_variance(maps: Array) -> Array:
  """Cumulative explained-variance ratio of the principal components of M flattened maps.

  The curve of Fig. 3 of Bourriez et al. (arXiv:2602.13303): component ``k`` (0-based) holds the
  share of the total variance in the ``k + 1`` largest components of the sample covariance of
  the centred ``[M, d]`` data (``d = H W C``). N(0, I) maps spread the variance evenly (a near
  straight line for ``M <= d``); collapsed maps reach 1 within a few components.

  Args:
    maps: ``[M, ...]``, ``M >= 2``.

  Returns:
    float32 ``[min(M, d)]``, non-decreasing, last entry 1.
  """
  data = jnp.asarray(maps, jnp.float32).reshape(maps.shape[0], -1)
  if data.shape[0] < 2:
    raise ValueError(f'pca_cumulative_variance needs at least 2 maps, got {data.shape[0]}')
  data = data - jnp.mean(data, axis=0, keepdims=True)
  data = data / jnp.maximum(jnp.sqrt(jnp.mean(data * data)), _EPS)
  eigenvalues = jnp.linalg.svd(data, compute_uv=False) ** 2
  return jnp.cumsum(eigenvalues) / jnp.maximum(jnp.sum(eigenvalues), _EPS)


def _radial_weights(height: int, width: int) -> np.ndarray:
  """``[H * W, R]`` averaging matrix of the released code's radial bins on the shifted grid
  (:func:`phipd_jax.spectral.released_ovg_radius_bins`)."""
  radius = spectral.released_ovg_radius_bins(height, width).reshape(-1)
  num_bins = min(height // 2, width // 2)
  one_hot = (radius[:, None] == np.arange(num_bins)[None, :]).astype(np.float64)
  return (one_hot / np.maximum(one_hot.sum(axis=0, keepdims=True), 1.0)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=('average',))
def radial_log_amplitude(x: Array, average: bool = False) -> Array:
  """The released OVG code's radial spectrum: log10 of the radially averaged FFT amplitude.

  Pipeline: average the channels; unnormalised ``fft2``; ``fftshift``; amplitude ``|.|``;
  average over integer-radius bins ``r = floor(sqrt((i - H//2)^2 + (j - W//2)^2))`` for
  ``r = 0 .. R - 1`` with ``R = min(H, W) // 2``; ``log10(. + 1e-12)``. The bin ``r`` is in
  cycles per image. No mean is removed, so bin 0 holds the DC amplitude. For N(0, I) maps the
  curve is flat near ``log10(sqrt(pi H W / C) / 2)`` (a Rayleigh mean) for ``r >= 1``; see
  :func:`gaussian_radial_log_amplitude` for the empirical reference the released code plots.

  Args:
    x: ``[B, H, W, C]`` float.
    average: if True, average the amplitude profile over the batch *before* the log (as the
      released code does) and return ``[R]``; otherwise return per-sample curves ``[B, R]``.

  Returns:
    float32 ``[B, R]`` or ``[R]``, log10 of amplitude (units of ``x`` times ``sqrt(H W)``).
  """
  grey = jnp.mean(jnp.asarray(x, jnp.float32), axis=-1)
  batch, height, width = grey.shape
  amplitude = jnp.abs(jnp.fft.fftshift(jnp.fft.fft2(grey, axes=(1, 2)), axes=(1, 2)))
  profile = amplitude.reshape(batch, height * width) @ jnp.asarray(_radial_weights(height, width))
  if average:
    profile = jnp.mean(profile, axis=0)
  return jnp.log10(profile + 1e-12)


def gaussian_radial_log_amplitude(height: int, width: int, channels: int, num_samples: int = 64,
                                  seed: int = 0) -> Array:
  """The "Gaussian prior" curve: :func:`radial_log_amplitude` of N(0, I) maps, averaged, ``[R]``.

  Args:
    height, width, channels: map shape.
    num_samples: number of N(0, I) maps averaged.
    seed: PRNG seed (fixed, so plots are reproducible).
  """
  # NumPy's generator: no PRNG program to compile for a plot.
  noise = np.random.default_rng(seed).standard_normal((num_samples, height, width, channels))
  return radial_log_amplitude(noise.astype(np.float32), average=True)


def plot_radial_spectra(curves: dict[str, Array], path: str, title: str = '',
                        prior_shape: tuple[int, int, int] | None = None) -> str:
  """Writes a PNG of radial log-amplitude curves (the released code's spectral comparison plot).

  Args:
    curves: name -> ``[R]`` curve from :func:`radial_log_amplitude` (``average=True``), or
      ``[B, R]`` curves (averaged over the batch in log space for display).
    path: output PNG path; missing parent folders are created.
    title: figure title.
    prior_shape: ``(H, W, C)`` of the maps; when given, the "Gaussian prior" curve of N(0, I)
      maps of that shape is drawn dashed.

  Returns:
    ``path``.
  """
  figure, axes = report.new_figure(size=(8, 6))
  axis = axes[0, 0]
  for name, curve in curves.items():
    curve = np.asarray(curve, np.float64)
    if curve.ndim == 2:
      curve = curve.mean(axis=0)
    axis.plot(np.arange(len(curve)), curve, label=name, linewidth=2, alpha=0.8)
  if prior_shape is not None:
    prior = np.asarray(gaussian_radial_log_amplitude(*prior_shape))
    axis.plot(np.arange(len(prior)), prior, 'k--', label='Gaussian prior', linewidth=1.5)
  axis.set_xlabel('spatial frequency radius (cycles per image)')
  axis.set_ylabel('log10 mean |FFT| amplitude')
  axis.set_title(title)
  axis.legend()
  axis.grid(True, alpha=0.3)
  return report.save_figure(figure, path)


def collapse_report(x_t: Array, x_src: Array | None = None, scale: float = 1.0) -> dict[str, float]:
  """Every noise diagnostic, averaged over the batch, as Python floats.

  Keys: ``hf_power_ratio``, ``lf_power_ratio``, ``dc_power_ratio`` (on ``x_T / scale``) and
  ``lag1_decorrelation``; with ``x_src`` also ``source_decorrelation`` and
  ``lowpass_structure_corr`` (here the low-frequency imprint of the source on the latent, about 0
  for independent noise); ``pca_effective_rank`` when the batch has at least 2 maps. The values
  a Gaussian latent gives: 1, 1, 1, ~1, ~1, ~0 and :func:`gaussian_pca_effective_rank` ``(B,
  H W C)`` (0.934 for 200 maps of 32x32x3; not 1). Library definitions (see the module
  docstring).

  Args:
    x_t: inverted latents ``[B, H, W, C]``.
    x_src: clean sources in the same space and shape, or None.
    scale: prior std at the inversion end (see :func:`hf_power_ratio`).
  """
  x_t = jnp.asarray(x_t, jnp.float32)
  report = {
      'hf_power_ratio': hf_power_ratio(x_t, scale),
      'lf_power_ratio': lf_power_ratio(x_t, scale),
      'dc_power_ratio': dc_power_ratio(x_t, scale),
      'lag1_decorrelation': lag1_decorrelation(x_t),
  }
  if x_src is not None:
    x_src = jnp.asarray(x_src, jnp.float32)
    report['source_decorrelation'] = source_decorrelation(x_t, x_src)
    report['lowpass_structure_corr'] = lowpass_structure_corr(x_t, x_src)
  if x_t.shape[0] >= 2:
    report['pca_effective_rank'] = pca_effective_rank(x_t)
  return {name: float(np.mean(np.asarray(value))) for name, value in report.items()}


def write_inversion_report(output: str, noise: list, sources: list, names: list, *,
                           scale: float, codec=None) -> str:
  """Writes inverted noise maps and their diagnostics to the folder ``output``.

  Files: ``inverted.npz`` (``noise`` ``[M, h, w, c]``, ``names``, ``scale`` and every value of
  :func:`collapse_report`), ``noise.png`` (each input next to its noise / (3 scale), clipped)
  and ``spectrum.png`` (:func:`radial_log_amplitude` of noise / scale against N(0, I)). Maps of
  mixed sizes are saved as ``noise_<i>`` arrays alone (no diagnostics, no figures).

  Args:
    output: an existing folder.
    noise: M inverted maps, float ``[h, w, c]`` each, in the model space.
    sources: the M inputs, float images ``[H, W, 3]`` in ``[-1, 1]``.
    names: the M inputs' file names.
    scale: the prior std at the inversion end (EDM: ``sigma_max``; DDPM, flow: 1).
    codec: a latent run's :class:`~phipd_jax.latent.Codec` (None: pixel space): the diagnostics
      compare the noise with the inputs' latents, and ``noise.png`` shows its first three
      channels upsampled to the image size.

  Returns:
    The diagnostics as one line (``'hf_power_ratio 0.981, ...'``), or ``'mixed sizes, no
    diagnostics'``.
  """
  from phipd_jax import writers  # pylint: disable=g-import-not-at-top
  report = {}
  if len({n.shape for n in noise}) == 1:
    stacked, images = np.stack(noise), np.stack(sources)
    latents = images if codec is None else np.asarray(codec.encode(jnp.asarray(images)))
    report = collapse_report(jnp.asarray(stacked), jnp.asarray(latents), scale)
    np.savez(os.path.join(output, 'inverted.npz'), noise=stacked, names=np.array(names),
             scale=scale, **{k: np.float32(v) for k, v in report.items()})
    shown = np.clip(stacked / (3 * scale), -1, 1)
    if codec is not None:
      factor = codec.downsample
      shown = np.repeat(np.repeat(shown[..., :3], factor, axis=1), factor, axis=2)
    writers.save_png(os.path.join(output, 'noise.png'),
                     writers.labelled_grid(images, shown, names, 'input | inverted noise / 3 sigma'))
    curves = {'inverted noise': np.asarray(radial_log_amplitude(jnp.asarray(stacked / scale),
                                                                average=True))}
    plot_radial_spectra(curves, os.path.join(output, 'spectrum.png'),
                        title=f'{len(names)} inverted maps vs N(0, I)',
                        prior_shape=stacked.shape[1:])
  else:
    np.savez(os.path.join(output, 'inverted.npz'),
             **{f'noise_{i}': n for i, n in enumerate(noise)}, names=np.array(names))
  return ', '.join(f'{k} {v:.3f}' for k, v in report.items()) or 'mixed sizes, no diagnostics'
