"""Many devices and hosts on JAX's own machinery: a 1-D ``jax.sharding.Mesh`` named ``data``.

Training is data parallel (the batch is sharded along its example axis, parameters and optimiser
state are replicated); sampling shards draws, and MCMC shards chains, along the same axis. With
several processes (``jax.distributed``), the mesh spans every host's devices.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gendsl.errors import GenDataError, GenRuntimeError

__all__ = ["check_host_memory", "make_mesh", "replicated", "sharded", "shard_leading", "initialize_distributed", "is_main_process",
           "check_divisible", "globalize", "local_rows"]

AXIS = "data"



def check_host_memory(need: int, what: str, advice: str) -> None:
    """Refuse, with a :class:`GenDataError` saying ``what`` needs about ``need`` bytes and
    ``advice``, work that would need more than half of this machine's memory."""
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have // 2:
        raise GenDataError(f"{what} need about {need / 2**30:.1f} GiB, more than half of this machine's "
                           f"{have / 2**30:.1f} GiB: {advice}")

def make_mesh(devices: int | str | None) -> Mesh | None:
    """A mesh over the first ``devices`` devices (``"all"``: every device of every host); None for 1.

    Raises :class:`GenDataError` when more devices are asked for than exist.
    """
    if devices is None:
        return None
    available = jax.devices()
    if devices == "all":
        count = len(available)
    else:
        try:
            count = int(devices)
        except (TypeError, ValueError):
            raise GenDataError(f"devices must be a positive number or 'all', got {devices!r}") from None
        if count < 1 or count > len(available):
            raise GenDataError(f"{count} devices were asked for but {len(available)} are available "
                               f"({available[0].platform}); on CPU, simulate more with "
                               f"XLA_FLAGS=--xla_force_host_platform_device_count={max(count, 1)}")
    if count == 1 and jax.process_count() == 1:
        return None
    return Mesh(np.asarray(available[:count]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split across the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def shard_leading(tree: Any, mesh: Mesh | None) -> Any:
    """Constrain every array's leading axis to be split across the mesh (inside jit)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, sharded(mesh))


def check_divisible(count: int, mesh: Mesh | None, what: str) -> None:
    if mesh is not None and count % mesh.size:
        raise GenDataError(f"{what} ({count}) must be a multiple of the number of devices ({mesh.size})")


def globalize(arrays: dict, mesh: Mesh) -> dict:
    """Assemble each process's rows into global arrays split across every host's devices."""
    return {k: jax.make_array_from_process_local_data(sharded(mesh), np.asarray(v)) for k, v in arrays.items()}


def local_rows(n: int) -> slice:
    """The rows of an ``n``-example data set this process reads in a multi-host run (equal shares)."""
    count, index = jax.process_count(), jax.process_index()
    share = n // count
    return slice(index * share, (index + 1) * share)


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-host run through ``jax.distributed.initialize``.

    Arguments left None are read by JAX from its environment (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or a cluster's own variables).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk through gloo
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except Exception as err:  # noqa: BLE001 - report any failure to join as the user's error
        raise GenRuntimeError(f"could not join the distributed run (coordinator {coordinator or os.environ.get('JAX_COORDINATOR_ADDRESS')}, "
                              f"process {process_id} of {num_processes}): {err}") from None


def is_main_process() -> bool:
    """True on the process that writes outputs (process 0)."""
    return jax.process_index() == 0
