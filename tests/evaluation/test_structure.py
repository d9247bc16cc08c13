"""Structure and perceptual metrics with known values (edges, gradients, SSIM/PSNR, LPIPS, fd_vgg).

Also the translation study's reference rows on real held-out data: the ground truth scores
perfectly, a mismatched ground truth does not.
"""

import os
import shutil

import numpy as np
import pytest
from scipy import ndimage

from phipd_jax import evaluation
from phipd_jax.evaluation import translation


def _square(size=32, low=8, high=24, value=0.8):
  image = -np.ones((size, size, 3), np.float32)
  image[low:high, low:high] = value
  return image


def test_edge_alignment_known_values():
  line = np.zeros((1, 32, 32), bool)
  line[0, :, 10] = True
  same = evaluation.edge_alignment(line, line, tolerance=1.0)
  assert same['precision'][0] == same['recall'][0] == same['f'][0] == 1.0
  shifted = np.roll(line, 1, axis=2)  # One pixel over: matched at tolerance 1, not at 0.5.
  assert evaluation.edge_alignment(shifted, line, tolerance=1.0)['f'][0] == 1.0
  assert evaluation.edge_alignment(shifted, line, tolerance=0.5)['f'][0] == 0.0
  # Half the predicted pixels far from the reference: precision 1/2, recall 1, F = 2/3.
  extra = line.copy()
  extra[0, :, 25] = True
  result = evaluation.edge_alignment(extra, line, tolerance=1.0)
  np.testing.assert_allclose([result['precision'][0], result['recall'][0], result['f'][0]],
                             [0.5, 1.0, 2 / 3])
  empty = evaluation.edge_alignment(np.zeros_like(line), line)
  assert (empty['precision'][0], empty['recall'][0], empty['f'][0]) == (1.0, 0.0, 0.0)
  with pytest.raises(ValueError, match='one shape'):
    evaluation.edge_alignment(line, line[:, :16])


def test_canny_finds_the_border_of_a_square_and_line_map_its_drawing():
  edges = evaluation.canny_edges(_square()[None])[0]
  border = np.zeros((32, 32), bool)
  border[8:24, 8:24] = True
  border ^= ndimage.binary_erosion(border)
  distance = ndimage.distance_transform_edt(~border)
  assert edges.sum() >= 40 and distance[edges].max() <= 1.0  # On the border, all around it.
  assert not edges[11:21, 11:21].any()  # Nothing inside.
  drawing = np.ones((1, 32, 32, 3), np.float32)
  drawing[0, 5, 3:20] = -1.0  # A dark line on white.
  lines = evaluation.line_map(drawing, threshold=0.5)
  assert lines.sum() == 17 and lines[0, 5, 3:20].all()


def test_gradient_correlation_is_one_for_contrast_changes_and_near_zero_for_unrelated():
  rng = np.random.default_rng(0)
  images = np.stack([_square(), _square(low=4, high=12)])
  brighter = 0.5 * images + 0.2  # Same edges, other brightness and contrast.
  np.testing.assert_allclose(evaluation.gradient_correlation(images, brighter), 1.0, atol=1e-5)
  noise = np.clip(rng.normal(size=(8, 32, 32, 3)) * 0.5, -1, 1).astype(np.float32)
  other = np.clip(rng.normal(size=(8, 32, 32, 3)) * 0.5, -1, 1).astype(np.float32)
  assert np.abs(np.asarray(evaluation.gradient_correlation(noise, other))).max() < 0.15


def test_ssim_and_psnr_match_independent_values():
  rng = np.random.default_rng(1)
  images = rng.uniform(-0.8, 0.8, size=(2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(evaluation.ssim(images, images), 1.0, atol=1e-5)
  offset = images + 0.1  # 0.05 in [0, 1] units: MSE 0.0025, PSNR = -10 log10(0.0025).
  np.testing.assert_allclose(evaluation.psnr(offset, images), -10 * np.log10(0.0025), atol=1e-3)
  assert float(np.mean(evaluation.ssim(np.roll(images, 1, axis=0), images))) < 0.2


def test_lpips_is_zero_for_identical_images_and_grows_with_blur():
  image = np.stack([_square(), _square(low=4, high=28, value=0.0)])
  blurred = [ndimage.gaussian_filter(image, sigma=(0, s, s, 0)) for s in (0.7, 2.0)]
  np.testing.assert_allclose(evaluation.lpips(image, image), 0.0, atol=1e-6)
  light, heavy = (evaluation.lpips(b, image) for b in blurred)
  assert np.all(light > 0) and np.all(heavy > light)
  np.testing.assert_allclose(evaluation.lpips(image, blurred[1]), heavy, rtol=1e-4)  # Symmetric.
  with pytest.raises(ValueError, match='net must be'):
    evaluation.lpips(image, image, net='resnet')


def test_frechet_distance_matches_the_closed_form_and_fd_vgg_orders_sets():
  rng = np.random.default_rng(2)
  # Diagonal Gaussians: FD = |mu_a - mu_b|^2 + sum (s_a - s_b)^2 over the std deviations.
  std_a, std_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
  a = rng.normal(size=(200_000, 3)) * std_a
  b = rng.normal(size=(200_000, 3)) * std_b + np.array([1.0, 0.0, -2.0])
  expected = 1.0 + 4.0 + np.sum((std_a - std_b) ** 2)
  np.testing.assert_allclose(evaluation.frechet_distance(a, b), expected, rtol=0.01)
  with pytest.raises(ValueError, match='need two'):
    evaluation.frechet_distance(a[:1], b)
  photos = np.stack([_square(low=l, high=l + 12, value=v) for l in range(4, 16, 2)
                     for v in (-0.2, 0.4, 0.9)])  # 18 images.
  noise = np.clip(np.random.default_rng(3).normal(size=photos.shape), -1, 1).astype(np.float32)
  assert abs(evaluation.fd_vgg(photos, photos)) < 1e-3 * evaluation.fd_vgg(noise, photos)


def test_band_energy_ratio_of_white_noise_and_of_smooth_images():
  rng = np.random.default_rng(4)
  white = evaluation.radial_power_spectrum(rng.normal(size=(16, 32, 32, 3)))
  assert 0.85 < evaluation.band_energy_ratio(white) < 1.15
  smooth = ndimage.gaussian_filter(rng.normal(size=(16, 32, 32, 3)), sigma=(0, 2, 2, 0))
  assert evaluation.band_energy_ratio(evaluation.radial_power_spectrum(smooth)) > 100


def test_study_reference_rows_on_held_out_edges2shoes(shared_data, tmp_path):
  from configs import phipd_study
  folder = tmp_path / "ab"  # 41 held-out pairs (ids 10, 20, ..., 410) and one training pair.
  folder.mkdir()
  for index in list(range(10, 420, 10)) + [7]:
    shutil.copy(os.path.join(shared_data, 'edges2shoes_handbags', 'train', f'{index}_AB.jpg'),
                folder)
  config = phipd_study.get_config('fss0')
  config.data.tfds_dir, config.data.dir = str(tmp_path / 'tfds'), str(folder)
  grid = translation.method_grid()
  assert [r['method'] for r in grid].count('phipd') == 4 and grid[-1]['method'] == 'generate'
  assert translation.setting_name(grid[4]) == 'structured_sdedit r=4 s=0.4'
  assert translation.setting_name(grid[-2]) == 'sdedit s=0.8' and len(grid) == 11
  task = translation.load_task(config.data, 'edges', num=8)
  assert task.inputs.shape == task.target.shape == (8, 32, 32, 3)
  assert len(task.reference) == 33 and task.structure_source == 'lines'
  key = __import__('jax').random.key(0)
  mean_photo = task.reference.mean(axis=0, keepdims=True)
  rows = {name: translation.metrics(out, task, key, swd_descriptors=1024)
          for name, out in translation.reference_outputs(task, mean_photo).items()}
  truth, mismatched = rows['ground truth'], rows['mismatched ground truth']
  assert truth['lpips_target'] < 1e-6 and truth['ssim_target'] > 0.999
  assert truth['gradient_correlation'] > mismatched['gradient_correlation'] + 0.2
  assert truth['edge_f'] > mismatched['edge_f'] + 0.2
  assert rows['input itself']['gradient_correlation'] > 0.99  # The drawing vs itself.
  assert rows['mean photo']['swd_mean'] > truth['swd_mean']
  with pytest.raises(ValueError, match='need num'):
    translation.load_task(config.data, 'photo', num=10)
