"""Evaluation metrics: sliced Wasserstein distance on Laplacian-pyramid patches, spectra."""

from phipd_jax.evaluation.spectra import (high_frequency_share, radial_power_spectrum,
                                          spectrum_distance)
from phipd_jax.evaluation.distribution import laplacian_pyramid, patch_descriptors, sliced_wasserstein, swd
