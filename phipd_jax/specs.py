"""Typed, frozen specs of a run's sections: what the builder hands below itself.

:func:`phipd_jax.experiment.build` makes each spec once from its config section
(``DataSpec(**config.data)``); the trainer, the data pipeline, the grid writer, the studies and
the benchmark read these (or built objects), never a config. An unknown or missing field fails
when the spec is made, naming the section.

Each spec also carries the resume-compatibility rule of each of its fields (``resume`` in the
field's metadata, :data:`SHAPE`, :data:`OPTIMISATION` or :data:`COSMETIC`): what may change
when a run is resumed with another config (:func:`check_resume`). Specs have no defaults: those
live in :mod:`phipd_jax.defaults`, and a saved run is read back onto them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

SHAPE = 'shape'  # Changes the saved arrays' shapes or meaning: resuming is impossible.
OPTIMISATION = 'optimisation'  # Changes the numbers of the run: an error unless allowed.
COSMETIC = 'cosmetic'  # Changes nothing of the saved run's numbers (logging, grids, devices).


def _field(resume: str = OPTIMISATION):
  """A required field with its resume rule (no default: the defaults live in
  :mod:`phipd_jax.defaults`, and a missing field is an error)."""
  return dataclasses.field(metadata={'resume': resume})


def _cosmetic():
  return _field(COSMETIC)


def fail(name: str, value, allowed: str):
  """Raises ``ValueError('config.<name>=<value> is invalid: <allowed>')``."""
  raise ValueError(f'config.{name}={value!r} is invalid: {allowed}')


def check_number(name: str, value, allow_zero: bool = False):
  """``value`` must be a finite number ``> 0`` (``>= 0`` with ``allow_zero``).

  Raises:
    ValueError: naming ``config.<name>``.
  """
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
      value) and (value >= 0 if allow_zero else value > 0)
  if not ok:
    fail(name, value, f'must be a finite number {">= 0" if allow_zero else "> 0"}')


class _Spec:
  """Mixin: construction from a section dict with a named error, and per-field resume rules."""

  SECTION = ''

  @classmethod
  def from_dict(cls, section: dict):
    """The spec of a config section (a dict; nested sections stay dicts).

    Raises:
      ValueError: an unknown or missing field, naming ``config.<section>``.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(section) - names)
    if unknown:
      raise ValueError(f'config.{cls.SECTION}: unknown field(s) {unknown}; known: {sorted(names)}')
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    try:
      return cls(**values)
    except TypeError as error:
      raise ValueError(f'config.{cls.SECTION}: {error}') from None

  @classmethod
  def resume_rule(cls, name: str) -> str:
    """The resume rule of field ``name`` (a dotted path inside a nested section counts as its
    top field)."""
    top = name.split('.')[0]
    for f in dataclasses.fields(cls):
      if f.name == top:
        return f.metadata.get('resume', OPTIMISATION)
    return OPTIMISATION


@dataclasses.dataclass(frozen=True)
class TopSpec(_Spec):
  """Top-level fields of a run: the seed, the PRNG implementation, the ``init_from`` run."""
  SECTION = ''
  seed: int = _field()
  rng_impl: str = _field(SHAPE)
  init_from: str = _cosmetic()


@dataclasses.dataclass(frozen=True)
class DataSpec(_Spec):
  """``config.data``: the dataset, its splits and features, the training crop (pixels)."""
  SECTION = 'data'
  name: str = _field()
  dir: str = _field()
  tfds_dir: str = _cosmetic()
  train_split: str = _field()
  eval_split: str = _field()
  image_key: str = _field()
  label_key: str = _field()
  image_size: int = _field()
  resize: int = _field()
  flip: bool = _field()
  in_memory: bool = _cosmetic()
  domains: tuple = _field()
  frames: int = _field(SHAPE)

  def __post_init__(self):
    if not isinstance(self.frames, int) or isinstance(self.frames, bool) or self.frames < 0:
      fail('data.frames', self.frames, 'must be an integer >= 0 (0 = images; T >= 1 = clips '
           'of T frames)')
    if self.image_size <= 0:
      fail('data.image_size', self.image_size, 'must be > 0 (pixels)')
    if self.resize < self.image_size:
      fail('data.resize', self.resize, f'must be >= data.image_size={self.image_size}')


@dataclasses.dataclass(frozen=True)
class TrainSpec(_Spec):
  """``config.train``: batch (global), steps and the intervals of logs and checkpoints."""
  SECTION = 'train'
  batch_size: int = _field()
  num_steps: int = _field()
  log_every: int = _cosmetic()
  checkpoint_every: int = _cosmetic()
  keep_checkpoints: int = _cosmetic()
  label_dropout: float = _field()

  def __post_init__(self):
    if self.batch_size <= 0:
      fail('train.batch_size', self.batch_size, 'must be > 0')
    for name in ('num_steps', 'checkpoint_every', 'log_every', 'keep_checkpoints'):
      if not getattr(self, name) >= 1:
        fail(f'train.{name}', getattr(self, name), 'must be >= 1')
    if not 0 <= self.label_dropout <= 1:  # 1: always the null class (unlabelled fine-tuning).
      fail('train.label_dropout', self.label_dropout, 'must be in [0, 1]')


@dataclasses.dataclass(frozen=True)
class SampleSpec(_Spec):
  """``config.sample``: the run's sampler and its checkpoint grids (all cosmetic on resume).

  ``radii`` in frequency-index units of the model space; strengths in ``(0, 1]``; ``ovg`` the
  Orthogonal Variance Guidance step sizes (``eta_n``, ``eta_c``, ``kappa``,
  ``forward_fraction``).
  """
  SECTION = 'sample'
  write_grids: bool = _cosmetic()
  sampler: str = _cosmetic()
  num_steps: int = _cosmetic()
  num_generate: int = _cosmetic()
  guidance_scale: float = _cosmetic()
  guidance_interval: tuple = _cosmetic()
  guidance_channels: int = _cosmetic()
  clip_x0: float = _cosmetic()
  translate_source: str = _cosmetic()
  translate_reference: str = _cosmetic()
  num_translate: int = _cosmetic()
  radii: tuple = _cosmetic()
  phipd_strength: float = _cosmetic()
  sdedit_strengths: tuple = _cosmetic()
  flat_shade_segments: int = _cosmetic()
  inversion_classes: tuple = _cosmetic()
  ovg: Optional[dict] = _cosmetic()

  def __post_init__(self):
    if self.num_steps <= 0:
      fail('sample.num_steps', self.num_steps, 'must be > 0')
    for strength in tuple(self.sdedit_strengths) + (self.phipd_strength,):
      if not 0 < strength <= 1:
        fail('sample.sdedit_strengths/phipd_strength', strength, 'must be in (0, 1]')
    for radius in self.radii:
      if not radius >= 0:
        fail('sample.radii', tuple(self.radii), 'every radius must be >= 0 (or inf)')
    check_number('sample.guidance_scale', self.guidance_scale, allow_zero=True)
    check_number('sample.clip_x0', self.clip_x0, allow_zero=True)
    if not (isinstance(self.guidance_channels, int) and self.guidance_channels >= 0):
      fail('sample.guidance_channels', self.guidance_channels, 'must be an integer >= 0 (0 = all)')
    interval = tuple(self.guidance_interval)
    if interval and (len(interval) != 2 or not 0 <= interval[0] < interval[1] <= 1):
      fail('sample.guidance_interval', interval, '() or (low, high) with 0 <= low < high <= 1')
    if self.ovg is not None:
      for name in ('eta_n', 'eta_c'):
        check_number(f'sample.ovg.{name}', self.ovg[name], allow_zero=True)
      check_number('sample.ovg.kappa', self.ovg['kappa'])
      if not 0 <= self.ovg['forward_fraction'] <= 1:
        fail('sample.ovg.forward_fraction', self.ovg['forward_fraction'], 'must be in [0, 1]')


@dataclasses.dataclass(frozen=True)
class LoraSection(_Spec):
  """``config.lora``: LoRA adapters over a frozen base run (rank 0 = off); see
  :mod:`phipd_jax.lora`."""
  SECTION = 'lora'
  rank: int = _field(SHAPE)
  alpha: float = _field()
  targets: tuple = _field(SHAPE)
  dropout: float = _field()

  def __post_init__(self):
    if not (isinstance(self.rank, int) and self.rank >= 0):
      fail('lora.rank', self.rank, 'must be an integer >= 0 (0 = off)')
    check_number('lora.alpha', self.alpha, allow_zero=True)
    if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
      fail('lora.dropout', self.dropout, 'must be a probability in [0, 1)')


@dataclasses.dataclass(frozen=True)
class CodecSpec(_Spec):
  """``config.codec``: the autoencoder run of a latent run (``workdir=''``: pixel space)."""
  SECTION = 'codec'
  workdir: str = _field()
  scale: float = _field()
  shift: float = _field()
  scale_images: int = _field()
  cache: bool = _cosmetic()

  def __post_init__(self):
    check_number('codec.scale', self.scale, allow_zero=True)
    if not (isinstance(self.scale_images, int) and self.scale_images >= 1):
      fail('codec.scale_images', self.scale_images, 'must be an integer >= 1')


@dataclasses.dataclass(frozen=True)
class MeshSpec(_Spec):
  """``config.mesh``: device mesh sizes (-1 = the rest) and the FSDP size floor (elements)."""
  SECTION = 'mesh'
  data: int = _cosmetic()
  fsdp: int = _cosmetic()
  fsdp_min_size: int = _cosmetic()


@dataclasses.dataclass(frozen=True)
class DistributedSpec(_Spec):
  """``config.distributed``: ``jax.distributed.initialize`` arguments ('' / 0 / -1 = detect)."""
  SECTION = 'distributed'
  enabled: bool = _cosmetic()
  coordinator_address: str = _cosmetic()
  num_processes: int = _cosmetic()
  process_id: int = _cosmetic()


@dataclasses.dataclass(frozen=True)
class AutoencoderSpec(_Spec):
  """``config.autoencoder``: the scale-consistent loss's weights (Latent Wavelet Diffusion,
  arXiv:2506.00433, Eq. 1) and the reconstruction grid's size."""
  SECTION = 'autoencoder'
  alpha: float = _field()
  beta: float = _field()
  lam: float = _field()
  scales: tuple = _field()
  num_reconstruct: int = _cosmetic()

  def __post_init__(self):
    for name in ('alpha', 'beta', 'lam'):
      check_number(f'autoencoder.{name}', getattr(self, name), allow_zero=True)
    if not self.scales or not all(isinstance(s, int) and s >= 1 for s in self.scales):
      fail('autoencoder.scales', self.scales,
           'must be a non-empty tuple of integers >= 1 (paper (2, 4))')
    if not isinstance(self.num_reconstruct, int) or self.num_reconstruct < 1:
      fail('autoencoder.num_reconstruct', self.num_reconstruct, 'must be an integer >= 1')


@dataclasses.dataclass(frozen=True)
class NoiseSpec(_Spec):
  """``config.noise``: the kind and settings of :func:`phipd_jax.noise.noise_fn` (radii in
  frequency-index units of the model space)."""
  SECTION = 'noise'
  kind: str = _field()
  r0: float = _field()
  rate: float = _field()
  edge_width: float = _field()
  mode: str = _field()
  magnitude: str = _field()
  scale: float = _field()
  pad_factor: float = _field()
  video: str = _field()

  def __post_init__(self):
    for name in ('rate', 'edge_width', 'scale'):
      check_number(f'noise.{name}', getattr(self, name))
    check_number('noise.r0', self.r0, allow_zero=True)

  def settings(self) -> dict:
    """The keyword arguments of :func:`phipd_jax.noise.noise_fn` (all but the kind)."""
    return dict(r0=self.r0, rate=self.rate, edge_width=self.edge_width, mode=self.mode,
                magnitude=self.magnitude, scale=self.scale,
                pad_factor=self.pad_factor if self.pad_factor else None)


@dataclasses.dataclass(frozen=True)
class OptimSpec(_Spec):
  """``config.optim``: AdamW after global-norm clipping, linear warmup then cosine (or constant)
  learning rate, and the EMA of the parameters."""
  SECTION = 'optim'
  learning_rate: float = _field()
  warmup_steps: int = _field()
  schedule: str = _field()
  final_lr_fraction: float = _field()
  weight_decay: float = _field()
  b1: float = _field()
  b2: float = _field()
  grad_clip: float = _field()
  ema_decay: float = _field()

  def __post_init__(self):
    check_number('optim.learning_rate', self.learning_rate)
    check_number('optim.grad_clip', self.grad_clip)
    check_number('optim.weight_decay', self.weight_decay, allow_zero=True)
    if self.schedule not in ('cosine', 'constant'):
      fail('optim.schedule', self.schedule, "must be 'cosine' or 'constant'")
    if not 0 <= self.final_lr_fraction <= 1:
      fail('optim.final_lr_fraction', self.final_lr_fraction, 'must be in [0, 1]')
    for name in ('b1', 'b2', 'ema_decay'):
      if not 0 <= getattr(self, name) < 1:
        fail(f'optim.{name}', getattr(self, name), 'must be in [0, 1)')
    if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
      fail('optim.warmup_steps', self.warmup_steps, 'must be an integer >= 0')


class ModelRules:
  """``config.model`` is the model builder's keyword arguments (any registry entry); these are
  the resume rules of its fields."""
  SHAPE_FIELDS = ('name', 'size', 'patch_size', 'num_classes', 'in_context_len', 'param_dtype',
                  'downsample', 'latent_channels', 'temporal_patch_size', 'attention')
  COSMETIC_FIELDS = ('remat', 'attention_impl')
  ADDED = {'param_dtype': 'float32', 'remat': 'none', 'attention_impl': 'auto'}

  @classmethod
  def resume_rule(cls, name: str) -> str:
    top = name.split('.')[0]
    if top in cls.SHAPE_FIELDS:
      return SHAPE
    return COSMETIC if top in cls.COSMETIC_FIELDS else OPTIMISATION


class DiffusionRules:
  """``config.diffusion`` builds the process; every field changes the run but the LWD mask
  fraction's logging bins."""

  @classmethod
  def resume_rule(cls, name: str) -> str:
    return COSMETIC if name == 'lwd.log_bins' else OPTIMISATION


# Section -> the rules of its fields ('' = the top-level fields). Sections not named here
# change the optimisation in every field.
RULES = {'': TopSpec, 'data': DataSpec, 'train': TrainSpec, 'sample': SampleSpec,
         'optim': OptimSpec, 'codec': CodecSpec, 'mesh': MeshSpec, 'distributed': DistributedSpec,
         'autoencoder': AutoencoderSpec, 'model': ModelRules, 'diffusion': DiffusionRules,
         'lora': LoraSection}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Every spec of a run, made once by the builder (:func:`from_config_dict`).

  ``model`` is the registry entry's name and keyword arguments and ``diffusion`` the process's
  settings (copies; the model's and the process's builders check them); ``autoencoder`` is None
  unless the run trains an autoencoder.
  """
  top: TopSpec
  data: DataSpec
  train: TrainSpec
  sample: SampleSpec
  codec: CodecSpec
  noise: NoiseSpec
  optim: OptimSpec
  mesh: MeshSpec
  distributed: DistributedSpec
  model: dict
  diffusion: dict
  autoencoder: Optional[AutoencoderSpec] = None
  lora: Optional[LoraSection] = None

  @property
  def seed(self) -> int:
    return self.top.seed


def from_config_dict(config: dict) -> RunSpec:
  """The specs of a whole run config (``config.to_dict()``).

  Raises:
    ValueError: a section is missing, or has an unknown or missing field (named).
  """
  def section(cls, name):
    if name not in config:
      raise ValueError(f'config.{name}: missing section')
    return cls.from_dict(config[name])
  top = TopSpec.from_dict({f.name: config[f.name] for f in dataclasses.fields(TopSpec)
                           if f.name in config})
  return RunSpec(top=top, data=section(DataSpec, 'data'), train=section(TrainSpec, 'train'),
                 sample=section(SampleSpec, 'sample'), codec=section(CodecSpec, 'codec'),
                 noise=section(NoiseSpec, 'noise'), optim=section(OptimSpec, 'optim'),
                 mesh=section(MeshSpec, 'mesh'),
                 distributed=section(DistributedSpec, 'distributed'),
                 model=dict(config['model']), diffusion=dict(config['diffusion']),
                 autoencoder=(section(AutoencoderSpec, 'autoencoder')
                              if 'autoencoder' in config else None),
                 lora=section(LoraSection, 'lora') if 'lora' in config else None)


def resume_rule(key: str) -> str:
  """The resume rule of a flattened config key (``'train.log_every'``, ``'seed'``)."""
  section, _, name = key.partition('.')
  if not name:
    return TopSpec.resume_rule(section)
  rules = RULES.get(section)
  return rules.resume_rule(name) if rules is not None else OPTIMISATION


def _added_defaults() -> dict:
  """Flattened keys of fields added after runs were saved, with the value such runs had."""
  added = {f'model.{k}': v for k, v in ModelRules.ADDED.items()}
  added['rng_impl'] = 'threefry2x32'
  added['data.frames'] = 0
  added['noise.video'] = 'per_frame'
  return added


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def check_resume(saved: dict, current: dict, allow_change: bool = False) -> list[str]:
  """Compares the config a run was started with against the one it resumes with.

  Args:
    saved: the run's ``config.json`` as a dict (a field it lacks counts as unchanged, but for
      the fields of :func:`_added_defaults`, which it had at their old default).
    current: the new config as a dict.
    allow_change: accept changes to fields that change the optimisation (they are returned).

  Returns:
    The accepted differences, as ``'field: old -> new'`` lines (log them as a warning).

  Raises:
    ValueError: a :data:`SHAPE` field differs (the checkpoint cannot be continued), or an
      :data:`OPTIMISATION` field differs without ``allow_change``.
  """
  old, new = _flatten(saved), _flatten(json.loads(json.dumps(current, default=str)))
  for key, default in _added_defaults().items():
    if key in new and key not in old:
      old[key] = default
  # Other fields the saved run lacks (sections added since, with their defaults) match.
  old = {**new, **old}
  differences = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                 if old.get(k) != new.get(k)}
  line = lambda k: f'{k}: {differences[k][0]!r} -> {differences[k][1]!r}'
  fatal = [line(k) for k in differences if resume_rule(k) == SHAPE]
  if fatal:
    raise ValueError('cannot resume: config differs from the saved run in fields that change '
                     'the checkpoint: ' + '; '.join(fatal) + ' (use a new --workdir, or '
                     '--config.init_from to start from its parameters)')
  changed = [line(k) for k in differences if resume_rule(k) == OPTIMISATION]
  if changed and not allow_change:
    raise ValueError('cannot resume: config differs from the saved run in fields that change the '
                     'optimisation: ' + '; '.join(changed) + '. Pass --allow_config_change to '
                     'continue anyway, or use a new --workdir')
  return [line(k) for k in differences]
