"""A quiet console for the entry points: library INFO chatter off unless ``--verbose``, and
expected errors (bad config, bad flag, missing file, NaN) printed once as one line."""

from __future__ import annotations

import logging as std_logging
import os
import sys
import warnings
from typing import Callable

from absl import app, logging

# Loggers whose INFO lines bury the progress bar: orbax's save/restore chatter, JAX's backend
# probing ("Unable to initialize backend 'tpu'" reads like an error on a CPU machine), tfds.
QUIET_LOGGERS = ('orbax', 'jax', 'jax._src.xla_bridge', 'tensorflow_datasets', 'absl', 'grain',
                 'etils')

HELP_FLAGS = {'--help', '-?', '--helpshort', '--helpfull', '-h'}
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, NotADirectoryError)


def configure(verbose: bool = False):
  """Warnings and errors only (``verbose=False``), or every library log line."""
  level = std_logging.INFO if verbose else std_logging.WARNING
  # Quiet: errors only from absl (tfds's 'OpenCV is not installed' is a WARNING); our own
  # warnings are printed, not logged.
  logging.set_verbosity(logging.INFO if verbose else logging.ERROR)
  for name in QUIET_LOGGERS:
    std_logging.getLogger(name).setLevel(level)
  if not verbose:
    std_logging.getLogger('jax._src.xla_bridge').setLevel(std_logging.ERROR)
    # absl.app.run re-applies --verbosity when it parses flags; the 'absl' logger's own level
    # still holds back tfds's warnings (logged through absl).
    std_logging.getLogger('absl').setLevel(std_logging.ERROR)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    # imageio-ffmpeg runs ffmpeg as a subprocess (video reading and writing): a fork+exec of a
    # binary, which JAX's fork warning (meant for Python children) does not concern.
    warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called', category=RuntimeWarning)


def run(main: Callable[[list], None]):
  """``absl.app.run(main)``; an expected error exits 1 with ``error: <message>`` on stderr
  (printed once, no traceback unless ``--verbose``)."""

  def wrapped(argv):
    verbose = bool(getattr(app.flags.FLAGS, 'verbose', False))
    try:
      return main(argv)
    except EXPECTED_ERRORS as error:
      if verbose:
        raise
      print(f'error: {error}', file=sys.stderr, flush=True)
      sys.exit(1)

  configure('--verbose' in sys.argv)  # Before flags are parsed: quiet from the first import.
  try:
    app.run(wrapped)
  except SystemExit as exit_:
    # absl exits 1 after printing --help; asking for help is not a failure.
    if exit_.code == 1 and HELP_FLAGS & set(sys.argv[1:]):
      sys.exit(0)
    raise
