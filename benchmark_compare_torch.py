r"""The PyTorch side of ``benchmark.py --what compare``: times the authors' code in this process.

Run by ``benchmark_compare.py`` with the interpreter given as ``--torch_python`` (an environment
with torch and timm, never a dependency of the library), one case per fresh process so that the
peak RSS is the case's own:

  python benchmark_compare_torch.py --case dit_train --size S --patch 4 --batch 32 \
      --image 64 --repeats 7 --dit_repo /path/to/facebookresearch/DiT

It imports no part of phipd_jax (the torch environment does not have jax) and copies none of the
reference code: ``models.py`` of a facebookresearch/DiT checkout and
``structured_noise/structured_noise_pytorch.py`` of a zengxianyu/structured-noise checkout are
imported from the paths given. Prints one JSON line: per-call seconds, peak RSS, versions.

The train step mirrors the library's (``phipd_jax.training.make_train_step`` with the flow
objective): draw t and Gaussian noise, ``x_t = (1 - t) x0 + t eps``, v-prediction MSE, backward,
global-norm clip 1.0, AdamW (0.9, 0.99, no weight decay), then the EMA update of DiT's
``train.py`` (``ema = decay * ema + (1 - decay) * param`` per tensor).
"""

import argparse
import json
import resource
import statistics
import sys
import time


def _timed(fn, warmup: int, repeats: int) -> list:
  import torch  # pylint: disable=g-import-not-at-top
  for _ in range(warmup):
    fn()
  calls = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    if isinstance(out, torch.Tensor):
      out.sum().item()  # CPU is synchronous; this also checks the output exists.
    calls.append(time.perf_counter() - start)
  return calls


def dit_case(args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, args.dit_repo)
  import models  # pylint: disable=g-import-not-at-top  # facebookresearch/DiT models.py.
  torch.manual_seed(0)
  model = models.DiT_models[f'DiT-{args.size}/{args.patch}'](
      input_size=args.image, in_channels=3, num_classes=1, learn_sigma=False)
  x0 = torch.rand(args.batch, 3, args.image, args.image) * 2 - 1
  y = torch.zeros(args.batch, dtype=torch.long)
  if args.case == 'dit_forward':
    model.eval()
    t = torch.rand(args.batch) * 1000

    def forward():
      with torch.no_grad():
        return model(x0, t, y)

    return {'calls_s': _timed(forward, args.warmup, args.repeats)}
  model.train()
  ema = [p.detach().clone() for p in model.parameters()]
  params = list(model.parameters())
  opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)

  def step():
    t = torch.rand(args.batch)
    eps = torch.randn_like(x0)
    tb = t.view(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    loss = torch.mean((model(x_t, t * 1000, y) - (eps - x0)) ** 2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
      for e, p in zip(ema, params):
        e.mul_(0.999).add_(p.detach(), alpha=0.001)
    return loss.detach()

  return {'calls_s': _timed(step, args.warmup, args.repeats)}


def noise_case(args) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, args.noise_repo)
  from structured_noise import structured_noise_pytorch as upstream  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  images = torch.rand(args.batch, args.channels, args.image, args.image) * 2 - 1
  radius = args.radius_padded

  def draw():
    return upstream.generate_structured_noise_batch_vectorized(images, cutoff_radius=radius)

  return {'calls_s': _timed(draw, args.warmup, args.repeats)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--case', required=True, choices=('dit_train', 'dit_forward', 'noise'))
  parser.add_argument('--size', default='S')
  parser.add_argument('--patch', type=int, default=4)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--image', type=int, default=64)
  parser.add_argument('--channels', type=int, default=3)
  parser.add_argument('--radius_padded', type=float, default=12.0)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--threads', type=int, default=0)
  parser.add_argument('--dit_repo', default='')
  parser.add_argument('--noise_repo', default='')
  args = parser.parse_args(argv)
  import torch  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)
  result = noise_case(args) if args.case == 'noise' else dit_case(args)
  result.update(side='torch', median_s=statistics.median(result['calls_s']),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                version=f'torch {torch.__version__}', threads=torch.get_num_threads())
  print(json.dumps(result))


if __name__ == '__main__':
  main()
