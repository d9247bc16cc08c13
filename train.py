r"""Trains a diffusion model (or an autoencoder) of a config; the loop is phipd_jax.trainer.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python train.py --config configs/edges2shoes_phipd.py:cpu --workdir runs/e2s \
      --config.train.num_steps=2000

Kill and rerun the same command at will: it resumes from the last checkpoint in --workdir.
Outputs in --workdir: checkpoints/, config.json, metrics.jsonl, tb/ (TensorBoard),
samples/generate_<step>.png and samples/translate_<step>.png at every checkpoint.
"""

import phipd_jax

if __name__ == '__main__':  # First: re-executes once, before JAX loads.
  phipd_jax.use_huge_page_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags
from ml_collections import config_flags

from phipd_jax import console, experiment, specs, trainer

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, samples).')
_STOP_AFTER = flags.DEFINE_integer(
    'stop_after', None, 'Stop (with a checkpoint) after this many steps of this invocation; '
    'for time-sliced jobs. Rerun the same command to continue.', lower_bound=1)
_ALLOW_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume even if fields that change the optimisation (steps, '
    'schedule, learning rate, batch, data, noise) differ from the saved run.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs (orbax, absl, JAX).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  console.configure(_VERBOSE.value)
  config = _CONFIG.value
  trainer.initialize_distributed(specs.DistributedSpec.from_dict(config.distributed.to_dict()))
  exp = experiment.build(config)  # Validates every field before anything is read or written.
  trainer.train(exp, _WORKDIR.value, _STOP_AFTER.value, _ALLOW_CHANGE.value)


if __name__ == '__main__':
  console.run(main)
