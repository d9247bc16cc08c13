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
"""

import os as _os

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
