"""``evaluate.py --mode fid``: FID, KID, IS, sFID and precision / recall of images or a run.

``images``: a run directory (``--num`` samples are generated first, class-balanced for a
class-conditional run, quantised to uint8 as saved PNGs would be), a folder of images, an ADM
``.npz`` batch (``arr_0``) or a ``tfds:NAME:SPLIT[:FEATURE]`` split. ``reference``: the same
kinds (a run directory stands for its held-out split), or an ``.npz`` of statistics (ours from
``--save_reference`` or an ADM reference batch). Every argument and the weights file are
checked before any image is read or sampled.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from phipd_jax import saved_run, writers
from phipd_jax.data import pipeline
from phipd_jax.evaluation import fid, fid_data, inception, report, runs

SUMMARY_KEYS = ('fid', 'sfid', 'kid_mean', 'kid_std', 'is_mean', 'is_std', 'precision',
                'recall')


def _is_run(path: str) -> bool:
  return os.path.isfile(os.path.join(path, 'config.json'))


def _check_where(where: str, name: str) -> None:
  if where.startswith('tfds:') or _is_run(where) or os.path.isdir(where):
    return
  if where.endswith('.npz') and os.path.isfile(where):
    return
  raise FileNotFoundError(f'--{name} {where}: not a run directory, an image folder, an .npz file '
                          'or tfds:NAME:SPLIT')


def _run_samples(workdir: str, num: int, batch_size: int, seed: int) -> fid_data.Source:
  spec, sampler, params = runs.load(workdir)
  samples = runs.generate(sampler, params, spec, num, batch_size, seed, class_balanced=True,
                          progress=f'sampling {os.path.basename(os.path.normpath(workdir))}')
  images = writers.to_uint8(samples)
  return fid_data.Source(f'run {workdir} ({num} samples, seed {seed})', len(images),
                         lambda size: (images[i:i + size] for i in range(0, len(images), size)))


def _held_out(workdir: str, num: Optional[int]) -> fid_data.Source:
  spec = saved_run.load_spec(workdir)
  images = writers.to_uint8(pipeline.eval_images(spec.data, spec.data.eval_split,
                                                 spec.data.image_key, num or 10**9))
  return fid_data.Source(f'{spec.data.name}/{spec.data.eval_split} (held out by {workdir})',
                         len(images),
                         lambda size: (images[i:i + size] for i in range(0, len(images), size)))


def evaluate_fid(images: str, reference: str, *, weights: Optional[str], num: Optional[int],
                 batch_size: int = 50, seed: int = 0, num_reference: Optional[int] = None,
                 json_path: Optional[str] = None, save_reference: Optional[str] = None,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
                 fid_method: str = 'eigh') -> dict:
  """Scores ``images`` against ``reference`` (see the module note); ``num``: samples to
  generate from a run (required then), or at most this many images of a source (None: all);
  returns (and writes to
  ``json_path``) ``{fid, sfid, kid_mean, kid_std, is_mean, is_std, precision, recall,
  num_samples, num_reference, ..., weights_sha256}``.

  Raises:
    FileNotFoundError / ValueError: a missing or unusable argument (before any work).
    inception.WeightsError: no weights file, or not the FID Inception's (before any work).
  """
  _check_where(images, 'images')
  _check_where(reference, 'reference')
  if _is_run(images) and not num:
    raise ValueError(f'--num: how many samples to generate from the run {images} (the papers '
                     'use 50000; small-sample FID is biased up)')
  weights = inception.resolve_weights(weights)
  reference_file = None
  if reference.endswith('.npz') and os.path.isfile(reference):
    reference_file = fid_data.read_reference(reference)
  if not _is_run(images):
    samples_source = fid_data.open_source(images, num)  # Names a bad folder / file now.
  net = inception.extractor(weights)
  timings = {}

  start = time.perf_counter()
  stats, reference_features = {}, {}
  if reference_file is not None:
    stats = {k: reference_file[k] for k in fid_data.STATISTIC_KEYS if k in reference_file}
    if reference_file.get('weights_sha256', net.weights_sha256) != net.weights_sha256:
      print(f'warning: {reference} was computed with other weights '
            f'({reference_file["weights_sha256"][:12]}...); its statistics do not match these')
    if 'pool' in reference_file:
      reference_features = {'pool': reference_file['pool']}
    elif reference_file['images']:
      reference_features = fid_data.source_features(
          net, fid_data.npz_source(reference, num_reference), batch_size, 'reference')
  else:
    source = (_held_out(reference, num_reference) if _is_run(reference)
              else fid_data.open_source(reference, num_reference))
    reference_features = fid_data.source_features(net, source, batch_size, 'reference')
  reference_description = (f'npz {reference}' if reference_file is not None else
                           source.description)
  timings['reference_seconds'] = time.perf_counter() - start
  if save_reference:
    fid_data.save_reference(save_reference, reference_features, net.weights_sha256,
                            reference_description)
    print(f'reference statistics -> {save_reference}')

  start = time.perf_counter()
  if _is_run(images):
    samples_source = _run_samples(images, num, batch_size, seed)
  timings['sample_seconds'] = time.perf_counter() - start
  start = time.perf_counter()
  sample_features = fid_data.source_features(net, samples_source, batch_size, 'images')
  timings['feature_seconds'] = time.perf_counter() - start

  result = fid.all_metrics(sample_features, reference_features, stats or None,
                           kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                           is_splits=is_splits, seed=2020, method=fid_method)
  result.update({'images': samples_source.description, 'reference': reference_description,
                 'weights': net.weights, 'weights_sha256': net.weights_sha256,
                 'devices': net.mesh.size, 'seed': seed, **timings})
  if json_path:
    report.write_json(json_path, result)
  print(summary_line(result))
  return result


def summary_line(result: dict) -> str:
  """One line: every metric present, with the sample counts next to the FID."""
  parts = [f'FID {result["fid"]:.3f} ({result["num_samples"]} samples vs '
           f'{result["num_reference"] or "stats of"} reference; biased up at small N)']
  if 'sfid' in result:
    parts.append(f'sFID {result["sfid"]:.3f}')
  if 'kid_mean' in result:
    parts.append(f'KID {result["kid_mean"]:.5f} +- {result["kid_std"]:.5f} '
                 f'(subsets of {result["kid_subset_size"]})')
  if 'is_mean' in result:
    parts.append(f'IS {result["is_mean"]:.3f} +- {result["is_std"]:.3f}')
  if 'precision' in result:
    parts.append(f'precision {result["precision"]:.3f} recall {result["recall"]:.3f}')
  return ', '.join(parts)
