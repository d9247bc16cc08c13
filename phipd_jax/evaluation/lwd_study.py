"""The Latent Wavelet Diffusion ablation: autoencoders and latent diffusion runs on held-out photos.

Two parts (``evaluate.py --mode lwd``; ``scripts/lwd_study.sh`` trains the runs):

* :func:`autoencoder_report` -- each autoencoder run's reconstruction PSNR, SSIM and LPIPS on
  held-out photos, and the radially averaged power spectrum of its (unit-std) latents with the
  share of high-frequency power: the scale-consistency term of Sigillo et al. (arXiv:2506.00433,
  Eq. 1) should leave less spurious high-frequency energy in the latents.
* :func:`diffusion_rows` -- each latent diffusion run's decoded samples against the held-out
  photos: SWD per Laplacian-pyramid level (the finest level is where LWD's detail mask should
  help), FD on VGG-16 features, the distance between radially averaged spectra, the share of
  high-frequency power; and, from ``metrics.jsonl``, the LWD mask's supervised fraction per sigma
  bin over the last quarter of training.

Every set of samples is compared on the same metric key (same SWD descriptors and directions).
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from phipd_jax import saved_run, writers
from phipd_jax.data import pipeline
from phipd_jax.evaluation import fid_data, inception, perceptual, report, runs, spectra
from phipd_jax.evaluation import structure

AUTOENCODER_COLUMNS = ('name', 'alpha', 'beta', 'lam', 'train_steps', 'psnr', 'ssim',
                       'lpips', 'latent_scale', 'latent_high_frequency_share')
DIFFUSION_COLUMNS = ('name', 'autoencoder', 'lwd', 'ell', 'train_steps', 'final_train_loss',
                     'swd_64', 'swd_32', 'swd_16', 'swd_mean', 'fd_vgg', 'spectrum_distance',
                     'high_frequency_share')


def _load_autoencoder(workdir: str):
  _, exp, restored = saved_run.load_run(workdir, ('ema_params',))
  if exp.objective != 'autoencoder':
    raise ValueError(f"{workdir} is a model.name={exp.spec.model['name']!r} run, not an "
                     'autoencoder')
  return exp.spec, nnx.merge(exp.graphdef, restored['ema_params'])


def _encode_decode(model, photos: np.ndarray, batch_size: int):
  encode = jax.jit(lambda x: model.encode(x)[0])
  decode = jax.jit(model.decode)
  latents, outputs = [], []
  for start in range(0, len(photos), batch_size):
    z = encode(jnp.asarray(photos[start:start + batch_size]))
    latents.append(np.asarray(z))
    outputs.append(np.asarray(decode(z)))
  return np.concatenate(latents), np.clip(np.concatenate(outputs), -1.0, 1.0)


def autoencoder_report(workdir: str, photos: np.ndarray, batch_size: int = 50,
                       extra: Optional[np.ndarray] = None
                       ) -> tuple[dict, np.ndarray, np.ndarray, Optional[np.ndarray]]:
  """Reconstruction metrics and the latent spectrum of an autoencoder run.

  Args:
    workdir: a ``train.py`` run of ``configs/autoencoder_lwd.py``.
    photos: float32 ``[N, S, S, 3]`` in ``[-1, 1]``, held out from its training.
    batch_size: images per compiled call.
    extra: more images ``[M, S, S, 3]`` to reconstruct with the same loaded model (not scored).

  Returns:
    ``(row, reconstructions [N, S, S, 3], latent spectrum [h // 2 + 1], reconstructions of
    extra or None)``: the row holds PSNR and SSIM (dB and [0, 1], means over images; dm-pix on
    [0, 1]), LPIPS (AlexNet, the standard metric), the latents' ``1 / std`` and the
    high-frequency share of the unit-std latents' radial power (bins above half the latent's
    Nyquist radius). Reconstructions are ``D(mean E(x))`` clipped to ``[-1, 1]``.

  Raises:
    ValueError: the run is not an autoencoder.
  """
  spec, model = _load_autoencoder(workdir)
  latents, outputs = _encode_decode(model, photos, batch_size)
  extra_outputs = None if extra is None else _encode_decode(model, extra, batch_size)[1]
  scale = 1.0 / float(np.std(latents))
  spectrum = np.asarray(spectra.radial_power_spectrum(latents * scale))
  row = {
      'name': os.path.basename(os.path.normpath(workdir)), 'workdir': workdir,
      'alpha': spec.autoencoder.alpha, 'beta': spec.autoencoder.beta,
      'lam': spec.autoencoder.lam, 'downsample': spec.model['downsample'],
      'train_steps': spec.train.num_steps, 'num_images': len(photos),
      'psnr': float(np.mean(structure.psnr(outputs, photos))),
      'ssim': float(np.mean(structure.ssim(outputs, photos))),
      'lpips': float(np.mean(perceptual.lpips(outputs, photos))),
      'latent_scale': scale,
      'latent_high_frequency_share': spectra.high_frequency_share(spectrum),
  }
  return row, outputs, spectrum, extra_outputs


def mask_fractions(workdir: str, last_fraction: float = 0.25) -> dict[str, float]:
  """Mean logged ``lwd_mask_fraction_s<sigma>`` over the last ``last_fraction`` of the logged
  rows of ``metrics.jsonl`` (empty for a run without the LWD mask)."""
  rows = [r for r in writers.read_metrics(workdir) if any(
      k.startswith('lwd_mask_fraction_') for k in r)]
  if not rows:
    return {}
  tail = rows[-max(1, int(len(rows) * last_fraction)):]
  names = sorted(k for k in tail[0] if k.startswith('lwd_mask_fraction_'))
  return {name: float(np.mean([r[name] for r in tail])) for name in names}


def diffusion_rows(workdirs: Sequence[str], reference: np.ndarray, key: jax.Array, *,
                   num: int, batch_size: int = 50, seed: int = 0,
                   steps: Optional[int] = None, fid_scorer=None,
                   checkpoint_step: Optional[int] = None
                   ) -> tuple[list[dict], dict[str, np.ndarray]]:
  """Samples of every latent diffusion run against ``reference`` (held-out photos).

  ``fid_scorer``: ``images -> {fid, kid_mean, ...}`` against the same photos, or None.
  ``checkpoint_step``: sample every run's checkpoint of that training step (kept on disk)
  instead of its latest; the rows then carry ``checkpoint_step``.

  Returns:
    ``(rows, samples by run name)``: each row holds the run's description, its codec, LWD
    settings, :data:`DIFFUSION_COLUMNS` metrics, the sampling time and the mask fractions.

  Raises:
    ValueError: runs whose image size differs from the reference's.
  """
  rows, samples_by_name = [], {}
  for workdir in workdirs:
    spec, sampler, params = runs.load(workdir, steps, checkpoint_step)
    if spec.data.image_size != reference.shape[1]:
      raise ValueError(f'{workdir}: image size {spec.data.image_size} differs from the '
                       f'reference photos\' {reference.shape[1]}')
    row = runs.describe_run(workdir, spec)
    row.update(autoencoder=os.path.basename(os.path.normpath(spec.codec.workdir)) or 'pixels',
               lwd=bool(spec.diffusion['lwd']['enabled']),
               ell=spec.diffusion['lwd']['ell'] if spec.diffusion['lwd']['enabled'] else None,
               checkpoint_step=checkpoint_step or spec.train.num_steps)
    started = time.perf_counter()
    samples = runs.generate(sampler, params, spec, num, batch_size, seed)
    row['sample_seconds'] = time.perf_counter() - started
    row.update(runs.image_metrics(samples, reference, key))
    row['fd_vgg'] = perceptual.fd_vgg(samples, reference)
    if fid_scorer is not None:
      row.update(fid_scorer(samples))
    row.update(mask_fractions(workdir))
    logging.info('%s: %s', row['name'], {k: row.get(k) for k in DIFFUSION_COLUMNS})
    rows.append(row)
    samples_by_name[row['name']] = samples
  return rows, samples_by_name


def plot(autoencoders: Sequence[dict], latent_spectra: dict[str, np.ndarray],
         diffusion: Sequence[dict], image_spectra: dict[str, np.ndarray], path: str):
  """Three panels: the latents' radial power per autoencoder; the decoded samples' radial power
  against the held-out photos'; SWD per pyramid level per run (and, if logged, the LWD mask
  fraction per sigma)."""
  fractions = [r for r in diffusion if any(k.startswith('lwd_mask_fraction_') for k in r)]
  panels = 4 if fractions else 3
  figure, axes = report.new_figure(1, panels, (4.2 * panels, 3.6))
  axes = axes[0]
  for row in autoencoders:
    spectrum = latent_spectra[row['name']]
    axes[0].semilogy(np.arange(1, len(spectrum)), spectrum[1:],
                     label=f"{row['name']} (alpha={row['alpha']:g})")
  axes[0].set(title='latent radial power (unit std)', xlabel='frequency (cycles / latent)')
  axes[0].legend(fontsize=7)
  for name, spectrum in image_spectra.items():
    style = dict(color='k', linewidth=2) if name == 'held-out photos' else {}
    axes[1].semilogy(np.arange(1, len(spectrum)), spectrum[1:], label=name, **style)
  axes[1].set(title='decoded samples: radial power', xlabel='frequency (cycles / image)')
  axes[1].legend(fontsize=7)
  levels = sorted({k for r in diffusion for k in r if k.startswith('swd_') and k != 'swd_mean'},
                  key=lambda k: -int(k.split('_')[1]))
  for row in diffusion:
    axes[2].plot([k.split('_')[1] for k in levels], [row[k] for k in levels], marker='o',
                 label=row['name'])
  axes[2].set(title='SWD x 1e3 per pyramid level (lower = better)', xlabel='level side (px)')
  axes[2].legend(fontsize=7)
  if fractions:
    for row in fractions:
      names = sorted(k for k in row if k.startswith('lwd_mask_fraction_'))
      sigmas = [float(k.split('_s')[-1]) for k in names]
      axes[3].plot(sigmas, [row[k] for k in names], marker='o',
                   label=f"{row['name']} (ell={row['ell']})")
    axes[3].set(title='LWD mask: supervised fraction', xlabel='sigma (flow t)', ylim=(0, 1.05))
    axes[3].legend(fontsize=7)
  report.save_figure(figure, path, dpi=120)


def run_study(autoencoders: Sequence[str], workdirs: Sequence[str], *, num: int,
              batch_size: int = 50, seed: int = 0, steps: Optional[int] = None,
              out_dir: Optional[str] = None, fid_weights: Optional[str] = None,
              checkpoint_steps: Sequence[int] = ()) -> dict:
  """Both parts on the first ``num`` held-out photos of the first run's data; writes
  ``lwd_study.json``, ``lwd_study.md``, ``lwd_study.png``, ``reconstruct_<ae>.png`` and
  ``samples_<run>.png`` into ``out_dir`` when given. Returns the JSON summary.

  ``fid_weights``: the FID Inception weights (loaded and checked first); when given, the sample
  and reference rows also get FID / KID / IS / precision / recall against the held-out photos
  (the LWD paper's FID table; here at ``num`` samples, so read KID with its std).

  ``checkpoint_steps``: earlier training steps whose checkpoints every run kept; each is sampled
  and scored like the final one, into ``summary['convergence']`` (metric-vs-step curves, the
  paper's faster-convergence claim).

  Raises:
    ValueError: no runs, or runs on different data.
  """
  if not autoencoders and not workdirs:
    raise ValueError('lwd study: give autoencoder runs, latent diffusion runs, or both')
  net = inception.extractor(fid_weights) if fid_weights else None
  first = workdirs[0] if workdirs else autoencoders[0]
  data = saved_run.load_spec(first).data
  photos, _ = pipeline.held_out_inputs(data, 'photo', num)
  fid_scorer = None
  if net is not None:
    photo_features = inception.features(net, [writers.to_uint8(photos)], batch_size)
    fid_scorer = lambda images: fid_data.score_samples(net, images, photo_features, batch_size)
  key = jax.random.key(seed + 1)
  train_photos = pipeline.eval_images(data, data.train_split, data.image_key, num)
  # Reference rows: real training photos (the floor), and each autoencoder's reconstructions
  # of them (the best a model in that latent space can do).
  references = [('train photos', 'reference', train_photos)]
  ae_rows, latent_spectra = [], {}
  for workdir in autoencoders:
    row, outputs, spectrum, train_outputs = autoencoder_report(workdir, photos,
                                                               batch_size, extra=train_photos)
    references.append((f"{row['name']} reconstructions of train photos", row['name'],
                       train_outputs))
    ae_rows.append(row)
    latent_spectra[row['name']] = spectrum
    if out_dir:
      writers.save_png(os.path.join(out_dir, f"reconstruct_{row['name']}.png"),
                       writers.image_grid([photos[:8], outputs[:8]],
                                          ['held-out photo', row['name']], upscale=1))
    print(json.dumps(row), flush=True)
  rows, samples = diffusion_rows(workdirs, photos, key, num=num,
                                 batch_size=batch_size, seed=seed, steps=steps,
                                 fid_scorer=fid_scorer)
  convergence = []
  for checkpoint_step in checkpoint_steps:
    convergence += diffusion_rows(workdirs, photos, key, num=num, batch_size=batch_size,
                                  seed=seed, steps=steps, fid_scorer=fid_scorer,
                                  checkpoint_step=int(checkpoint_step))[0]
  reference_rows = []
  for name, autoencoder, images in references:
    reference_row = {'name': name, 'autoencoder': autoencoder}
    reference_row.update(runs.image_metrics(images, photos, key))
    reference_row['fd_vgg'] = perceptual.fd_vgg(images, photos)
    if fid_scorer is not None:
      reference_row.update(fid_scorer(images))
    reference_rows.append(reference_row)
  image_spectra = {'held-out photos': np.asarray(spectra.radial_power_spectrum(photos))}
  for name, images in samples.items():
    image_spectra[name] = np.asarray(spectra.radial_power_spectrum(images))
    if out_dir:
      writers.save_png(os.path.join(out_dir, f'samples_{name}.png'),
                       writers.sample_grid(images[:64], upscale=1))
  summary = {'reference': f'{data.name}/{data.eval_split}', 'num': len(photos), 'seed': seed,
             'autoencoders': ae_rows, 'rows': rows + reference_rows,
             'latent_spectra': {k: v.tolist() for k, v in latent_spectra.items()},
             'image_spectra': {k: v.tolist() for k, v in image_spectra.items()}}
  if convergence:
    summary['convergence'] = convergence + rows
  if net is not None:
    summary['fid_weights_sha256'] = net.weights_sha256
  if out_dir:
    report.write_study(out_dir, 'lwd_study', summary, markdown(summary))
    plot(ae_rows, latent_spectra, rows, image_spectra, os.path.join(out_dir, 'lwd_study.png'))
  return summary


def markdown(summary: dict) -> str:
  """Both Markdown tables of a :func:`run_study` summary (and the mask fractions)."""
  parts = []
  if summary['autoencoders']:
    parts.append('**Autoencoders** (held-out reconstructions)\n\n' +
                 report.markdown_table(summary['autoencoders'], AUTOENCODER_COLUMNS))
  if summary['rows']:
    columns = DIFFUSION_COLUMNS + (runs.FID_COLUMNS if 'fid' in summary['rows'][0] else ())
    parts.append('**Latent diffusion** (decoded samples vs held-out photos)\n\n' +
                 report.markdown_table(summary['rows'], columns))
    fraction_rows = [r for r in summary['rows'] if any(
        k.startswith('lwd_mask_fraction_') for k in r)]
    if fraction_rows:
      names = sorted(k for k in fraction_rows[0] if k.startswith('lwd_mask_fraction_'))
      parts.append('**LWD mask: supervised fraction per sigma** (last quarter of training)\n\n'
                   + report.markdown_table(fraction_rows, ('name', 'ell') + tuple(names)))
  return '\n\n'.join(parts) + '\n'
