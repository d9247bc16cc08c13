"""Baseline twin of ``edges2shoes_phipd``: the same model and budget with Gaussian noise.

  python train.py --config configs/edges2shoes_gaussian.py --workdir runs/edges2shoes_gaussian
  python train.py --config configs/edges2shoes_gaussian.py:cpu --workdir runs/e2s_gaussian_cpu
"""

from configs import edges2shoes_phipd


def get_config(arg=None):
  config = edges2shoes_phipd.get_config(arg)
  config.noise.kind = 'gaussian'
  return config
