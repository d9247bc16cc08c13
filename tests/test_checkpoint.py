"""Checkpoints: named items round-trip, a sampler restores only what it uses, old layouts load,
a corrupt newest checkpoint is moved aside."""

import os
import sys
import types

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from phipd_jax import checkpoint, experiment, sharding, specs
import helpers


def _state(config):
  return experiment.build(config).create_train_state(sharding.make_mesh())


def test_checkpoint_round_trip_and_partial_restore(tiny_config, tmp_path):
  state = _state(tiny_config).replace(step=jnp.int32(7))
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(7, state, force=True)
  checkpointer.wait()
  assert set(os.listdir(tmp_path / 'checkpoints' / '7')) >= {'ema_params', 'meta',
                                                              'opt_state', 'params'}
  fresh = jax.tree.map(jnp.zeros_like, _state(tiny_config.copy_and_resolve_references()))
  restored = checkpointer.restore(fresh)
  checkpointer.close()
  helpers.assert_trees_equal(restored, state)
  assert int(restored.step) == 7
  # A sampler reads the EMA item only: the optimizer item is never touched.
  only = checkpoint.restore_items(str(tmp_path), fresh, ('ema_params',))
  assert set(only) == {'ema_params'}
  helpers.assert_trees_equal(only['ema_params'], state.ema_params)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpoint.restore_items(str(tmp_path / 'empty'), fresh, ('params',))
  assert not (tmp_path / 'empty').exists()  # Reading never creates folders.
  with pytest.raises(ValueError, match='keep'):
    checkpoint.Checkpointer(str(tmp_path), keep=0)


def test_pre_named_items_checkpoint_still_loads(tiny_config, tmp_path):
  """Turn-1 runs saved the whole TrainState as one 'default' item."""
  state = _state(tiny_config).replace(step=jnp.int32(3))
  directory = checkpoint.checkpoint_dir(str(tmp_path))
  legacy = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True))
  legacy.save(3, args=ocp.args.StandardSave(state), force=True)
  legacy.wait_until_finished()
  legacy.close()
  assert os.path.isdir(os.path.join(directory, '3', 'default'))
  fresh = jax.tree.map(jnp.zeros_like, state)
  only = checkpoint.restore_items(str(tmp_path), fresh, ('ema_params',))
  helpers.assert_trees_equal(only['ema_params'], state.ema_params)
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  helpers.assert_trees_equal(checkpointer.restore(fresh), state)
  checkpointer.close()


# The failed read of the damaged checkpoint must not leave orbax's late read errors and
# event-loop callbacks as "Exception ignored" tracebacks on stderr
# (checkpoint._failed_read_noise_to_log): any unraisable exception during the test fails it.
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
def test_corrupt_newest_checkpoint_is_moved_aside(tiny_config, tmp_path):
  state = _state(tiny_config)
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  for step in (1, 2):
    checkpointer.save(step, state.replace(step=jnp.int32(step)), force=True)
  checkpointer.wait()
  # Truncate every array file of the newest checkpoint's params.
  for root, _, files in os.walk(tmp_path / 'checkpoints' / '2' / 'params'):
    for name in files:
      if 'd' == os.path.basename(root) or name.startswith(('0', '1')) or 'ocdbt' in root:
        path = os.path.join(root, name)
        with open(path, 'r+b') as f:
          f.truncate(max(0, os.path.getsize(path) // 3))
  restored = checkpointer.restore(state)
  assert int(restored.step) == 1
  assert checkpointer.latest_step() == 1
  moved = os.listdir(tmp_path / 'checkpoints.corrupt')
  assert len(moved) == 1 and moved[0].startswith('2-')
  checkpointer.save(2, restored.replace(step=jnp.int32(2)), force=True)  # The step saves again.
  checkpointer.wait()
  assert checkpointer.latest_step() == 2
  checkpointer.close()


def _unraisable(error, filename):
  """An ``sys.unraisablehook`` argument whose traceback runs through ``filename``."""
  try:
    exec(compile('raise error', filename, 'exec'), {'error': error})
  except Exception as raised:  # pylint: disable=broad-except
    return types.SimpleNamespace(exc_value=raised, exc_traceback=raised.__traceback__)


def test_failed_read_noise_logs_orbax_errors_and_passes_the_rest_on():
  orbax_file = '/site-packages/orbax/checkpoint/_src/serialization/serialization.py'
  seen = []
  previous, sys.unraisablehook = sys.unraisablehook, seen.append
  try:
    with checkpoint._failed_read_noise_to_log():
      for error, filename in ((Exception('reading array index'), orbax_file),
                              (RuntimeError('Event loop is closed'), 'asyncio/base_events.py'),
                              (ValueError('not from orbax'), 'mine.py')):
        sys.unraisablehook(_unraisable(error, filename))
      assert [type(u.exc_value).__name__ for u in seen] == ['ValueError']  # Passed on at once.
    assert sys.unraisablehook == seen.append  # The previous hook is back.
    sys.unraisablehook(_unraisable(Exception('reading array index'), orbax_file))
    assert len(seen) == 2  # Outside a restore, orbax's errors are not touched.
  finally:
    sys.unraisablehook = previous


def test_resume_config_check_separates_cosmetic_and_optimisation_fields(tiny_config):
  saved = tiny_config.to_dict()
  cosmetic = tiny_config.copy_and_resolve_references()
  cosmetic.train.log_every = 3
  assert specs.check_resume(saved, cosmetic.to_dict()) == ['train.log_every: 2 -> 3']
  changed = tiny_config.copy_and_resolve_references()
  changed.train.num_steps = 60
  with pytest.raises(ValueError, match='train.num_steps.*--allow_config_change'):
    specs.check_resume(saved, changed.to_dict())
  lines = specs.check_resume(saved, changed.to_dict(), allow_change=True)
  assert lines == ['train.num_steps: 6 -> 60']
  shape = tiny_config.copy_and_resolve_references()
  shape.model.patch_size = 2
  with pytest.raises(ValueError, match='model.patch_size'):
    specs.check_resume(saved, shape.to_dict(), allow_change=True)
  # A run saved before a field existed resumes when the field holds the value it had.
  older = {k: v for k, v in saved.items() if k != 'rng_impl'}
  older['model'] = {k: v for k, v in saved['model'].items() if k not in ('remat', 'param_dtype')}
  assert specs.check_resume(older, cosmetic.to_dict()) == ['train.log_every: 2 -> 3']
  bf16 = cosmetic.copy_and_resolve_references()
  bf16.model.param_dtype = 'bfloat16'
  with pytest.raises(ValueError, match='model.param_dtype'):
    specs.check_resume(older, bf16.to_dict())
