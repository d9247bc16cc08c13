"""Shared test helpers (imported as ``from tests import helpers`` is not used: tests import this
module by path through conftest's sys.path)."""

import jax
import numpy as np


def assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_LOAD_AND_SAMPLE = r'''
import json, sys
import numpy as np
try:
  import configs  # noqa: F401
  sys.exit('configs/ is importable: the check needs a clean path')
except ImportError:
  pass
import jax
import phipd_jax
from phipd_jax import saved_run
_, exp, restored = saved_run.load_run(sys.argv[1])
samples = exp.sampler().generate(restored['ema_params'], jax.random.key(0),
                                 (2,) + exp.image_shape)
np.save(sys.argv[2], np.asarray(samples))
print(json.dumps({'package': phipd_jax.__file__, 'latent': exp.is_latent}))
'''


def load_and_sample_elsewhere(site: str, workdir: str, cwd: str):
  """Loads ``workdir`` and generates 2 samples (key 0) in a fresh Python whose only copy of the
  library is ``site`` (a non-editable install) and whose working directory is ``cwd``.

  Returns:
    ``(report dict, samples [2, H, W, C])``.
  """
  import json
  import os
  import subprocess
  import sys
  out = os.path.join(cwd, 'samples.npy')
  env = dict(os.environ, PYTHONPATH=site)
  result = subprocess.run([sys.executable, '-c', _LOAD_AND_SAMPLE, os.path.abspath(workdir), out],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1]), np.load(out)


def random_diffusers_vae(seed: int, **config):
  """A random diffusers ``AutoencoderKL(**config)`` in eval mode, every weight perturbed:
  GroupNorm affines away from (1, 0), biases nonzero, conv / linear weights ~ N(0, 1/fan_in) (q
  and k wider, so the attention is far from uniform). Needs torch and diffusers."""
  import diffusers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  levels = len(config['block_out_channels'])
  vae = diffusers.AutoencoderKL(down_block_types=('DownEncoderBlock2D',) * levels,
                                up_block_types=('UpDecoderBlock2D',) * levels, **config)
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, p in vae.named_parameters():
      noise = torch.randn(p.shape, generator=generator)
      if p.ndim == 1:
        p.copy_(1 + 0.2 * noise if key.endswith('weight') else 0.2 * noise)
      else:
        gain = 1.5 if ('.to_q.' in key or '.to_k.' in key) else 1.0
        p.copy_(gain * noise / np.sqrt(np.prod(p.shape[1:])))
  return vae.eval()
