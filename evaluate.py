r"""Evaluates trained runs: unconditional samples (``--mode generate``) or the translation study.

``--mode generate`` (default): unconditional samples against held-out photos.

  python evaluate.py --workdirs runs/jit_sf/p16,runs/jit_sf/p16_sf --num 256 \
      --json docs/results/jit_sf.json --markdown docs/results/jit_sf.md --grids docs/results/jit_sf

For every run (its latest checkpoint's EMA parameters and its own sampler settings): ``--num``
samples from Gaussian noise with a fixed seed, compared with the run's held-out split
(``data.eval_split``, never seen in training) by

* ``swd_<side>`` / ``swd_mean``: sliced Wasserstein distance x 1e3 on Laplacian-pyramid patches
  (Karras et al. 2018; lower is better), per level and averaged;
* ``spectrum_distance``: mean |log10| ratio of radially averaged power spectra (decades);
* ``high_frequency_share``: share of power above half the Nyquist radius (vs the held-out value).

Reference rows on the same descriptors and directions: ``train photos`` (real vs real: the floor
at this sample size) and ``mean photo`` (every sample the mean training photo: a poor generator).
One JSON row per (run, metric set); a markdown table; a PNG grid of the first 64 samples per run.

``--mode translate``: the structure-vs-appearance study (``phipd_jax.evaluation.translation``)::

  python evaluate.py --mode translate --workdirs runs/study/gaussian,runs/study/fss0 \
      --tasks photo,flat_shaded,edges --num 100 --json docs/results/phipd_study.json \
      --grids docs/results/phipd_study

For every run and task: phi-PD from noise at ``--radii``, structured SDEdit at
``--structured_radii x --strengths``, SDEdit at ``--strengths`` and unconditional samples, all
with one key; one JSON row per (run, task, method, setting) with every metric, plus reference
rows per task (ground truth, mismatched ground truth, input itself, mean photo) and a grid per
(run, task). Plots and tables: ``scripts/phipd_study_report.py``. ``--eval_dir FOLDER`` runs the
same on any pix2pix-style AB folder (or a folder of photos for the photo tasks) instead of the
runs' held-out split; the folder is recorded in the JSON.

``--mode inversion``: the spectral-collapse / OVG benchmark (``phipd_jax.evaluation.inversion_study``)::

  python evaluate.py --mode inversion --workdirs runs/ovg/edm_cpu,runs/ovg/ddim_cpu \
      --phipd_workdirs runs/ovg/phipd_fss0 --num 200 --out_dir docs/results/ovg_study

On held-out edge maps (``edges``) and x8 down-up-sampled photos (``down8``) -> photos: SDEdit at
``--strengths``, translation by plain inversion and by OVG inversion (multi-domain runs in
``--workdirs``), phi-PD at ``--radii`` and structured SDEdit (``--phipd_workdirs``); structure,
realism and texture metrics per row, the collapse diagnostics of every inverted noise map, a
Gaussian reference row; the frontier, spectra and PCA figures.

``--mode lwd``: the Latent Wavelet Diffusion ablation (``phipd_jax.evaluation.lwd_study``)::

  python evaluate.py --mode lwd --autoencoders runs/lwd/ae_sc,runs/lwd/ae_plain \
      --workdirs runs/lwd/sc_fm,runs/lwd/sc_lwd,runs/lwd/plain_fm,runs/lwd/plain_lwd \
      --num 200 --out_dir docs/results/lwd_study

Each autoencoder's held-out PSNR / SSIM / LPIPS and latent spectrum; each latent run's decoded
samples against the held-out photos (SWD per pyramid level, FD-VGG, spectrum distance,
high-frequency share) and its logged LWD mask fractions.

``--mode collapse``: spectral collapse against source sparsity (Figs. 3 and 4 of Bourriez et al.,
``phipd_jax.evaluation.inversion_study.source_sweep``)::

  python evaluate.py --mode collapse --workdirs runs/ovg/edm_cpu,runs/ovg/ddim_cpu --num 200 \
      --out_dir docs/results/collapse_seeds/s0

Per multi-domain run: held-out photos, their x4 / x8 / x16 down-up copies and the edge maps
inverted with their class and sampled as photos; per-source noise diagnostics and PCA rank, the
per-map Fig. 4 correlations of source decorrelation with the noise's high-frequency power, the
output texture and the output's low-pass structure (``collapse_sweep.json`` / ``.md``).

``--mode clips``: the video phi-PD study (``phipd_jax.evaluation.clip_study``)::

  python evaluate.py --mode clips --workdirs runs/clips/s0 --num 64 --radii 4 \
      --strengths 0.75 --out_dir docs/results/clip_study/s0

Per clip run: held-out camera-motion clips translated by phi-PD at ``--radii`` with each clip
noise option (per_frame, shared_magnitude, spatiotemporal, flow_warped) and by SDEdit at
``--strengths`` (i.i.d. and flow-warped Gaussian); warping error and flicker along the exact
flow, per-frame structure (gradient correlation, edge F) and FD-VGG on frames
(``clip_study.json`` / ``.md``, a frame strip and GIFs per row).

``--mode fid``: paper-comparable FID, sFID, KID, IS, precision / recall
(``phipd_jax.evaluation.fid_run``; the weights file ``pt_inception-2015-12-05-6726825d.pth`` of
pytorch-fid, brought by the user, or ``$PHIPD_FID_WEIGHTS``)::

  python evaluate.py --mode fid --images runs/jit_sf/p16 --reference runs/jit_sf/p16 \
      --fid_weights pt_inception-2015-12-05-6726825d.pth --num 1000 --json fid.json

``--images``: a run directory (``--num`` samples generated, class-balanced), an image folder,
an ADM ``.npz`` batch or ``tfds:NAME:SPLIT``; ``--reference``: the same (a run directory means
its held-out split) or a statistics ``.npz`` (``--save_reference`` writes one; ADM reference
batches work as they are). With ``--fid_weights`` (or the variable), ``--mode generate`` and
``--mode lwd`` add FID / KID / IS / precision / recall columns.
"""

import phipd_jax

if __name__ == '__main__':  # First: re-executes once, before JAX loads.
  phipd_jax.use_huge_page_malloc()

# pylint: disable=g-import-not-at-top,wrong-import-position

import os

from absl import flags

from phipd_jax import checkpoint, console
from phipd_jax.evaluation import (clip_study, fid_run, inception, inversion_study, lwd_study,
                                  report, runs)
from phipd_jax.evaluation import translation

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Run directories (train.py), comma-separated; '
                              'also accepted as several values after the flag.')
_NUM = flags.DEFINE_integer('num', 256, 'Samples (generate) or inputs (translate) per run.',
                            lower_bound=1)
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Samples per compiled batch.', lower_bound=1)
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: each run\'s config).',
                              lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling and metric seed (the same for every run).')
_JSON = flags.DEFINE_string('json', None, 'Write the rows here.')
_MARKDOWN = flags.DEFINE_string('markdown', None, 'Write a markdown table here.')
_GRIDS = flags.DEFINE_string('grids', None, 'Folder for <run>.png sample grids.')
_MODE = flags.DEFINE_enum('mode', 'generate',
                          ['generate', 'translate', 'inversion', 'collapse', 'lwd', 'clips',
                           'fid'],
                          'What to evaluate.')
_IMAGES = flags.DEFINE_string('images', None, 'FID: a run directory, an image folder, an .npz '
                              'with arr_0, or tfds:NAME:SPLIT[:FEATURE].')
_REFERENCE = flags.DEFINE_string('reference', None, 'FID: like --images (a run: its held-out '
                                 'split), or a statistics .npz (ours or an ADM reference batch).')
_FID_WEIGHTS = flags.DEFINE_string('fid_weights', None, 'FID Inception weights (pytorch-fid\'s '
                                   'pt_inception-2015-12-05-6726825d.pth); default '
                                   '$PHIPD_FID_WEIGHTS.')
_NUM_REFERENCE = flags.DEFINE_integer('num_reference', None, 'FID: at most this many reference '
                                      'images (default all).', lower_bound=2)
_SAVE_REFERENCE = flags.DEFINE_string('save_reference', None, 'FID: also write the reference '
                                      'statistics (mu, sigma, spatial, features) to this .npz.')
_KID_SUBSETS = flags.DEFINE_integer('kid_subsets', 100, 'FID: KID subsets.', lower_bound=1)
_KID_SUBSET_SIZE = flags.DEFINE_integer('kid_subset_size', 1000, 'FID: rows per KID subset '
                                        '(lowered to the smaller set).', lower_bound=2)
_IS_SPLITS = flags.DEFINE_integer('is_splits', 10, 'FID: Inception Score splits.', lower_bound=1)
_FID_METHOD = flags.DEFINE_enum('fid_method', 'eigh', ['eigh', 'sqrtm'], 'FID: the trace of '
                                'the covariance root by eigendecomposition (fast) or by '
                                'pytorch-fid\'s scipy sqrtm (its procedure, 9x slower).')
_AUTOENCODERS = flags.DEFINE_list('autoencoders', [], 'LWD: autoencoder runs for the '
                                  'reconstruction report and the latent spectra.')
_TASKS = flags.DEFINE_list('tasks', None, 'Tasks (translate: photo, flat_shaded, edges; '
                           'inversion: edges, down8; default all of the mode\'s).')
_PHIPD_WORKDIRS = flags.DEFINE_list('phipd_workdirs', [], 'Inversion: FSS-trained photo runs '
                                    'for the phi-PD and structured SDEdit rows.')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Inversion: folder for ovg_study.json, '
                               'ovg_study.md, frontier.png, spectra_<task>.png, pca.png and '
                               'the grids. LWD: lwd_study.{json,md,png} and the grids.')
_PCA = flags.DEFINE_bool('pca', True, 'Inversion: the PCA of inverted x4/x8/x16 sources with '
                         'the first run (pca.png, pca.json).')
_RADII = flags.DEFINE_list('radii', ['2', '4', '8', '16'], 'Translate: phi-PD radii.')
_STRUCTURED_RADII = flags.DEFINE_list('structured_radii', ['4'],
                                      'Translate: structured SDEdit radii.')
_STRENGTHS = flags.DEFINE_list('strengths', ['0.4', '0.6', '0.8'],
                               'Translate: SDEdit and structured SDEdit strengths.')
_EVAL_DIR = flags.DEFINE_string('eval_dir', None, 'Evaluate on this folder instead of the runs\' '
                                 'held-out split: a pix2pix AB folder (photo | edge map; all '
                                 'tasks) or a folder of photos (photo, flat_shaded).')
_CHECKPOINT_STEPS = flags.DEFINE_list('checkpoint_steps', [], 'LWD: also evaluate these training '
                                      'steps\' checkpoints (each kept on disk by every run): '
                                      'metric-vs-step curves in the JSON\'s convergence rows.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show library logs.')


def workdirs(argv) -> list[str]:
  """``--workdirs`` plus any workdirs given after it as separate arguments, all checked."""
  extra = list(argv[1:])
  found = list(_WORKDIRS.value or []) + extra
  if not found and not (_MODE.value == 'lwd' and _AUTOENCODERS.value):
    raise ValueError(f'--mode {_MODE.value} needs --workdirs (train.py run directories)'
                     + (' or --autoencoders' if _MODE.value == 'lwd' else ''))
  for workdir in found:
    if not os.path.isfile(os.path.join(workdir, 'config.json')):
      raise FileNotFoundError(f'--workdirs: {workdir} is not a train.py run directory (no '
                              'config.json)')
  return found


def floats(name: str, values) -> list[float]:
  try:
    return [float(v) for v in values]
  except ValueError:
    raise ValueError(f'--{name}={",".join(values)}: not a list of numbers') from None


def checkpoint_steps() -> list[int]:
  """--checkpoint_steps as positive integers."""
  try:
    steps = [int(step) for step in _CHECKPOINT_STEPS.value]
  except ValueError:
    raise ValueError(f'--checkpoint_steps={",".join(_CHECKPOINT_STEPS.value)}: not a list of '
                     'integers') from None
  if any(step < 1 for step in steps):
    raise ValueError(f'--checkpoint_steps: steps must be >= 1, got {steps}')
  return steps


def run_inversion(dirs):
  """The spectral-collapse / OVG benchmark (phipd_jax.evaluation.inversion_study)."""
  phipd = list(_PHIPD_WORKDIRS.value)
  for workdir in phipd:
    if not os.path.isfile(os.path.join(workdir, 'config.json')):
      raise FileNotFoundError(f'--phipd_workdirs: {workdir} is not a train.py run directory')
  tasks = _TASKS.value or list(inversion_study.TASKS)
  unknown = sorted(set(tasks) - set(inversion_study.TASKS))
  if unknown:
    raise ValueError(f'--tasks: {unknown} are not inversion tasks {inversion_study.TASKS}')
  radii = floats('radii', _RADII.value)
  strengths = floats('strengths', _STRENGTHS.value)
  structured = [(r, s) for r in floats('structured_radii', _STRUCTURED_RADII.value)
                for s in strengths if s >= 0.6]
  summary = inversion_study.run_study(
      dirs, phipd, tasks=tasks, num=_NUM.value, strengths=strengths, radii=radii,
      structured=structured, batch_size=_BATCH.value, seed=_SEED.value, steps=_STEPS.value,
      out_dir=_OUT_DIR.value)
  if _PCA.value:
    pca = inversion_study.pca_study(
        dirs[0], num=_NUM.value, batch_size=_BATCH.value, seed=_SEED.value,
        steps=_STEPS.value,
        path=os.path.join(_OUT_DIR.value, 'pca.png') if _OUT_DIR.value else None)
    if _OUT_DIR.value:
      report.write_json(os.path.join(_OUT_DIR.value, 'pca.json'), pca)
    ranks = ', '.join(f'{k} {v:.3f}' for k, v in pca['effective_rank'].items())
    print(f'PCA effective rank of inverted maps: {ranks}')
  print(inversion_study.markdown(summary['rows']))
  where = _OUT_DIR.value or 'the console (no --out_dir)'
  print(f'evaluated {len(dirs) + len(phipd)} run(s), {len(summary["rows"])} rows -> {where}')


def run_collapse(dirs):
  """Spectral collapse against source sparsity (inversion_study.source_sweep)."""
  sweeps = [inversion_study.source_sweep(workdir, num=_NUM.value, batch_size=_BATCH.value,
                                         seed=_SEED.value, steps=_STEPS.value)
            for workdir in dirs]
  table = inversion_study.sweep_markdown(sweeps)
  if _OUT_DIR.value:
    for sweep in sweeps:  # Four decimals per map keep the JSON small.
      sweep['per_map'] = {k: [round(v, 4) if isinstance(v, float) else v for v in values]
                          for k, values in sweep['per_map'].items()}
    report.write_study(_OUT_DIR.value, 'collapse_sweep', {'runs': sweeps}, table)
  print(table)
  where = _OUT_DIR.value or 'the console (no --out_dir)'
  print(f'evaluated {len(dirs)} run(s) over {len(inversion_study.SWEEP_SOURCES)} sources -> '
        f'{where}')


def run_lwd(dirs):
  """The Latent Wavelet Diffusion ablation (phipd_jax.evaluation.lwd_study)."""
  for workdir in _AUTOENCODERS.value:
    if not os.path.isfile(os.path.join(workdir, 'config.json')):
      raise FileNotFoundError(f'--autoencoders: {workdir} is not a train.py run directory')
  steps = checkpoint_steps()
  for workdir in dirs:  # Before any sampling: every asked checkpoint is on disk.
    missing = [step for step in steps if not os.path.isdir(
        os.path.join(checkpoint.checkpoint_dir(workdir), str(step)))]
    if missing:
      raise FileNotFoundError(f'--checkpoint_steps: {workdir} kept no checkpoint of steps '
                              f'{missing} (train.checkpoint_every / train.keep_checkpoints)')
  summary = lwd_study.run_study(_AUTOENCODERS.value, dirs, num=_NUM.value,
                                batch_size=_BATCH.value, seed=_SEED.value, steps=_STEPS.value,
                                out_dir=_OUT_DIR.value, fid_weights=_fid_weights(),
                                checkpoint_steps=steps)
  print(lwd_study.markdown(summary))
  where = _OUT_DIR.value or 'the console (no --out_dir)'
  print(f'evaluated {len(_AUTOENCODERS.value)} autoencoder(s) and {len(dirs)} run(s) -> {where}')


def run_clips(dirs):
  """The video phi-PD study (phipd_jax.evaluation.clip_study)."""
  radii, strengths = floats('radii', _RADII.value), floats('strengths', _STRENGTHS.value)
  if any(not r >= 0 for r in radii) or any(not 0 < s <= 1 for s in strengths):
    raise ValueError(f'--radii must be >= 0 and --strengths in (0, 1], got {radii}, {strengths}')
  summary = clip_study.run_study(dirs, num=_NUM.value, radii=radii, strengths=strengths,
                                 batch_size=_BATCH.value, seed=_SEED.value, steps=_STEPS.value,
                                 out_dir=_OUT_DIR.value)
  print(clip_study.markdown(summary['rows']))
  where = _OUT_DIR.value or 'the console (no --out_dir)'
  print(f'evaluated {len(dirs)} clip run(s), {len(summary["rows"])} rows -> {where}')


def _fid_weights():
  """--fid_weights, else $PHIPD_FID_WEIGHTS, else None (no FID columns)."""
  return _FID_WEIGHTS.value or os.environ.get(inception.WEIGHTS_ENV) or None


def run_fid(argv):
  """FID and the other Inception metrics (phipd_jax.evaluation.fid_run)."""
  if len(argv) > 1 or _WORKDIRS.value:
    raise ValueError('--mode fid takes --images and --reference, not --workdirs')
  if not _IMAGES.value or not _REFERENCE.value:
    raise ValueError('--mode fid needs --images and --reference')
  fid_run.evaluate_fid(
      _IMAGES.value, _REFERENCE.value, weights=_FID_WEIGHTS.value,
      num=_NUM.value if flags.FLAGS['num'].present else None,
      batch_size=_BATCH.value, seed=_SEED.value, num_reference=_NUM_REFERENCE.value,
      json_path=_JSON.value, save_reference=_SAVE_REFERENCE.value,
      kid_subsets=_KID_SUBSETS.value, kid_subset_size=_KID_SUBSET_SIZE.value,
      is_splits=_IS_SPLITS.value, fid_method=_FID_METHOD.value)


def main(argv):
  if _MODE.value == 'fid':
    run_fid(argv)
    return
  dirs = workdirs(argv)
  if _EVAL_DIR.value and not os.path.isdir(_EVAL_DIR.value):
    raise FileNotFoundError(f'--eval_dir {_EVAL_DIR.value} is not a folder')
  if _MODE.value == 'lwd':
    run_lwd(dirs)
    return
  if _MODE.value == 'inversion':
    run_inversion(dirs)
    return
  if _MODE.value == 'collapse':
    run_collapse(dirs)
    return
  if _MODE.value == 'clips':
    run_clips(dirs)
    return
  tasks = _TASKS.value or list(translation.TASKS)
  if _MODE.value == 'translate':
    summary = runs.evaluate_translation(
        dirs, tasks=tasks, num=_NUM.value, radii=floats('radii', _RADII.value),
        structured_radii=floats('structured_radii', _STRUCTURED_RADII.value),
        strengths=floats('strengths', _STRENGTHS.value), batch_size=_BATCH.value,
        seed=_SEED.value, steps=_STEPS.value, json_path=_JSON.value, grids=_GRIDS.value,
        eval_dir=_EVAL_DIR.value)
  else:
    summary = runs.evaluate_generation(
        dirs, num=_NUM.value, batch_size=_BATCH.value, seed=_SEED.value,
        steps=_STEPS.value, json_path=_JSON.value, markdown=_MARKDOWN.value, grids=_GRIDS.value,
        eval_dir=_EVAL_DIR.value,
        fid_weights=_fid_weights())
  where = _JSON.value or 'the console (no --json)'
  print(f'evaluated {len(dirs)} run(s), {len(summary["rows"])} rows -> {where}')


if __name__ == '__main__':
  console.run(main)
