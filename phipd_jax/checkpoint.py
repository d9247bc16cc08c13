"""orbax checkpoints of a :class:`~phipd_jax.training.TrainState` in ``<workdir>/checkpoints``.

Saves are atomic (orbax writes to a temporary directory and renames), keep the last N, and the
config is written beside them as ``<workdir>/config.json``. Resume order (DESIGN.md): a
checkpoint in the workdir, then ``config.init_from`` (parameters and EMA only), then scratch.
"""

from __future__ import annotations

import json
import os
from typing import Optional

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
    """Restores ``step`` (default: latest) into the structure and shardings of ``template``.

    Raises:
      FileNotFoundError: there is no checkpoint in the workdir.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    return self.manager.restore(step, args=ocp.args.StandardRestore(_abstract(template)))

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
