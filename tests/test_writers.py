"""PNG grids: labelled grids carry names and a header."""

import numpy as np

from phipd_jax import writers


def test_labelled_grid_has_a_row_per_image_and_room_for_names():
  inputs = np.zeros((3, 16, 16, 3), np.float32)
  grid = writers.labelled_grid(inputs, inputs, ['a.png', 'b.png', 'c.png'], 'run: phi-PD r=4')
  assert grid.dtype == np.uint8 and grid.shape[0] > 3 * 16 * 6 and grid.shape[1] > 2 * 16 * 6
  assert (grid[:14] < 128).any()  # The header is drawn.
