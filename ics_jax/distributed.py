"""Several processes, one stack of seeds (multi-controller JAX).

Every process runs the same program. `initialize` joins them; each process then feeds a
contiguous block of the seed axis (`local_seed_slice`), `shard_seeds` turns the blocks into global
arrays split over a 1-D `"seeds"` mesh of all processes' devices, jitted code runs on those as one
program, `gather` brings the whole seed axis back to every process, and only the primary process
(`is_primary`) writes files. With one process each step reduces to the single-host run.
"""

import os
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "seeds"
EXPLICIT = ("coordinator_address", "num_processes", "process_id")
# Variables by which a launcher tells `jax.distributed.initialize()` the coordinator, process
# count and id: JAX's own, SLURM's (inside `srun`), Open MPI's and GKE TPU's. Any of them present
# means a cluster. Elsewhere set the three `EXPLICIT` config keys, or `JAX_COORDINATOR_ADDRESS` for
# JAX to detect the rest (e.g. on a Cloud TPU VM pod).
CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_STEP_NODELIST", "OMPI_MCA_orte_hnp_uri",
               "TPU_WORKER_HOSTNAMES")
# Extra seconds JAX itself waits, so that the watchdog in `initialize` fails first, with its line.
_GRACE = 5


def initialize(config) -> bool:
    """Joins this process to the others, once; returns whether the run spans several processes.

    Uses `config.coordinator_address` ("host:port"), `num_processes` and `process_id` when all
    three are set, else the cluster's environment (`CLUSTER_ENV`), else does nothing (one
    process). Must run before any other JAX call. CPU collectives go through gloo.

    Raises ValueError when only some of the three keys are set, and RuntimeError, in one line,
    when JAX refuses to start. If not every process has joined within
    `config.initialization_timeout` seconds, writes that one line to stderr and ends the process
    with status 1: JAX would abort it at that point anyway (it raises nothing to catch).
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    explicit = {key: config[key] for key in EXPLICIT if config[key] is not None}
    if explicit and len(explicit) < len(EXPLICIT):
        missing = [key for key in EXPLICIT if key not in explicit]
        raise ValueError(f"multi-host needs all of {', '.join(EXPLICIT)}; "
                         f"{', '.join(missing)} unset")
    if not explicit and not any(name in os.environ for name in CLUSTER_ENV):
        return False
    timeout = config.initialization_timeout
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    watchdog = threading.Timer(timeout, _give_up, (
        _failure(explicit, timeout, "not every process joined (a peer or the coordinator is "
                                    "unreachable, or was never started)"),))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**explicit, initialization_timeout=timeout + _GRACE)
    except Exception as e:
        raise RuntimeError(_failure(explicit, timeout, str(e))) from e
    finally:
        watchdog.cancel()
    return jax.process_count() > 1


def _failure(explicit: dict, timeout: int, cause: str) -> str:
    address = explicit.get("coordinator_address") or os.environ.get(
        "JAX_COORDINATOR_ADDRESS", "the environment names")
    who = (f" (process {explicit['process_id']} of {explicit['num_processes']})" if explicit
           else "")
    return (f"could not reach the coordinator at {address} within {timeout} s{who}: "
            + " ".join(cause.split()))


def _give_up(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"ics_jax.distributed: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def is_primary() -> bool:
    """Returns whether this is process 0, the one that writes results."""
    return jax.process_index() == 0


def seed_mesh() -> Mesh:
    """Returns a 1-D mesh named `"seeds"` over every device of every process.

    Its axis type is Auto: XLA partitions the per-seed programs along the axis itself.
    """
    return jax.make_mesh((jax.device_count(),), (AXIS,), axis_types=(AxisType.Auto,))


def local_seed_slice(num_global_seeds: int, mesh: Mesh) -> slice:
    """Returns the contiguous block of seeds `[start, stop)` this process feeds on `mesh`.

    `num_global_seeds` must be a multiple of the mesh's device count (the caller pads).
    """
    if num_global_seeds % mesh.size:
        raise ValueError(f"{num_global_seeds} seeds do not split evenly over {mesh.size} devices; "
                         f"pad them to a multiple of {mesh.size}")
    indices = NamedSharding(mesh, PartitionSpec(AXIS)).addressable_devices_indices_map(
        (num_global_seeds,))
    blocks = sorted({index[0].indices(num_global_seeds)[:2] for index in indices.values()})
    if sum(stop - start for start, stop in blocks) != blocks[-1][1] - blocks[0][0]:
        raise ValueError(f"process {jax.process_index()}'s devices hold seeds {blocks}, "
                         "not one contiguous block")
    return slice(blocks[0][0], blocks[-1][1])


def shard_seeds(tree, num_global_seeds: int, mesh: Mesh):
    """Returns global arrays `[num_global_seeds, ...]`, sharded over `mesh`'s seed axis, from
    this process's block `tree` (leaves `[n, ...]`, the seeds `local_seed_slice` names).

    `num_global_seeds` must be a multiple of the mesh's device count (the caller pads).
    """
    block = local_seed_slice(num_global_seeds, mesh)
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))

    def shard(x):
        if x.shape[0] != block.stop - block.start:
            raise ValueError(f"process {jax.process_index()} feeds seeds {block.start}.."
                             f"{block.stop - 1}, but a leaf has leading dimension {x.shape[0]}")
        return jax.make_array_from_process_local_data(sharding, x,
                                                      (num_global_seeds, *x.shape[1:]))

    return jax.tree.map(shard, tree)


def gather(tree):
    """Returns `tree` as NumPy arrays with the whole seed axis, on every process.

    Leaves are global arrays (e.g. from `shard_seeds`) or each process's block, which are joined
    in process order along the leading axis.
    """
    return multihost_utils.process_allgather(tree, tiled=True)


def to_host(tree):
    """Returns `tree` as NumPy arrays on this process: gathered from every process when several
    run, else a plain device-to-host copy."""
    if jax.process_count() > 1:
        return gather(tree)
    return jax.tree.map(np.asarray, tree)
