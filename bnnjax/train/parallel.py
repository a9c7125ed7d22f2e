"""Data parallelism over every device of every process, with ``jax.jit`` and a mesh.

The trainer runs one program over a 1-D mesh ``("data",)`` of all devices
(``jax.devices()``, across hosts after :func:`initialize`): parameters and optimizer
state are replicated, each batch is sharded on its leading axis, and XLA inserts the
collectives. A batch-norm mean over the batch axis of a sharded array is the mean over
the *global* batch, so training on N devices computes what one device computes for
the same global batch (up to float summation order).

Each process loads only its rows of every global batch (``Pipeline(shard=...)``) and
:func:`shard_batch` assembles the global array from the processes' pieces. Host copies
of replicated arrays (metrics, checkpoints) come from this process's first shard, so
checkpoints hold plain arrays and restore onto any device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts ``jax.distributed`` for a multi-process run; a no-op for one process.

  With no arguments, JAX detects the cluster itself (Cloud TPU pods, SLURM, Open MPI,
  GKE); explicit values are for other launchers and for several processes on one
  machine (``coordinator_address="localhost:PORT"``). Must run before any other JAX
  call that touches devices.
  """
  if num_processes is not None and num_processes <= 1:
    return
  if coordinator_address is None and num_processes is None and process_id is None:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh named ``"data"`` over all devices of all processes.

  Its axis is ``Auto``: XLA's partitioner decides the layout of intermediates (e.g.
  a class-centre gather indexed by sharded labels), so model code needs no sharding
  annotations.
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, field: str) -> None:
  """Raises unless ``batch_size`` splits evenly over processes and devices."""
  devices, processes = jax.device_count(), jax.process_count()
  if batch_size % devices:
    raise ValueError(
        f"{field}={batch_size} must be divisible by the number of devices "
        f"({devices}: {processes} process(es) x {jax.local_device_count()} local); "
        f"use a multiple of {devices}.")


def is_prng_key(x) -> bool:
  """True for a typed PRNG key array (``jax.random.key``), whose data is read with
  ``jax.random.key_data`` and restored with ``jax.random.wrap_key_data``."""
  return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def replicate(tree, mesh):
  """``tree`` (identical on every process) as arrays replicated over ``mesh``.

  Built from host copies with ``jax.make_array_from_callback``, which works in
  multi-process runs where ``device_put`` of a process-local array does not; PRNG key
  arrays keep their key type.
  """
  sharding = replicated(mesh)

  def put(x):
    if is_prng_key(x):
      data = put(jax.random.key_data(x))
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(to_host(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
  return jax.tree.map(put, tree)


def shard_batch(local_batch: dict, mesh) -> dict:
  """The global batch from this process's rows (``local_batch``), sharded on axis 0."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def to_host(x):
  """A numpy copy of a replicated (or single-device) array, on any process."""
  if isinstance(x, jax.Array):
    if is_prng_key(x):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def to_host_tree(tree):
  """:func:`to_host` of every leaf of ``tree``."""
  return jax.tree.map(to_host, tree)


def is_main_process() -> bool:
  """True on the process that writes logs, metrics and results (process 0)."""
  return jax.process_index() == 0


def process_shard() -> tuple[int, int]:
  """``(process_index, process_count)`` for ``Pipeline(shard=...)``."""
  return jax.process_index(), jax.process_count()
