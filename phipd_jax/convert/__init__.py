"""Pretrained PyTorch checkpoints into the library's models and run directories.

``reading`` (files -> named arrays, checked assignment), ``dit`` (facebookresearch DiT,
diffusers DiT), ``jit`` (JiT, Spectral Forcing), ``vae`` (diffusers AutoencoderKL), ``runs``
(:func:`phipd_jax.convert.runs.convert`: a checkpoint -> a run directory; ``convert.py``).
"""
