"""Where one seed's steps run: a group of local devices, with its image batch split over them.

XLA's CPU backend keeps few threads busy in a convolution's gradient, so a step whose batch is
split over several host devices (`--xla_force_host_platform_device_count`) runs up to twice as
fast as on one device of the same two cores. The step marks its image batch with
`split_batch`; traced under `jax.set_mesh` of a `("batch",)` mesh (what `seed_meshes` returns),
XLA splits that batch over the mesh's devices and sums the gradients across them; elsewhere
(one device, `vmap` or `shard_map` over seeds) the mark does nothing. Either way the step
computes the same numbers, up to the order of float sums.
"""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXIS = "batch"


def split_batch(x: jax.Array) -> jax.Array:
    """Returns `x [N, ...]` marked to be split along N over the current mesh's batch axis; `x`
    unchanged without such an axis, or when N does not divide evenly over it."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or BATCH_AXIS not in mesh.axis_names or x.shape[0] % mesh.shape[BATCH_AXIS]:
        return x
    return jax.lax.with_sharding_constraint(x, P(BATCH_AXIS))


def seed_meshes(num_seeds: int, devices: list | None = None) -> list[Mesh]:
    """Returns one 1-D `("batch",)` mesh per seed over `devices` (default: the local ones).

    With D devices and S <= D seeds, seed i gets devices `[i*g, (i+1)*g)`, g = D // S (one seed
    gets them all); with more seeds than devices, seed i gets device `i mod D` alone.
    """
    devices = list(devices or jax.local_devices())
    size = max(1, len(devices) // num_seeds)
    groups = [tuple(devices[(i * size) % len(devices):][:size]) for i in range(num_seeds)]
    # Seeds on the same devices share one mesh, hence one compiled program.
    meshes = {g: jax.make_mesh((size,), (BATCH_AXIS,), axis_types=(AxisType.Auto,), devices=g)
              for g in set(groups)}
    return [meshes[g] for g in groups]


def place(tree, mesh: Mesh):
    """Returns `tree` with every leaf copied whole onto each device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
