"""Shared fixtures: the shared-data skip rule, a session tfds folder and tiny run configs."""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')
sys.path.insert(0, REPO_ROOT)  # configs/ is importable from the tests (never an entry point).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py
# One persistent XLA compilation cache for every test process (xdist workers and the
# subprocesses of the pod tests inherit it): the same tiny train step is compiled by many tests.
# A fresh clone starts empty; it only ever holds compiled programs keyed by their HLO.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(REPO_ROOT, '.pytest_cache', 'jax_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')


@pytest.fixture(scope='session')
def shared_data():
  """``../shared/data``; skipped when absent unless PHIPD_REQUIRE_SHARED_DATA=1 (CI)."""
  if not os.path.isdir(SHARED_DATA):
    if os.environ.get('PHIPD_REQUIRE_SHARED_DATA') == '1':
      pytest.fail(f'PHIPD_REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing')
    pytest.skip(f'shared data not found at {SHARED_DATA} (a fresh clone without ../shared)')
  return SHARED_DATA


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def tiny_config(tfds_dir):
  """The quickstart experiment shrunk to seconds: tiny DiT, batch 8, 16x16 crops."""
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size = 16
  config.data.resize = 48
  config.train.batch_size = 8
  config.train.num_steps = 6
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.optim.warmup_steps = 2
  config.sample.write_grids = False
  config.sample.num_translate = 2
  config.sample.num_generate = 4
  return config


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, tfds_dir):
  """A 4-step quickstart run at 16 px with grids: the run the CLI tests sample from."""
  from phipd_jax import trainer
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size, config.data.resize = 16, 48
  config.train.batch_size, config.train.num_steps = 8, 4
  config.train.checkpoint_every, config.train.log_every = 4, 2
  config.optim.warmup_steps = 1
  config.sample.num_steps, config.sample.num_generate, config.sample.num_translate = 2, 4, 3
  workdir = str(tmp_path_factory.mktemp('run'))
  trainer.train(config, workdir)
  return workdir
