"""phipd_jax: frequency-domain diffusion in JAX/Flax.

Importing the package sets one XLA:CPU default, before JAX starts its CPU backend:
``--xla_cpu_experimental_ynn_fusion_type=`` (XLA's experimental YNNPACK fusions off). Measured
on the DiT-S/4 train step (batch 32, 64 px, 2 CPU cores): 17.1 s per step without them against
19.4 s with them, and 4.9 against 6.0 GB peak memory. They also returned wrong numbers: a
freshly initialised DiT-S (zero-initialised output layer, so the output is exactly 0) evaluated
at batch 32 with its parameters closed over as compiled constants returned values near 1e33
with the fusions and exact zeros without (``docs/benchmarks.md``). A flag already in
``XLA_FLAGS`` is left alone (set ``--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce``
... there to turn them back on); the flag is a no-op on GPU and TPU.

With ``PHIPD_JAX_HOST_MALLOC=reuse`` set before the import it also keeps freed host memory for
reuse (glibc ``malloc`` on Linux: one arena, no ``mmap`` for large blocks, free space at the top
of the heap returned only above 1 GiB), as tcmalloc or jemalloc would. XLA:CPU allocates each
call's temporaries afresh; by default glibc serves large blocks with ``mmap`` and returns them
on free, so every call pays first-touch page faults on all of them: 130 MB per reference-mode
FSS draw at 16x256x256x3 (32k faults); reused, 270 -> 205 ms per draw, and 78 -> 60 ms at
64x64x64x3 (``docs/benchmarks.md``). It is not the default: with multi-GB temporaries (the
DiT-S/4 train step's 3.6 GB) the single heap fragments, and one run in four peaked at 8.4 GB
instead of 4.8.

The entry points (``train.py``, ``sample.py``, ``evaluate.py``, ``benchmark.py``) call
:func:`use_huge_page_malloc` first, which re-runs the command once with glibc's
``glibc.malloc.hugetlb=1`` tunable: large blocks are still returned on free, but they are backed
by transparent huge pages, so refilling them costs one fault per 2 MB instead of one per 4 kB
(the DiT-S/4 train step: 944k faults per step -> 5k, same peak memory; reference-mode FSS noise
1.2-1.4x faster at 64 and 256 px, ``docs/benchmarks.md``). ``PHIPD_JAX_HOST_MALLOC=system`` (or
``reuse``) turns it off. In a notebook, export ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` before
starting Python for the same effect.
"""

import os as _os
import sys as _sys

_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FLAG not in _os.environ.get('XLA_FLAGS', ''):
  _os.environ['XLA_FLAGS'] = (_os.environ.get('XLA_FLAGS', '') + f' {_YNN_FLAG}=').strip()


def _reuse_freed_host_memory():
  """``mallopt`` settings that keep freed blocks in the heap (see the module docstring)."""
  if _os.environ.get('PHIPD_JAX_HOST_MALLOC', 'system') != 'reuse':
    return False
  import ctypes  # pylint: disable=g-import-not-at-top
  try:
    mallopt = ctypes.CDLL('libc.so.6').mallopt
  except (OSError, AttributeError):  # Not glibc (macOS, musl): nothing to do.
    return False
  m_trim_threshold, m_top_pad, m_mmap_max, m_arena_max = -1, -2, -4, -8
  return all([mallopt(m_arena_max, 1), mallopt(m_mmap_max, 0),
              mallopt(m_trim_threshold, 1 << 30), mallopt(m_top_pad, 64 << 20)])


HOST_MALLOC_TUNED = _reuse_freed_host_memory()


HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1'


def _huge_pages_available() -> bool:
  """glibc >= 2.35 (the ``hugetlb`` tunable) and transparent huge pages not ``never``."""
  try:
    version = _os.confstr('CS_GNU_LIBC_VERSION') or ''  # 'glibc 2.36'; absent off glibc.
    with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
      thp = f.read()
  except (ValueError, OSError):
    return False
  if not version.startswith('glibc '):
    return False
  major, minor = (int(v) for v in version.split()[1].split('.')[:2])
  return (major, minor) >= (2, 35) and '[never]' not in thp


def use_huge_page_malloc() -> bool:
  """Re-executes the running command once with ``GLIBC_TUNABLES`` += ``glibc.malloc.hugetlb=1``.

  Call it first thing in an entry point (before importing JAX: the process is replaced, with the
  same pid, interpreter flags and arguments, ``sys.orig_argv``). Does nothing and returns False
  when the tunable is already in ``GLIBC_TUNABLES`` (so it re-executes at most once), when
  ``PHIPD_JAX_HOST_MALLOC`` is set to anything but ``hugepages``, or off Linux/glibc >= 2.35 or
  with transparent huge pages ``never``. Why: see the module docstring.
  """
  if _os.environ.get('PHIPD_JAX_HOST_MALLOC', 'hugepages') != 'hugepages':
    return False
  tunables = _os.environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb' in tunables or not _huge_pages_available():
    return False
  env = dict(_os.environ, GLIBC_TUNABLES=':'.join(filter(None, [tunables, HUGE_PAGE_TUNABLE])))
  for stream in (_sys.stdout, _sys.stderr):
    stream.flush()
  _os.execve(_sys.executable, _sys.orig_argv, env)
  return True  # Not reached.


def load(workdir: str, num_steps=None, mesh=None):
  """A run directory (trained by ``train.py`` or written by ``convert.py``) as a
  :class:`phipd_jax.loaded_run.Run`: ``run.apply``, ``run.encode`` / ``run.decode``,
  ``run.sample``, ``run.translate``, ``run.invert``. See :func:`phipd_jax.loaded_run.load`."""
  from phipd_jax import loaded_run  # pylint: disable=g-import-not-at-top
  return loaded_run.load(workdir, num_steps, mesh)
