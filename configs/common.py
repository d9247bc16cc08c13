"""Defaults shared by every experiment; each config file overrides what it needs.

Every field can be overridden on the command line: ``--config.train.num_steps=100``. A config
file's options after the colon (``configs/x.py:cpu,runlocal``) are parsed by :func:`parse_arg`:
typed, with defaults, and an unknown option is an error (``:runlocl`` fails instead of launching
the full run).
"""

import ml_collections

from phipd_jax.defaults import get_base_config, set_autoencoder_recipe, set_jit_recipe  # pylint: disable=unused-import


def parse_arg(arg, **spec) -> ml_collections.ConfigDict:
  """Parses a config-file argument ``'a,b=3,c=x'`` against typed defaults (big_vision style).

  Args:
    arg: the string after the colon, or None.
    **spec: option name -> default; its type (bool, int, float, str) types the value. A bare
      option sets a bool to True; ``name=value`` sets any type.

  Returns:
    A ``ConfigDict`` with every option of ``spec``.

  Raises:
    ValueError: an unknown option, a value of the wrong type, or a bare non-bool option.
  """
  result = ml_collections.ConfigDict(dict(spec))
  for token in (arg or '').split(','):
    token = token.strip()
    if not token:
      continue
    name, has_value, raw = token.partition('=')
    if name not in spec:
      raise ValueError(f'unknown config option {name!r} in {arg!r}; options: {sorted(spec)}')
    default = spec[name]
    if not has_value:
      if not isinstance(default, bool):
        raise ValueError(f'config option {name!r} needs a value ({name}=...)')
      result[name] = True
      continue
    try:
      if isinstance(default, bool):
        if raw.lower() not in ('true', 'false', '1', '0'):
          raise ValueError(raw)
        value = raw.lower() in ('true', '1')
      else:
        value = type(default)(raw)
    except ValueError:
      raise ValueError(f'config option {name}={raw!r} must be a {type(default).__name__}') from None
    result[name] = value
  return result


def set_spectral_forcing(config: ml_collections.ConfigDict, options) -> None:
  """Parsed options ``sf`` (released linear schedule) / ``sf_power`` (paper contour)."""
  if options.get('sf'):
    config.model.spectral_forcing.schedule = 'linear'
  if options.get('sf_power'):
    config.model.spectral_forcing.schedule = 'power_law'


def set_smoke_run(config: ml_collections.ConfigDict) -> None:
  """The ``runlocal`` option of every config: a CPU smoke run of the same code path.

  20 steps, batch 8 at most, tiny float32 model, checkpoints and grids every 10, 4 sampler
  steps, one device mesh.
  """
  config.model.size = 'tiny'
  config.model.dtype = 'float32'
  config.optim.warmup_steps = 5
  config.train.batch_size = min(config.train.batch_size, 8)
  config.train.num_steps = 20
  config.train.log_every = 10
  config.train.checkpoint_every = 10
  config.sample.num_steps = 4
  config.mesh.data, config.mesh.fsdp = -1, 1


runlocal = set_smoke_run
