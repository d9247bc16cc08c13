"""orbax checkpoints of a :class:`~phipd_jax.training.TrainState` in ``<workdir>/checkpoints``.

Saves are atomic (orbax writes to a temporary directory and renames), keep the last N, and the
config is written beside them as ``<workdir>/config.json``. Resume order (DESIGN.md): a
checkpoint in the workdir, then ``config.init_from`` (parameters and EMA only), then scratch.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import logging
import jax
import orbax.checkpoint as ocp


def checkpoint_dir(workdir: str) -> str:
  """``<workdir>/checkpoints`` as an absolute path (orbax needs one)."""
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def _abstract(state):
  """Shape/dtype/sharding of every leaf: the restore target (restored arrays land sharded)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      state)


class Checkpointer:
  """Thin wrapper over ``ocp.CheckpointManager`` for one workdir.

  Args:
    workdir: the run directory.
    keep: number of checkpoints kept (older ones are deleted).
    save_every: steps between periodic saves (``save`` with ``force=True`` always saves).
  """

  def __init__(self, workdir: str, keep: int = 3, save_every: int = 1):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                           create=True)
    self.directory = checkpoint_dir(workdir)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    """Step of the newest complete checkpoint, or None (half-written ones are ignored)."""
    return self.manager.latest_step()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves asynchronously (periodic unless ``force``); returns whether a save started."""
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def restore(self, template, step: Optional[int] = None):
    """Restores into the structure and shardings of ``template`` (any mesh or device count).

    Without ``step``, the newest checkpoint that reads back is used: a damaged one (truncated
    files, a crash during its write) is skipped with a warning, and the one before it is used.
    Unfinished writes (orbax's temporary directories) are never considered.

    Raises:
      FileNotFoundError: there is no (readable) checkpoint in the workdir.
    """
    target = ocp.args.StandardRestore(_abstract(template))
    if step is not None:
      return self.manager.restore(step, args=target)
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    for candidate in steps:
      try:
        return self.manager.restore(candidate, args=target)
      except Exception as error:  # orbax/tensorstore raise many types for damaged files.
        logging.warning('checkpoint %d in %s is unreadable (%s: %s); trying an older one',
                        candidate, self.directory, type(error).__name__, error)
    raise FileNotFoundError(f'no readable checkpoint in {self.directory} (tried {steps})')

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def restore_latest(workdir: str, template):
  """The latest state of ``workdir`` shaped like ``template`` (e.g. for sampling)."""
  checkpointer = Checkpointer(workdir)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


def save_config(workdir: str, config) -> str:
  """Writes ``config`` as ``<workdir>/config.json``; returns the path."""
  path = os.path.join(workdir, 'config.json')
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config_dict(workdir: str) -> dict:
  """The ``config.json`` of a run, as a dict.

  Raises:
    FileNotFoundError: the run has no config.json.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no config.json in {workdir}: is it a phipd_jax workdir?')
  with open(path) as f:
    return json.load(f)


# Config fields that change the shapes or meaning of the saved arrays: resuming with another
# value would fail to restore or silently train a different model.
SHAPE_FIELDS = ('model.name', 'model.size', 'model.patch_size', 'model.num_classes',
                'model.in_context_len')


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def check_resume_config(saved: dict, current: dict) -> list[str]:
  """Compares the config a run was started with against the one it resumes with.

  Args:
    saved: the run's ``config.json`` as a dict.
    current: the new config as a dict (``config.to_dict()``).

  Returns:
    The harmless differences, as ``'field: old -> new'`` lines (log them as a warning).

  Raises:
    ValueError: a field of :data:`SHAPE_FIELDS` differs (the checkpoint cannot be continued).
  """
  old, new = _flatten(saved), _flatten(json.loads(json.dumps(current, default=str)))
  differences = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                 if old.get(k) != new.get(k)}
  fatal = [f'{k}: {a!r} -> {b!r}' for k, (a, b) in differences.items() if k in SHAPE_FIELDS]
  if fatal:
    raise ValueError('cannot resume: config differs from the saved run in fields that change '
                     'the checkpoint: ' + '; '.join(fatal) + ' (use a new --workdir, or '
                     '--config.init_from to start from its parameters)')
  return [f'{k}: {a!r} -> {b!r}' for k, (a, b) in differences.items()]
