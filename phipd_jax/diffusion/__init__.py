"""Forward processes, the training objective, samplers, guidance and inversion (t = 0 data)."""

from phipd_jax.diffusion.guidance import (OVG_PRESETS, OVGTerms, classifier_free_guidance,
                                          clip_denoised, ovg_corrections, ovg_step, ovg_terms)
from phipd_jax.diffusion.inversion import invert, inversion_grid, ovg_invert
from phipd_jax.diffusion.objectives import LOSS_SPACES, diffusion_loss
from phipd_jax.diffusion.processes import (DDPM, EDM, PREDICTIONS, PROCESSES, FlowMatching,
                                           Process, alpha_bar_schedule)
from phipd_jax.diffusion.samplers import (denoiser, euler_step, heun_step, integrate,
                                          make_denoiser, network_evaluations, sample_from, solve)
