"""Shared test helpers (imported as ``from tests import helpers`` is not used: tests import this
module by path through conftest's sys.path)."""

import jax
import numpy as np


def assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
