"""The reference side of the FID tests: pytorch-fid's own network with random weights.

The weights cannot be downloaded here, so a random state dict in pytorch-fid's key layout stands
in for ``pt_inception-2015-12-05-6726825d.pth``: He-normal convolutions and BatchNorm statistics
near identity keep every activation O(1) through the 94 layers (so a mistake anywhere shows).
pytorch-fid builds its network and calls ``load_state_dict_from_url``; the tests point that at
the saved file, so torch's strict ``load_state_dict`` also checks the layout.
"""

import numpy as np
import torch
from pytorch_fid import inception as pytorch_fid_inception

from phipd_jax.evaluation import inception


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  state = {}
  for key, shape in inception.state_dict_shapes().items():
    if key.endswith('conv.weight'):
      fan_in = shape[1] * shape[2] * shape[3]
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif key.endswith('bn.weight'):
      value = rng.uniform(0.8, 1.2, shape)
      state[key.replace('weight', 'num_batches_tracked')] = np.array(0, np.int64)
    elif key.endswith('running_var'):
      value = rng.uniform(0.5, 1.5, shape)
    elif key == 'fc.weight':
      value = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
    else:  # BatchNorm bias and running mean, fc bias.
      value = rng.normal(0.0, 0.1, shape)
    state[key] = value.astype(np.float32) if value.dtype == np.float64 else value
  return state


def save_pth(state: dict, path: str) -> str:
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
  return path


def reference_network(path: str, monkeypatch) -> pytorch_fid_inception.InceptionV3:
  """pytorch-fid's ``InceptionV3([3])`` (2048-d pool) with the weights of ``path``."""
  monkeypatch.setattr(pytorch_fid_inception, 'load_state_dict_from_url',
                      lambda *a, **k: torch.load(path, weights_only=True))
  return pytorch_fid_inception.InceptionV3([3]).eval()


def reference_features(net, images: np.ndarray) -> dict[str, np.ndarray]:
  """pool and spatial (Mixed_6d.branch1x1, first 7 channels, NHWC
  flattened) of float ``[N, H, W, 3]`` images in [0, 1], from the torch network."""
  captured = {}
  mixed_6d = net.blocks[2][6]  # Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, ...
  hook = mixed_6d.branch1x1.register_forward_hook(
      lambda module, args, out: captured.__setitem__('spatial', out))
  with torch.no_grad():
    pool = net(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))[0]
  hook.remove()
  pool = pool[:, :, 0, 0].numpy().astype(np.float64)
  spatial = captured['spatial'][:, :inception.SPATIAL_CHANNELS].permute(0, 2, 3, 1)
  return {'pool': pool, 'spatial': spatial.reshape(len(images), -1).numpy().astype(np.float64)}
