"""The Flax FID Inception against pytorch-fid's network on the same (random) weights."""

import os

import jax
import numpy as np
import pytest

from phipd_jax import sharding
from phipd_jax.evaluation import inception

import fid_reference


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  state = fid_reference.random_state_dict(seed=0)
  path = str(tmp_path_factory.mktemp('fid') / inception.WEIGHTS_FILE)
  return state, fid_reference.save_pth(state, path)


@pytest.fixture(scope='module')
def net(weights):
  return inception.extractor(weights[1])


def _relative(a, b):
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_features_equal_pytorch_fid(weights, net, monkeypatch):
  """pool, logits and sFID features within 1e-4 relative of pytorch-fid's network, from 32x32
  images (the bilinear resize to 299 included) and from 299x299 images (no resize)."""
  state, path = weights
  reference = fid_reference.reference_network(path, monkeypatch)
  rng = np.random.default_rng(1)
  for size in (32, 299):
    images = rng.uniform(0.0, 1.0, (2, size, size, 3)).astype(np.float32)
    ours = inception.features(net, [images], batch_size=2)
    expected = fid_reference.reference_features(reference, images)
    expected['logits'] = expected['pool'] @ state['fc.weight'].T.astype(np.float64)
    for kind in inception.FEATURE_KINDS:
      assert ours[kind].shape == expected[kind].shape
      assert _relative(ours[kind], expected[kind]) < 1e-4, (size, kind)
    # The features are not degenerate: images differ, activations are O(1).
    assert np.std(expected['pool']) > 1e-2


def test_batching_and_padding_do_not_change_features(net):
  """uint8 input equals its float /255; any grouping and the zero padding give the same rows."""
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
  whole = inception.features(net, [images], batch_size=8)
  parts = inception.features(net, [images[:2], images[2:3], images[3:]], batch_size=2)
  floats = inception.features(net, [images.astype(np.float32) / 255.0], batch_size=8)
  for kind in inception.FEATURE_KINDS:
    np.testing.assert_allclose(parts[kind], whole[kind], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(floats[kind], whole[kind])
  # Mixed sizes are grouped by size but come back in input order.
  wide = rng.integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
  mixed = inception.features(net, [images[:1], wide[:1], images[1:2], wide[1:]], batch_size=2)
  alone = inception.features(net, [wide], batch_size=2)
  np.testing.assert_allclose(mixed['pool'][[0, 2]], whole['pool'][:2], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(mixed['pool'][[1, 3]], alone['pool'], rtol=1e-5, atol=1e-5)


def test_bad_weights_are_named_before_any_work(tmp_path, weights, monkeypatch):
  state, _ = weights
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  with pytest.raises(inception.WeightsError, match='--fid_weights FILE or set PHIPD_FID_WEIGHTS'):
    inception.resolve_weights(None)
  with pytest.raises(inception.WeightsError, match='does not exist'):
    inception.resolve_weights(str(tmp_path / 'nope.pth'))
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / 'from_env.pth'))
  with pytest.raises(inception.WeightsError, match='from_env.pth does not exist'):
    inception.resolve_weights(None)

  garbage = tmp_path / 'garbage.pth'
  garbage.write_bytes(b'not a torch file')
  with pytest.raises(inception.WeightsError, match='not a readable torch weights file'):
    inception.load(str(garbage))
  broken = dict(state)
  del broken['Mixed_6d.branch1x1.conv.weight']
  broken['Mixed_7c.extra.weight'] = np.zeros(3, np.float32)
  broken['fc.weight'] = np.zeros((1000, 2048), np.float32)  # torchvision's 1000 classes.
  path = fid_reference.save_pth(broken, str(tmp_path / 'broken.pth'))
  with pytest.raises(inception.WeightsError) as error:
    inception.load(path)
  message = str(error.value)
  assert 'Mixed_6d.branch1x1.conv.weight' in message and 'Mixed_7c.extra.weight' in message
  assert 'fc.weight: file (1000, 2048) vs network (1008, 2048)' in message


def test_npz_weights_load_like_the_pth(tmp_path, weights, net):
  state, _ = weights
  path = str(tmp_path / 'fid.npz')
  inception.save_npz(state, path)
  images = np.random.default_rng(3).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
  from_npz = inception.features(inception.extractor(path), [images], batch_size=2)
  from_pth = inception.features(net, [images], batch_size=2)
  for kind in inception.FEATURE_KINDS:
    np.testing.assert_array_equal(from_npz[kind], from_pth[kind])


def test_extractor_shards_the_batch_over_the_mesh(weights):
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  net = inception.extractor(weights[1], mesh)
  images = np.zeros((2, 8, 8, 3), np.float32)
  out = net(images)
  assert out['pool'].sharding.is_equivalent_to(sharding.batch_sharding(mesh), 2)
  assert os.path.isabs(net.weights) and len(net.weights_sha256) == 64


def test_features_sharded_over_8_devices_equal_one_device(weights, net, tmp_path):
  """The same images on an 8-device mesh (XLA_FLAGS host devices, a fresh process): the batch
  split 8 ways gives the one-device features."""
  import subprocess
  import sys
  images = np.random.default_rng(4).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
  np.save(tmp_path / 'images.npy', images)
  script = (
      'import sys, numpy as np, jax\n'
      'from phipd_jax.evaluation import inception\n'
      'assert jax.device_count() == 8\n'
      'net = inception.extractor(sys.argv[1])\n'
      'out = inception.features(net, [np.load(sys.argv[2])], batch_size=8)\n'
      'np.save(sys.argv[3], out["pool"])\n')
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  subprocess.run([sys.executable, '-c', script, weights[1], str(tmp_path / 'images.npy'),
                  str(tmp_path / 'pool.npy')], check=True, env=env, timeout=600)
  expected = inception.features(net, [images], batch_size=8)['pool']
  np.testing.assert_allclose(np.load(tmp_path / 'pool.npy'), expected, rtol=1e-5, atol=1e-5)
