"""orbax checkpoints of a :class:`~phipd_jax.training.TrainState` in ``<workdir>/checkpoints``.

Each step is saved as named items, ``params``, ``ema_params``, ``opt_state`` and ``meta`` (step
and RNG key), so a sampler or an ``init_from`` restores only what it uses. Saves are atomic
(orbax writes to a temporary directory and renames), keep the last N, and the config is written
beside them as ``<workdir>/config.json``. Resume order: a checkpoint in the workdir,
then ``config.init_from`` (parameters and EMA only), then scratch.

A checkpoint that cannot be read (truncated array files, missing metadata) is **moved aside**
to ``<workdir>/checkpoints.corrupt/<step>-<time>`` with a warning naming it, never deleted: the
run continues from the one before and can save that step again.

Runs saved before named items (one ``default`` item holding the whole state) still load: they
are read whole into the full state template and the requested items are taken from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import logging as std_logging
import sys
import time
from typing import Iterable, Optional

from absl import logging
import jax
import orbax.checkpoint as ocp

ITEMS = ('params', 'ema_params', 'opt_state', 'meta')
LEGACY_ITEM = 'default'


def checkpoint_dir(workdir: str) -> str:
  """``<workdir>/checkpoints`` as an absolute path (orbax needs one)."""
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def corrupt_dir(workdir: str) -> str:
  """Where unreadable checkpoints are moved: ``<workdir>/checkpoints.corrupt``."""
  return os.path.join(os.path.abspath(workdir), 'checkpoints.corrupt')


def _abstract(tree):
  """Shape/dtype/sharding of every leaf: the restore target (restored arrays land sharded)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      tree)


def _items(state) -> dict:
  return {'params': state.params, 'ema_params': state.ema_params, 'opt_state': state.opt_state,
          'meta': {'step': state.step, 'rng': state.rng}}


def _steps_on_disk(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)


def has_checkpoint(workdir: str) -> bool:
  """Whether ``<workdir>/checkpoints`` holds a finished step (cheap: no orbax)."""
  directory = checkpoint_dir(workdir)
  return any(os.path.isdir(os.path.join(directory, str(s))) for s in _steps_on_disk(directory))


def latest_has_optimizer_state(workdir: str) -> bool:
  """False when the newest checkpoint step lacks ``opt_state`` (a converted pretrained run,
  :mod:`phipd_jax.convert.runs`, holds only ``params``, ``ema_params`` and ``meta``)."""
  directory = checkpoint_dir(workdir)
  for step in _steps_on_disk(directory):
    step_dir = os.path.join(directory, str(step))
    if os.path.isdir(step_dir):
      return is_legacy(step_dir) or os.path.isdir(os.path.join(step_dir, 'opt_state'))
  return True


def is_legacy(step_dir: str) -> bool:
  """A step saved as one ``default`` item (before named items)."""
  return os.path.isdir(os.path.join(step_dir, LEGACY_ITEM))


def _from_failed_read(unraisable) -> bool:
  """True for an unraisable exception raised in orbax code, or asyncio's closed-loop error."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    return True
  code = getattr(getattr(unraisable, 'object', None), 'cr_code', None)  # A read coroutine.
  if code is not None and 'orbax' in code.co_filename:
    return True
  tb = unraisable.exc_traceback
  while tb is not None:
    if 'orbax' in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


_FAILED_READS: list = []  # Checkpoint steps whose restore failed in this process.


@contextlib.contextmanager
def _failed_read_noise_to_log():
  """Keeps a failed orbax read's leftover errors off stderr while a restore runs.

  When a damaged checkpoint makes an orbax restore fail, its other reads still finish. Their
  errors ("Encountered error while reading array index") are never retrieved, and orbax closes
  its asyncio loop under late callbacks ("Event loop is closed"). Python prints each one as an
  "Exception ignored" traceback on stderr: 32-48 of them for one truncated DiT checkpoint, after
  the one-line warning :meth:`Checkpointer.restore_items` gives. All of them fire before
  ``restore_items`` returns (measured). So while it runs, the ones raised in orbax code, or the
  closed-loop error, go to the INFO log as one line each (shown with ``--verbose``). Every other
  one goes to the previous ``sys.unraisablehook`` at once. Each is handled when it fires: holding
  them would keep their frames alive, and delay other coroutines' errors past the window.
  A read coroutine still pending when the restore failed fired after it once (CI, under load),
  so after a failed read the filter stays installed for the rest of the process (coroutines of
  orbax code count as its own), with asyncio's "Task exception was never retrieved" log held at
  CRITICAL; a restore that fails nothing leaves both as they were.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    if _from_failed_read(unraisable):
      logging.info('checkpoint: late error of a restore: %s: %s',
                   type(unraisable.exc_value).__name__, str(unraisable.exc_value)[:200])
    else:
      previous(unraisable)

  failures_before = len(_FAILED_READS)
  sys.unraisablehook = hook
  # A read task's error can also be reported when the task is collected ("Task exception was
  # never retrieved", asyncio's ERROR log): off stderr for the window too.
  asyncio_logger = std_logging.getLogger('asyncio')
  asyncio_level = asyncio_logger.level
  asyncio_logger.setLevel(std_logging.CRITICAL)
  try:
    yield
  finally:
    if len(_FAILED_READS) == failures_before:  # Nothing failed: the previous hook, as it was.
      sys.unraisablehook = previous
      asyncio_logger.setLevel(asyncio_level)
    # After a failed read its pending coroutines can still be collected later: the filter stays
    # (it passes every other unraisable exception on to the previous hook).


class Checkpointer:
  """Thin wrapper over ``ocp.CheckpointManager`` for one workdir, with named items.

  Args:
    workdir: the run directory.
    keep: number of checkpoints kept (older ones are deleted; >= 1).
    save_every: steps between periodic saves (``save`` with ``force=True`` always saves).
    create: create ``<workdir>/checkpoints`` (False for read-only uses such as sampling).

  Raises:
    ValueError: ``keep < 1``.
  """

  def __init__(self, workdir: str, keep: int = 3, save_every: int = 1, create: bool = True):
    if keep < 1:
      raise ValueError(f'checkpoint: keep={keep} must be >= 1 (0 would delete every checkpoint)')
    self.workdir = workdir
    self.directory = checkpoint_dir(workdir)
    self._options = ocp.CheckpointManagerOptions(max_to_keep=keep,
                                                 save_interval_steps=save_every, create=create)
    self.manager = ocp.CheckpointManager(self.directory, item_names=ITEMS,
                                         options=self._options)

  def latest_step(self) -> Optional[int]:
    """Step of the newest complete checkpoint, or None (half-written ones are ignored)."""
    return self.manager.latest_step()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves the state's items asynchronously (periodic unless ``force``)."""
    args = ocp.args.Composite(**{name: ocp.args.StandardSave(tree)
                                 for name, tree in _items(state).items()})
    return self.manager.save(step, args=args, force=force)

  def _restore_step(self, step: int, template, items: Iterable[str]) -> dict:
    step_dir = os.path.join(self.directory, str(step))
    if is_legacy(step_dir):
      legacy = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
          create=False, read_only=True))
      try:
        state = legacy.restore(step, args=ocp.args.StandardRestore(_abstract(template)))
      finally:
        legacy.close()
      logging.warning('checkpoint %d in %s has the pre-named-items layout; read whole', step,
                      self.directory)
      return {name: tree for name, tree in _items(state).items() if name in items}
    wanted = _items(template)
    args = ocp.args.Composite(**{name: ocp.args.StandardRestore(_abstract(wanted[name]))
                                 for name in items})
    restored = self.manager.restore(step, args=args)
    return {name: restored[name] for name in items}

  def restore_items(self, template, items: Iterable[str] = ITEMS,
                    step: Optional[int] = None, move_corrupt: bool = True) -> dict:
    """Restores ``items`` into the structure and shardings of ``template`` (a TrainState or an
    abstract one), from ``step`` or the newest readable checkpoint.

    A checkpoint that fails to read is moved aside (``move_corrupt``) with a warning, and the one
    before it is tried. Unfinished writes (orbax's temporary directories) are never considered.
    The failed read leaves no "Exception ignored" tracebacks on stderr
    (:func:`_failed_read_noise_to_log`).

    Returns:
      ``{item: tree}``; ``meta`` is ``{'step': int32, 'rng': uint32 key data}``.

    Raises:
      FileNotFoundError: there is no (readable) checkpoint.
      ValueError: an unknown item name.
    """
    items = tuple(items)
    unknown = set(items) - set(ITEMS)
    if unknown:
      raise ValueError(f'checkpoint: unknown items {sorted(unknown)}; items are {ITEMS}')
    with _failed_read_noise_to_log():
      return self._restore_items(template, items, step, move_corrupt)

  def _restore_items(self, template, items: tuple, step: Optional[int],
                     move_corrupt: bool) -> dict:
    if step is not None:
      return self._restore_step(step, template, items)
    steps = sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    for candidate in steps:
      try:
        return self._restore_step(candidate, template, items)
      except Exception as error:  # orbax/tensorstore raise many types for damaged files.
        _FAILED_READS.append(candidate)
        if move_corrupt:
          moved = self.move_aside(candidate)
          logging.warning('checkpoint %d is unreadable (%s: %s); moved to %s, trying an older one',
                          candidate, type(error).__name__, str(error)[:200], moved)
          print(f'warning: checkpoint {candidate} is unreadable ({type(error).__name__}); moved '
                f'to {moved}; continuing from an older one', flush=True)
        else:
          logging.warning('checkpoint %d in %s is unreadable (%s); trying an older one',
                          candidate, self.directory, type(error).__name__)
    raise FileNotFoundError(f'no readable checkpoint in {self.directory} (tried {steps})')

  def restore(self, template, step: Optional[int] = None):
    """The full train state (every item) shaped like ``template``; see :meth:`restore_items`."""
    restored = self.restore_items(template, ITEMS, step)
    meta = restored['meta']
    return template.replace(step=meta['step'], rng=meta['rng'], params=restored['params'],
                            ema_params=restored['ema_params'], opt_state=restored['opt_state'])

  def move_aside(self, step: int) -> str:
    """Renames ``<checkpoints>/<step>`` to ``checkpoints.corrupt/<step>-<time>``; returns it."""
    destination_dir = corrupt_dir(self.workdir)
    os.makedirs(destination_dir, exist_ok=True)
    destination = os.path.join(destination_dir, f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    shutil.move(os.path.join(self.directory, str(step)), destination)
    self.manager.reload()
    return destination

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def restore_items(workdir: str, template, items: Iterable[str],
                  step: Optional[int] = None) -> dict:
  """``items`` of the latest readable checkpoint of ``workdir``, or of training step ``step``
  (read-only: nothing is moved).

  Raises:
    FileNotFoundError: no checkpoint, or none saved at ``step`` (the steps on disk are named).
  """
  if not has_checkpoint(workdir):
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}')
  if step is not None and step not in _steps_on_disk(checkpoint_dir(workdir)):
    raise FileNotFoundError(
        f'no checkpoint of step {step} in {checkpoint_dir(workdir)}; on disk: '
        f'{_steps_on_disk(checkpoint_dir(workdir))} (train.checkpoint_every and '
        'train.keep_checkpoints decide which are kept)')
  checkpointer = Checkpointer(workdir, create=False)
  try:
    return checkpointer.restore_items(template, items, step=step, move_corrupt=False)
  finally:
    checkpointer.close()


def restore_latest(workdir: str, template):
  """The latest full state of ``workdir`` shaped like ``template``."""
  if not has_checkpoint(workdir):
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}')
  checkpointer = Checkpointer(workdir, create=False)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


def copy_latest(source: str, destination: str) -> int:
  """Copies ``source``'s ``config.json`` and its newest checkpoint step into ``destination``
  (a loadable run directory of one step; written to ``<destination>.tmp`` then renamed, so a
  killed copy leaves no half run). Returns the step copied.

  Raises:
    FileNotFoundError: ``source`` has no config.json or no checkpoint.
    FileExistsError: ``destination`` exists.
  """
  if os.path.exists(destination):
    raise FileExistsError(f'{destination} exists')
  load_config_dict(source)
  steps = [s for s in _steps_on_disk(checkpoint_dir(source))
           if os.path.isdir(os.path.join(checkpoint_dir(source), str(s)))]
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(source)}')
  step = steps[0]
  partial = destination + '.tmp'
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(os.path.join(partial, 'checkpoints'))
  shutil.copy2(os.path.join(source, 'config.json'), os.path.join(partial, 'config.json'))
  if os.path.exists(os.path.join(source, PARTS_FILE)):
    shutil.copy2(os.path.join(source, PARTS_FILE), os.path.join(partial, PARTS_FILE))
  shutil.copytree(os.path.join(checkpoint_dir(source), str(step)),
                  os.path.join(partial, 'checkpoints', str(step)))
  os.rename(partial, destination)
  return step


def _write_json(workdir: str, name: str, data: dict) -> str:
  path = os.path.join(workdir, name)
  os.makedirs(workdir, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(data, f, indent=2, sort_keys=True)
  return path


def save_config(workdir: str, config: dict) -> str:
  """Writes ``config`` (a run config as a dict) as ``<workdir>/config.json``; returns the path."""
  return _write_json(workdir, 'config.json', config)


PARTS_FILE = 'parts.json'  # What each built part of the run was built from (saved_run.parts).


def save_parts(workdir: str, parts: dict) -> str:
  """Writes ``parts`` (JSON-ready) as ``<workdir>/parts.json``; returns the path."""
  return _write_json(workdir, PARTS_FILE, parts)


def load_parts(workdir: str) -> Optional[dict]:
  """The run's ``parts.json``, or None for a run saved before it existed.

  Raises:
    ValueError: the file is not valid JSON.
  """
  path = os.path.join(workdir, PARTS_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f'{path}: not valid JSON ({error})') from None


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
