"""Forward processes, the training objective and samplers (t = 0 data, t = 1 noise)."""

from phipd_jax.diffusion.objectives import LOSS_SPACES, diffusion_loss
from phipd_jax.diffusion.processes import (DDPM, PREDICTIONS, FlowMatching, Process,
                                           alpha_bar_schedule, process_from_config)
from phipd_jax.diffusion.samplers import (ddim_sample, denoiser, flow_sample, generate,
                                          phipd_translate, sample_from, sdedit)
