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
"""

import os as _os

_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FLAG not in _os.environ.get('XLA_FLAGS', ''):
  _os.environ['XLA_FLAGS'] = (_os.environ.get('XLA_FLAGS', '') + f' {_YNN_FLAG}=').strip()
