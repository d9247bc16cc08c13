"""Device mesh and shardings: one ``jax.jit`` over a ``Mesh`` with axes ``('data', 'fsdp')``.

Parameters are replicated (``fsdp = 1`` by default); the batch is sharded over both axes.
Each process contributes its local slice of the global batch with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ('data', 'fsdp')


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
  """A mesh over all devices (or ``devices``) with axes ``('data', 'fsdp')``.

  Args:
    data: size of the data-parallel axis; ``-1`` means all remaining devices.
    fsdp: size of the parameter-sharding axis (``-1``: all remaining devices).

  Raises:
    ValueError: the sizes do not multiply to the device count.
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  sizes = [data, fsdp]
  if sizes.count(-1) > 1:
    raise ValueError(f'mesh: at most one of data={data}, fsdp={fsdp} may be -1')
  known = math.prod(s for s in sizes if s != -1)
  if known <= 0 or devices.size % known:
    raise ValueError(f'mesh: data={data} x fsdp={fsdp} does not divide {devices.size} devices')
  sizes = [devices.size // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != devices.size:
    raise ValueError(f'mesh: data={sizes[0]} x fsdp={sizes[1]} != {devices.size} devices')
  return Mesh(devices.reshape(sizes), MESH_AXES,
              axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every mesh axis."""
  return NamedSharding(mesh, P(MESH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
  """Number of batch shards: the global batch must be a multiple of it."""
  return math.prod(mesh.shape[a] for a in MESH_AXES)


def global_batch(local_batch, mesh: Mesh):
  """This process's NumPy slice of the batch -> global ``jax.Array`` sharded over the mesh."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def fsdp_spec(shape, fsdp_size: int, min_size: int) -> P:
  """Partition spec of one parameter: its largest ``fsdp``-divisible dimension over ``fsdp``.

  Arrays with fewer than ``min_size`` elements (biases, norms, scalars) stay replicated: sharding
  them saves no memory and costs a collective each.

  Args:
    shape: the array's shape.
    fsdp_size: size of the ``fsdp`` mesh axis.
    min_size: smallest number of elements that gets sharded.

  Returns:
    ``PartitionSpec`` with ``'fsdp'`` on at most one dimension.
  """
  if fsdp_size == 1 or math.prod(shape) < min_size:
    return P()
  candidates = [(size, axis) for axis, size in enumerate(shape) if size % fsdp_size == 0]
  if not candidates:
    return P()
  _, axis = max(candidates)  # Largest dimension; the later one on ties.
  return P(*[('fsdp' if a == axis else None) for a in range(len(shape))])


def state_shardings(abstract_state, mesh: Mesh, min_size: int = 2**14):
  """``NamedSharding`` for every leaf of a state pytree by :func:`fsdp_spec`.

  The rule looks only at shapes, so parameters, their EMA and the optimizer moments (same
  shapes) get the same layout, and small leaves (steps, keys, counts) are replicated.
  """
  fsdp_size = mesh.shape['fsdp']
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, fsdp_spec(leaf.shape, fsdp_size, min_size)),
      abstract_state)
