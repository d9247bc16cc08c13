"""Denoising networks: ``model(x_t [B, H, W, C], t [B], y=None) -> prediction``."""

from phipd_jax.models.dit import DIT_SIZES, DiT, count_parameters, dit
from phipd_jax.models.jit import JIT_SIZES, JiT, SpectralForcing, jit_model
