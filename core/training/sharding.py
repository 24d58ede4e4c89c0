"""Data parallelism: a mesh over every device, batches split on it, parameters replicated.

Book 7.2 (mini-batch gradient descent): the gradient of the mean loss over a global batch of
B samples is the mean of the per-device gradients over B/D samples each, so D devices computing
their shares and all-reducing the gradients take exactly the single-device step (up to the
order of float additions). Under `jax.jit` this needs no explicit collective: the batch is
sharded on the mesh axis "data", the train state is replicated, and XLA inserts the all-reduce.

Several hosts. Each process (one per host) runs the same program; `initialize_multihost`
connects them (`jax.distributed.initialize`), after which `jax.devices()` lists the devices of
every process and the mesh spans them all. Each process loads only its rows of every global
batch (`core.data.sampler.ChunkSampler(process_index=..., process_count=...)`) and
`global_batch` assembles the global array from the processes' parts without copying data
between hosts. On CPU, cross-process collectives use gloo. Launch one process per host, e.g.

    python -m experiments.train --config ... --workdir runs/x --distributed \\
        --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=<0 or 1>

(on Cloud TPU, SLURM or Open MPI, `--distributed` alone: JAX detects the cluster). The workdir
must be on a file system every process sees; process 0 writes logs, all write checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_multihost(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_seconds: int = 300,
) -> None:
    """Connects this process to the others (call before anything touches the devices).

    Give all three of coordinator_address ("host:port" of process 0), num_processes and
    process_id, or none of them to let JAX detect the cluster (Cloud TPU, SLURM, Open MPI).
    A peer that does not connect within `timeout_seconds` aborts the process.
    """
    given = [coordinator_address is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id, or none of them; got "
            f"{coordinator_address!r}, {num_processes!r}, {process_id!r}"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_seconds,
    )


def data_parallel_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis "data" over `devices` (default: every device of every process).

    Built with `Mesh` directly: in jax 0.10 `jax.make_mesh` defaults to Explicit axis types,
    under which a gradient through a batch-sharded matmul is a sharding type error.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state, keys)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows of a global batch -> global arrays sharded on "data".

    Args:
      local_batch: {key: [B_local, ...]}, this process's contiguous rows of the global batch
        (process p holds rows p·B_local .. (p+1)·B_local − 1, as ChunkSampler gives them).

    Raises:
      ValueError unless the global batch B = B_local · processes divides over the devices.
    """
    sharding = batch_sharded(mesh)
    arrays = {}
    for key, value in local_batch.items():
        rows = np.shape(value)[0] if np.ndim(value) else 0
        global_rows = rows * jax.process_count()
        if np.ndim(value) == 0 or global_rows % mesh.size:
            raise ValueError(
                f"batch[{key!r}] must have a leading batch axis whose global size "
                f"(B_local {rows} x {jax.process_count()} processes) divides over "
                f"{mesh.size} devices, got shape {list(np.shape(value))}"
            )
        arrays[key] = jax.make_array_from_process_local_data(sharding, np.asarray(value))
    return arrays
