"""tfds builders (array_record, no TensorFlow) and the grain pipeline."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from phipd_jax.data import builders, pipeline


def test_skimage_photos_split_rule(tiny_config):
  import skimage.data
  train = pipeline.data_source(tiny_config.data, 'train')
  test = pipeline.data_source(tiny_config.data, 'test')
  assert len(train) == len(test) == len(builders.SKIMAGE_PHOTOS)
  by_name = {test[i]['name'].decode(): test[i]['image'] for i in range(len(test))}
  for i in range(len(train)):
    name = train[i]['name'].decode()
    photo = getattr(skimage.data, name)()[..., :3]
    # Train = left two thirds, test = the rest: disjoint, pixel-exact, together the photo.
    np.testing.assert_array_equal(np.concatenate([train[i]['image'], by_name[name]], axis=1),
                                  photo)
    assert train[i]['image'].shape[1] == round(photo.shape[1] * 2 / 3)


def test_batches_are_deterministic_by_step_and_split_by_process(tiny_config):
  data = tiny_config.data
  single = pipeline.train_dataset(data, 8, seed=0, num_steps=10)
  again = pipeline.train_dataset(data, 8, seed=0, num_steps=10)
  other_seed = pipeline.train_dataset(data, 8, seed=1, num_steps=10)
  batch = single[4]
  assert batch['image'].shape == (8, 16, 16, 3) and batch['image'].dtype == np.float32
  assert -1.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  np.testing.assert_array_equal(batch['image'], again[4]['image'])
  assert not np.array_equal(batch['image'], other_seed[4]['image'])
  assert not np.array_equal(batch['image'], single[5]['image'])
  halves = [pipeline.train_dataset(data, 8, 0, 10, p, 2)[4]['image'] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), batch['image'])
  with pytest.raises(ValueError, match='divisible'):
    pipeline.train_dataset(data, 9, 0, 10, 0, 2)


def test_pix2pix_builder_on_a_custom_folder(shared_data, tiny_config, tmp_path):
  folder = tmp_path / 'ab'
  folder.mkdir()
  source = os.path.join(shared_data, 'edges2shoes_handbags', 'train')
  for index in [7, 10, 20]:
    shutil.copy(os.path.join(source, f'{index}_AB.jpg'), folder)
  data = tiny_config.data
  data.name, data.dir, data.image_key = 'edges2shoes_handbags', str(folder), 'photo'
  train, test = pipeline.data_source(data, 'train'), pipeline.data_source(data, 'test')
  assert len(train) == 1 and sorted(int(test[i]['id']) for i in range(len(test))) == [10, 20]
  pair = np.asarray(Image.open(folder / '7_AB.jpg').convert('RGB'))
  np.testing.assert_array_equal(train[0]['photo'], pair[:, :256])
  np.testing.assert_array_equal(train[0]['edges'], pair[:, 256:])
  edges = pipeline.eval_images(data, 'test', 'edges', 2)
  assert edges.shape == (2, 16, 16, 3) and edges.mean() > 0.5  # Mostly white line drawings.
  # The one held-out loader: a feature, degraded as in data.domains, with its reference.
  inputs, shown = pipeline.held_out_inputs(data, 'photo:down8', 2, reference='edges')
  photos, no_reference = pipeline.held_out_inputs(data, 'photo', 2)
  np.testing.assert_array_equal(inputs, pipeline.down_up(photos, 8))
  np.testing.assert_array_equal(shown, edges)
  assert no_reference is None and not np.array_equal(inputs, photos)
  assert len(np.unique(inputs[0, :8, :8].reshape(-1, 3), axis=0)) == 1  # One colour per 8x8.
  with pytest.raises(ValueError, match='data.domains'):
    pipeline.held_out_inputs(data, 'photo:blur', 2)


def test_bsds500_builder_reads_human_boundaries(shared_data, tmp_path):
  import scipy.io
  root = tmp_path / 'bsds'
  for split in ['train', 'val', 'test']:
    (root / 'images' / split).mkdir(parents=True)
    (root / 'groundTruth' / split).mkdir(parents=True)
    stem = sorted(os.listdir(os.path.join(shared_data, 'bsds500', 'images', split)))[0][:-4]
    shutil.copy(os.path.join(shared_data, 'bsds500', 'images', split, stem + '.jpg'),
                root / 'images' / split)
    shutil.copy(os.path.join(shared_data, 'bsds500', 'groundTruth', split, stem + '.mat'),
                root / 'groundTruth' / split)
  builder = builders.prepared_builder('bsds500', str(tmp_path / 'tfds'), str(root))
  example = builder.as_data_source('val')[0]
  truth = scipy.io.loadmat(root / 'groundTruth' / 'val' / (example['id'].decode() + '.mat'))
  first = truth['groundTruth'][0, 0]['Boundaries'][0, 0]
  assert example['boundaries'].shape[:2] == example['image'].shape[:2] == first.shape
  # Wherever every annotator marked a boundary the stored mean is 255; nowhere marked is 0.
  assert example['boundaries'].max() == 255 and example['boundaries'][first == 0].min() == 0
  assert 0.001 < (example['boundaries'] > 0).mean() < 0.2


def test_missing_source_folder_is_a_clear_error(tiny_config):
  data = tiny_config.data
  data.name, data.dir = 'edges2shoes_handbags', '/nonexistent/folder'
  with pytest.raises(FileNotFoundError, match='data.dir'):
    pipeline.data_source(data, 'train')
  data.name, data.dir = 'no_such_dataset_xyz', ''
  with pytest.raises(ValueError, match='data.name'):
    pipeline.data_source(data, 'train')


def test_flat_shading_keeps_layout_and_removes_texture():
  import skimage.data
  photo = pipeline.center_crop(pipeline.resize_short_side(skimage.data.astronaut(), 64), 64)
  image = pipeline.to_model_range(photo)[None]
  flat = pipeline.flat_shaded(image, 48)
  assert flat.shape == image.shape
  assert len(np.unique(flat.reshape(-1, 3), axis=0)) <= 60  # ~48 flat colours,
  assert np.corrcoef(flat.ravel(), image.ravel())[0, 1] > 0.7  # the layout kept,
  gradient = lambda x: np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean()
  assert gradient(flat) < gradient(image) / 2  # the texture gone.
