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
