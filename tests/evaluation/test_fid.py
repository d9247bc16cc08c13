"""FID, KID, IS and precision / recall against the reference packages and their definitions."""

import numpy as np
import pytest
import torch
from pytorch_fid import fid_score
from torch_fidelity import metric_isc, metric_kid

from phipd_jax.evaluation import fid


def _features(seed, n, d=64, shift=0.0):
  """``n`` draws of one correlated Gaussian per ``d`` (fixed mixing), shifted by ``shift``."""
  mixing = np.random.default_rng(d).normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
  return np.random.default_rng(seed).normal(size=(n, d)) @ mixing + shift


def test_frechet_distance_equals_pytorch_fid():
  """Same statistics -> pytorch-fid's calculate_frechet_distance: its own procedure
  (method='sqrtm') to 1e-9 relative, the eigendecomposition (default) to 1e-6, with N > D and
  with singular covariances (N < D, the CPU-scale case)."""
  for n in (200, 40):
    a, b = _features(0, n), _features(1, n, shift=0.3)
    mu_a, sigma_a = fid.statistics(a)
    mu_b, sigma_b = fid.statistics(b)
    np.testing.assert_allclose(mu_a, a.mean(0))
    np.testing.assert_allclose(sigma_a, np.cov(a, rowvar=False))
    expected = fid_score.calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b, method='sqrtm') == pytest.approx(
        expected, rel=1e-9)
    assert fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(expected, rel=1e-6)
  assert abs(fid.fid(a, a)) < 1e-5 * np.trace(sigma_a)  # sqrtm of a singular product.


def test_frechet_distance_of_known_gaussians():
  """Diagonal Gaussians: |mu1 - mu2|^2 + sum (s1 - s2)^2 for standard deviations s1, s2."""
  mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
  std1, std2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
  for method in ('eigh', 'sqrtm'):
    value = fid.frechet_distance(mu1, np.diag(std1**2), mu2, np.diag(std2**2), method=method)
    assert value == pytest.approx(5.0 + 1.0 + 0.0 + 4.0, rel=1e-12)
  with pytest.raises(ValueError, match='shapes differ'):
    fid.frechet_distance(mu1, np.eye(3), np.zeros(4), np.eye(4))


def test_kid_equals_torch_fidelity():
  """The unbiased polynomial-kernel MMD over the same random subsets as torch-fidelity."""
  a, b = _features(2, 120), _features(3, 150, shift=0.2)
  ours = fid.kid(a, b, num_subsets=10, subset_size=50, seed=7)
  theirs = metric_kid.kid_features_to_metric(
      torch.from_numpy(a), torch.from_numpy(b), kid_subsets=10, kid_subset_size=50, rng_seed=7,
      kid_kernel='poly', kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
      kid_kernel_poly_coef0=1, verbose=False)
  assert ours['kid_mean'] == pytest.approx(theirs['kernel_inception_distance_mean'], rel=1e-9)
  assert ours['kid_std'] == pytest.approx(theirs['kernel_inception_distance_std'], rel=1e-9)
  # More subset rows than samples: lowered to min(N1, N2), recorded.
  assert fid.kid(a, b, num_subsets=2, subset_size=1000)['kid_subset_size'] == 120


def test_kid_is_unbiased_near_zero_for_one_distribution():
  """Two samples of one distribution: KID's mean is within its spread of 0 (MMD^2 unbiased),
  while a shifted set is far above it."""
  same = fid.kid(_features(4, 300), _features(5, 300), num_subsets=20, subset_size=100)
  shifted = fid.kid(_features(4, 300), _features(5, 300, shift=1.0), num_subsets=20,
                    subset_size=100)
  assert abs(same['kid_mean']) < 3 * same['kid_std'] + 1e-3
  assert shifted['kid_mean'] > 10 * abs(same['kid_mean']) + 10 * same['kid_std']


def test_inception_score_equals_torch_fidelity_and_known_values():
  rng = np.random.default_rng(6)
  logits = rng.normal(scale=3.0, size=(100, 1008))
  ours = fid.inception_score(logits, splits=5)
  theirs = metric_isc.isc_features_to_metric(torch.from_numpy(logits), splits=5, shuffle=False)
  assert ours['is_mean'] == pytest.approx(theirs['inception_score_mean'], rel=1e-9)
  assert ours['is_std'] == pytest.approx(theirs['inception_score_std'], rel=1e-9)
  # Confident and uniformly spread over C classes -> IS = C; identical predictions -> IS = 1.
  one_hot = np.where(np.eye(10)[np.arange(100) % 10] > 0, 50.0, 0.0)
  assert fid.inception_score(one_hot, splits=1)['is_mean'] == pytest.approx(10.0, rel=1e-6)
  assert fid.inception_score(np.tile(logits[:1], (50, 1)), 1)['is_mean'] == pytest.approx(1.0)


def _brute_force_precision_recall(real, fake, k):
  def radii(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, k]  # Index 0 is the point itself.
  def covered(queries, centres, r):
    d = np.linalg.norm(queries[:, None] - centres[None], axis=-1)
    return np.mean(np.any(d <= r[None], axis=1))
  return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def test_precision_recall_known_answers():
  real = _features(7, 200, d=8)
  far = real + 100.0
  assert fid.precision_recall(real, real) == {'precision': 1.0, 'recall': 1.0, 'pr_k': 3}
  assert fid.precision_recall(real, far)[('precision')] == 0.0
  assert fid.precision_recall(real, far)['recall'] == 0.0
  # Half the samples copy references, half are far away: precision exactly 1/2.
  half = np.concatenate([real[:100], far[100:]])
  assert fid.precision_recall(real, half)['precision'] == 0.5
  # Mode dropping: samples cover only one of two real clusters -> recall ~ 1/2, precision 1.
  clusters = np.concatenate([_features(8, 100, d=8), _features(9, 100, d=8, shift=50.0)])
  dropped = fid.precision_recall(clusters, _features(10, 200, d=8))
  assert dropped['precision'] > 0.9 and 0.4 < dropped['recall'] <= 0.5


def test_precision_recall_equal_brute_force_definition():
  real, fake = _features(11, 150, d=16), _features(12, 130, d=16, shift=0.5)
  expected = _brute_force_precision_recall(real, fake, 3)
  result = fid.precision_recall(real, fake)
  assert (result['precision'], result['recall']) == pytest.approx(expected, abs=1e-12)
  with pytest.raises(ValueError, match='k = 3 needs more than k points'):
    fid.manifold_radii(real[:3])
