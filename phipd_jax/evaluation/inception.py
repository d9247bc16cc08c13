"""The FID Inception network (InceptionV3, TensorFlow FID graph variant) in Flax NNX.

Source: Szegedy et al., *Rethinking the Inception Architecture for Computer Vision*
(arXiv:1512.00567) for InceptionV3; Heusel et al., *GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium* (arXiv:1706.08500) for FID, whose reference implementation
uses the TensorFlow graph ``inception-2015-12-05``. The weights are the port of that graph that
the pytorch-fid project publishes (``pt_inception-2015-12-05-6726825d.pth``): torchvision's
InceptionV3 with 1008 classes and the FID graph's four differences, reproduced here:

* ``Mixed_5b..5d`` (block A), ``Mixed_6b..6e`` (block C) and ``Mixed_7b`` (block E): the pooling
  branch averages 3x3 windows **without** counting the zero padding (TensorFlow's average pool);
* ``Mixed_7c`` (the second block E): the pooling branch is a 3x3 **max** pool.

Preprocessing is pytorch-fid's: images in ``[0, 1]`` resized to 299x299 with bilinear
interpolation (half-pixel centres, no antialiasing: ``F.interpolate(align_corners=False)``),
then scaled to ``[-1, 1]``. Outputs (:func:`features`):

* ``pool``: the 2048-d global average pool (FID, KID, precision / recall);
* ``logits``: ``pool @ fc.weight.T``, 1008 classes **without** the bias, as the Inception Score
  code of Salimans et al. (improved-gan), the ADM evaluator and torch-fidelity compute them;
* ``spatial``: the first 7 channels of ``Mixed_6d``'s 1x1 branch (the TensorFlow graph's
  ``mixed_6/conv``), ``17 x 17 x 7 = 2023`` values in NHWC order: the sFID features of
  Nash et al., *Generating Images with Sparse Representations* (arXiv:2103.03841), as the ADM
  evaluator (Dhariwal & Nichol, arXiv:2105.05233) extracts them.

The weights file is read with ``torch.load`` (``weights_only=True``), so reading a ``.pth`` needs
torch (``pip install -e .[fid]``); nothing else here imports torch. ``.npz`` files with the same
keys (:func:`save_npz`) need nothing more.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Iterable, Optional

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from phipd_jax import sharding

Array = jax.Array

IMAGE_SIZE = 299  # Pixels: the network's input side after the resize.
POOL_DIM = 2048
NUM_LOGITS = 1008
SPATIAL_CHANNELS = 7  # sFID keeps the first 7 of mixed_6/conv's 192 channels.
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS
BN_EPSILON = 1e-3  # torchvision's BasicConv2d BatchNorm2d(eps=0.001).
WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_ENV = 'PHIPD_FID_WEIGHTS'
FEATURE_KINDS = ('pool', 'logits', 'spatial')


def _pairs(value) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv(nnx.Module):
  """Convolution without bias, BatchNorm with running statistics, ReLU (``BasicConv2d``).

  ``kernel`` and ``padding`` are torch's ``(height, width)`` (or one int for both).
  """

  def __init__(self, in_channels: int, out_channels: int, kernel, stride: int = 1,
               padding=0, *, rngs: nnx.Rngs):
    pad_h, pad_w = _pairs(padding)
    self.conv = nnx.Conv(in_channels, out_channels, _pairs(kernel), strides=stride,
                         padding=((pad_h, pad_h), (pad_w, pad_w)), use_bias=False, rngs=rngs)
    self.bn = nnx.BatchNorm(out_channels, epsilon=BN_EPSILON, use_running_average=True,
                            rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return nnx.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: Array) -> Array:
  """TensorFlow's 3x3 stride-1 'SAME' average pool: the padding is not counted."""
  return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                      count_include_pad=False)


def _max_pool_3x3(x: Array, stride: int, padding: int = 0) -> Array:
  return nnx.max_pool(x, (3, 3), strides=(stride, stride),
                      padding=((padding, padding), (padding, padding)))


class InceptionA(nnx.Module):
  """``Mixed_5b..5d`` (35x35): 1x1, 5x5, double 3x3 and pooled 1x1 branches."""

  def __init__(self, in_channels: int, pool_features: int, *, rngs: nnx.Rngs):
    self.branch1x1 = BasicConv(in_channels, 64, 1, rngs=rngs)
    self.branch5x5_1 = BasicConv(in_channels, 48, 1, rngs=rngs)
    self.branch5x5_2 = BasicConv(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_channels, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv(in_channels, pool_features, 1, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
    branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([self.branch1x1(x), branch5x5, branch3x3dbl,
                            self.branch_pool(_avg_pool_3x3(x))], axis=-1)


class InceptionB(nnx.Module):
  """``Mixed_6a``: 35x35 -> 17x17 reduction."""

  def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
    self.branch3x3 = BasicConv(in_channels, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_channels, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([self.branch3x3(x), branch3x3dbl, _max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nnx.Module):
  """``Mixed_6b..6e`` (17x17): factorised 7x7 branches. Also returns the 1x1 branch (sFID)."""

  def __init__(self, in_channels: int, channels_7x7: int, *, rngs: nnx.Rngs):
    c7 = channels_7x7
    self.branch1x1 = BasicConv(in_channels, 192, 1, rngs=rngs)
    self.branch7x7_1 = BasicConv(in_channels, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv(in_channels, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = BasicConv(in_channels, 192, 1, rngs=rngs)

  def __call__(self, x: Array) -> tuple[Array, Array]:
    branch1x1 = self.branch1x1(x)
    branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    branch7x7dbl = x
    for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                  self.branch7x7dbl_4, self.branch7x7dbl_5):
      branch7x7dbl = layer(branch7x7dbl)
    out = jnp.concatenate([branch1x1, branch7x7, branch7x7dbl,
                           self.branch_pool(_avg_pool_3x3(x))], axis=-1)
    return out, branch1x1


class InceptionD(nnx.Module):
  """``Mixed_7a``: 17x17 -> 8x8 reduction."""

  def __init__(self, in_channels: int, *, rngs: nnx.Rngs):
    self.branch3x3_1 = BasicConv(in_channels, 192, 1, rngs=rngs)
    self.branch3x3_2 = BasicConv(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv(in_channels, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
    branch7x7x3 = x
    for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                  self.branch7x7x3_4):
      branch7x7x3 = layer(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nnx.Module):
  """``Mixed_7b`` (average pool branch) and ``Mixed_7c`` (max pool branch), 8x8."""

  def __init__(self, in_channels: int, max_pool: bool, *, rngs: nnx.Rngs):
    self.max_pool = max_pool
    self.branch1x1 = BasicConv(in_channels, 320, 1, rngs=rngs)
    self.branch3x3_1 = BasicConv(in_channels, 384, 1, rngs=rngs)
    self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_channels, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = BasicConv(in_channels, 192, 1, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    branch3x3 = self.branch3x3_1(x)
    branch3x3 = jnp.concatenate([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)],
                                axis=-1)
    branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    branch3x3dbl = jnp.concatenate(
        [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], axis=-1)
    pooled = _max_pool_3x3(x, 1, padding=1) if self.max_pool else _avg_pool_3x3(x)
    return jnp.concatenate([self.branch1x1(x), branch3x3, branch3x3dbl,
                            self.branch_pool(pooled)], axis=-1)


class FIDInceptionV3(nnx.Module):
  """InceptionV3 as the FID graph computes it; attribute names follow the torch state dict."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, rngs=rngs)
    self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
    self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
    self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
    self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = InceptionE(1280, max_pool=False, rngs=rngs)
    self.Mixed_7c = InceptionE(2048, max_pool=True, rngs=rngs)
    self.fc = nnx.Linear(POOL_DIM, NUM_LOGITS, rngs=rngs)

  def __call__(self, x: Array) -> dict[str, Array]:
    """``x``: float32 ``[B, 299, 299, 3]`` in ``[-1, 1]`` -> ``{'pool', 'logits', 'spatial'}``."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = _max_pool_3x3(x, 2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = _max_pool_3x3(x, 2)
    x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
    x = self.Mixed_6a(x)
    x, _ = self.Mixed_6b(x)
    x, _ = self.Mixed_6c(x)
    x, mixed_6_conv = self.Mixed_6d(x)
    x, _ = self.Mixed_6e(x)
    x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
    pool = jnp.mean(x, axis=(1, 2))
    spatial = mixed_6_conv[..., :SPATIAL_CHANNELS]
    return {'pool': pool,
            'logits': pool @ self.fc.kernel[...],  # Without the bias (see the module note).
            'spatial': spatial.reshape(spatial.shape[0], -1)}


def preprocess(images: Array) -> Array:
  """pytorch-fid's input transform: ``[0, 1]`` -> 299x299 bilinear -> ``[-1, 1]``.

  Args:
    images: float ``[B, H, W, 3]`` in ``[0, 1]`` (any size; 299x299 passes unchanged).

  Returns:
    float32 ``[B, 299, 299, 3]`` in ``[-1, 1]``.
  """
  images = jnp.asarray(images, jnp.float32)
  if images.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
    images = jax.image.resize(images, (images.shape[0], IMAGE_SIZE, IMAGE_SIZE, 3), 'bilinear',
                              antialias=False)
  return 2.0 * images - 1.0


# ----------------------------------------------------------------------------------------------
# Weights: torch state-dict names <-> NNX state paths.

def _torch_layout(model: FIDInceptionV3) -> dict[str, tuple[tuple, str, tuple[int, ...]]]:
  """``{torch key: (nnx path, kind, torch shape)}`` for every array of the state dict.

  kinds: 'conv' (OIHW -> HWIO), 'linear' (out x in -> in x out), 'copy'.
  """
  layout = {}
  names = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
           'var': 'running_var'}
  for path, value in nnx.to_flat_state(nnx.state(model)):
    *module, leaf = (str(p) for p in path)
    key = '.'.join(module + [names[leaf]])
    shape = tuple(value.shape)
    if module[-1] == 'conv':
      kind, shape = 'conv', (shape[3], shape[2], shape[0], shape[1])
    elif module[-1] == 'fc' and leaf == 'kernel':
      kind, shape = 'linear', (shape[1], shape[0])
    else:
      kind = 'copy'
    layout[key] = (tuple(path), kind, shape)
  return layout


def abstract_model() -> FIDInceptionV3:
  """The network's structure with shapes only (no arrays allocated)."""
  return nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=1)
def _layout() -> dict[str, tuple[tuple, str, tuple[int, ...]]]:
  return _torch_layout(abstract_model())


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
  """The torch state dict the weights file holds: ``{key: shape}`` (``num_batches_tracked``
  entries, which the file also has, are ignored on load)."""
  return {key: shape for key, (_, _, shape) in _layout().items()}


class WeightsError(ValueError):
  """The FID weights file is missing, unreadable, or not in pytorch-fid's layout."""


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  if path.endswith('.npz'):
    with np.load(path) as data:
      return {key: data[key] for key in data.files}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WeightsError(f'{path}: reading a .pth weights file needs torch (pip install -e '
                       '.[fid]), or convert it once to .npz with phipd_jax.evaluation.inception'
                       '.save_npz on a machine that has torch') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise WeightsError(f'{path}: not a readable torch weights file ({error})') from None
  if not isinstance(state, dict):
    raise WeightsError(f'{path}: holds a {type(state).__name__}, not a state dict')
  return {key: value.numpy() for key, value in state.items() if hasattr(value, 'numpy')}


def check_state_dict(state: dict, path: str = 'weights') -> None:
  """Raises :class:`WeightsError` naming missing, unexpected or mis-shaped keys."""
  expected = state_dict_shapes()
  present = {k for k in state if not k.endswith('num_batches_tracked')}
  missing = sorted(set(expected) - present)
  unexpected = sorted(present - set(expected))
  wrong = [f'{k}: file {tuple(np.shape(state[k]))} vs network {expected[k]}'
           for k in sorted(present & set(expected)) if tuple(np.shape(state[k])) != expected[k]]
  problems = []
  if missing:
    problems.append(f'{len(missing)} missing key(s), e.g. {missing[:3]}')
  if unexpected:
    problems.append(f'{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}')
  if wrong:
    problems.append(f'{len(wrong)} shape mismatch(es), e.g. {wrong[:3]}')
  if problems:
    raise WeightsError(f'{path}: not the FID Inception weights in pytorch-fid\'s layout '
                       f'({WEIGHTS_FILE}): ' + '; '.join(problems))


def resolve_weights(path: Optional[str]) -> str:
  """``path``, else ``$PHIPD_FID_WEIGHTS``; raises :class:`WeightsError` when neither names a
  file (before any other work)."""
  path = path or os.environ.get(WEIGHTS_ENV)
  if not path:
    raise WeightsError(
        f'FID needs the Inception weights file {WEIGHTS_FILE} (published by the pytorch-fid '
        'project, a port of the TensorFlow FID graph; it cannot be downloaded here): pass '
        f'--fid_weights FILE or set {WEIGHTS_ENV}')
  if not os.path.isfile(path):
    raise WeightsError(f'FID weights file {path} does not exist (expected {WEIGHTS_FILE})')
  return path


def sha256(path: str) -> str:
  """Hex SHA-256 of a file (recorded next to every FID so results name their weights)."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def load(path: str) -> FIDInceptionV3:
  """The network with the weights of ``path`` (a pytorch-fid ``.pth`` or a :func:`save_npz`
  file), checked key by key before anything is built.

  Raises:
    WeightsError: unreadable file, missing / unexpected keys, or shapes that differ.
  """
  state = _read_state_dict(path)
  check_state_dict(state, path)
  graphdef, params = nnx.split(abstract_model())
  values = {}
  for key, (nnx_path, kind, _) in _layout().items():
    value = np.asarray(state[key], np.float32)
    if kind == 'conv':
      value = value.transpose(2, 3, 1, 0)
    elif kind == 'linear':
      value = value.T
    node = values
    for name in nnx_path[:-1]:
      node = node.setdefault(name, {})
    node[nnx_path[-1]] = jnp.asarray(value)
  nnx.replace_by_pure_dict(params, values)
  return nnx.merge(graphdef, params)


def save_npz(state: dict, path: str) -> None:
  """Writes a checked state dict (``{key: array}``, e.g. from ``torch.load``) as ``.npz``."""
  state = {k: np.asarray(v) for k, v in state.items() if not k.endswith('num_batches_tracked')}
  check_state_dict(state, path)
  np.savez(path, **state)


# ----------------------------------------------------------------------------------------------
# Feature extraction.

@dataclasses.dataclass(frozen=True)
class Extractor:
  """A loaded network and its jit-compiled forward over a device mesh.

  Batches are split over every device of ``mesh`` (data parallel; the weights, 95 MB, are
  replicated). Build with :func:`extractor`.
  """
  graphdef: nnx.GraphDef
  state: nnx.State
  mesh: jax.sharding.Mesh
  weights: str
  weights_sha256: str

  @functools.cached_property
  def _forward(self):
    def forward(state, images):
      model = nnx.merge(self.graphdef, state)
      return model(preprocess(images))
    return jax.jit(forward, out_shardings=sharding.batch_sharding(self.mesh))

  def __call__(self, images: Array) -> dict[str, Array]:
    """``images``: float ``[B, H, W, 3]`` in ``[0, 1]``, ``B`` a multiple of the device count.

    Returns:
      ``{'pool': [B, 2048], 'logits': [B, 1008], 'spatial': [B, 2023]}``, float32.
    """
    images = jax.device_put(jnp.asarray(images, jnp.float32),
                            sharding.batch_sharding(self.mesh))
    return self._forward(self.state, images)


def extractor(weights: Optional[str] = None, mesh: Optional[jax.sharding.Mesh] = None
              ) -> Extractor:
  """Loads the weights (``weights`` or ``$PHIPD_FID_WEIGHTS``) onto every device of ``mesh``
  (default: all devices, data parallel).

  Raises:
    WeightsError: see :func:`resolve_weights` and :func:`load`.
  """
  path = resolve_weights(weights)
  mesh = mesh or sharding.make_mesh()
  graphdef, state = nnx.split(load(path))
  state = jax.device_put(state, sharding.replicated(mesh))
  return Extractor(graphdef, state, mesh, os.path.abspath(path), sha256(path))


def features(net: Extractor, batches: Iterable[np.ndarray], batch_size: int = 50,
             total: Optional[int] = None, progress: Optional[str] = None
             ) -> dict[str, np.ndarray]:
  """Inception features of image batches, float64 numpy ``{'pool', 'logits', 'spatial'}``.

  Args:
    net: from :func:`extractor`.
    batches: iterable of uint8 ``[b, H, W, 3]`` (0-255) or float ``[b, H, W, 3]`` in
      ``[0, 1]`` arrays; any ``b`` and mixed image sizes (regrouped by size into
      ``batch_size`` with zero padding: one compilation per image size).
    batch_size: images per compiled call, rounded up to a multiple of the device count.
    total: number of images, for the progress bar.
    progress: progress-bar label (None: no bar).

  Returns:
    ``pool [N, 2048]``, ``logits [N, 1008]``, ``spatial [N, 2023]``, rows in input order.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  devices = net.mesh.size
  batch_size = -(-batch_size // devices) * devices
  rows = {kind: {} for kind in FEATURE_KINDS}  # Input index -> feature row.
  pending = {}  # Image shape -> (indices, images) not yet run: one compiled shape per size.
  bar = tqdm.tqdm(total=total, desc=progress, unit='img', disable=progress is None,
                  dynamic_ncols=True)

  def run(indices, images):
    count = len(images)
    chunk = np.stack(images)
    if count < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - count, *chunk.shape[1:]),
                                              chunk.dtype)])
    result = net(chunk)
    for kind in FEATURE_KINDS:
      values = np.asarray(result[kind], np.float64)
      rows[kind].update(zip(indices, values[:count]))
    bar.update(count)

  index = 0
  for batch in batches:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
      raise ValueError(f'features: images must be [b, H, W, 3], got {batch.shape}')
    batch = (batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8
             else batch.astype(np.float32))
    for image in batch:
      indices, images = pending.setdefault(image.shape, ([], []))
      indices.append(index)
      images.append(image)
      index += 1
      if len(images) == batch_size:
        run(*pending.pop(image.shape))
  for indices, images in pending.values():
    run(indices, images)
  bar.close()
  if not index:
    raise ValueError('features: no images')
  return {kind: np.stack([values[i] for i in range(index)]) for kind, values in rows.items()}
