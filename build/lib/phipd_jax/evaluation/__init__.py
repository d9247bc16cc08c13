"""Evaluation metrics: distribution (SWD, fd_vgg), structure (edges, gradients, SSIM), spectra,
spectral-collapse diagnostics of inverted noise (:mod:`phipd_jax.evaluation.collapse`).

The translation study (tasks, method grid, metric rows) is :mod:`phipd_jax.evaluation.translation`.
"""

from phipd_jax.evaluation.collapse import (band_masks, band_power, collapse_report, dc_power_ratio,
                                           gaussian_radial_log_amplitude, hf_power_ratio,
                                           hf_texture_ratio, lag1_decorrelation, lf_power_ratio,
                                           lowpass_structure_corr, pca_effective_rank,
                                           plot_radial_spectra, radial_log_amplitude,
                                           source_decorrelation)
from phipd_jax.evaluation.distribution import (laplacian_pyramid, patch_descriptors,
                                               sliced_wasserstein, swd)
from phipd_jax.evaluation.perceptual import fd_vgg, frechet_distance, lpips, vgg_features
from phipd_jax.evaluation.spectra import (band_energy_ratio, high_frequency_share,
                                          radial_power_spectrum, spectrum_distance)
from phipd_jax.evaluation.structure import (boundary_map, canny_edges, edge_alignment,
                                            gradient_correlation, gradient_magnitude, grayscale,
                                            line_map, psnr, ssim)
