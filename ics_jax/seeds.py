"""Many seeds at once: a state with a leading seed axis, advanced in one of four ways.

- `vmap`: one program for all seeds (`jax.vmap` of the step); the one-accelerator default.
- `sharded`: the seed axis placed over a 1-D device mesh `("seeds",)` with `NamedSharding`, one
  `jax.jit` program; inside it `jax.shard_map` gives each device the `vmap` of its own seeds. A
  seed count that does not divide the device count is padded with copies of seed 0, dropped
  again before anything is reported or returned.
- `loop`: the single-seed program called once per seed, each seed on its own group of local
  devices (`placement.seed_meshes`), so several devices run seeds at once, and one seed splits
  its batch over them all; the CPU default, since XLA's CPU backend runs vmapped convolutions
  (batched weights become grouped convolutions) at 0.15-0.4x the throughput of a loop over
  the same step.
- `sequential`: the same loop, every seed on all local devices, its batch split over them: S
  sequential runs in one process, the yardstick `auto` never falls below.

All run the same per-seed computation, so seed i agrees with a single run of seed i.
"""

import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ics_jax import distributed, loops, placement

STRATEGIES = ("loop", "sequential", "vmap", "sharded")


def candidate_strategies(backend: str | None = None, num_devices: int | None = None,
                         num_processes: int | None = None) -> tuple[str, ...]:
    """Returns the strategies worth measuring (defaults: this JAX's backend, device and process
    counts). Several processes: `sharded` only, so that no two can choose differently. A CPU:
    `loop`, and with several host devices `sequential` too (vmapped convolutions measured at
    0.15x a loop there). An accelerator: `vmap` or `sharded` against `loop` (and `sequential`).
    `sequential` is S sequential runs, so `auto` never chooses anything measured slower."""
    backend = backend or jax.default_backend()
    num_devices = num_devices or jax.device_count()
    if (num_processes or jax.process_count()) > 1:
        return ("sharded",)
    if num_devices == 1:
        return ("loop",) if backend == "cpu" else ("vmap", "loop")
    return ("loop", "sequential") if backend == "cpu" else ("sharded", "loop", "sequential")


def measure(step: Callable, states, data, seed_keys: jax.Array, *, strategy: str,
            loop_form: str, chunk_size: int, cycle: int, num_chunks: int = 2) -> float:
    """Returns seed-steps per second of `strategy` after compilation: one chunk to compile,
    then `num_chunks` timed, on a copy of `states` (which stay untouched)."""
    stamps = []

    def on_report(end_step, states_now, metrics):
        jax.block_until_ready(metrics)
        stamps.append(time.perf_counter())

    per_call = loops.steps_per_call(loop_form, chunk_size)
    run_seeds(step, jax.tree.map(jnp.copy, states), data, seed_keys, 0,
              (1 + num_chunks) * per_call, strategy=strategy, loop_form=loop_form,
              chunk_size=chunk_size, report_every=per_call, cycle=cycle, on_report=on_report)
    return num_chunks * per_call * seed_keys.shape[0] / (stamps[-1] - stamps[0])


def choose_strategy(step: Callable, states, data, seed_keys: jax.Array, *, loop_form: str,
                    chunk_size: int, cycle: int) -> tuple[str, dict[str, float]]:
    """Returns the fastest of `candidate_strategies()` for this step and seed count, and the
    measured seed-steps/s of each (empty when there is only one candidate)."""
    candidates = candidate_strategies()
    if seed_keys.shape[0] == 1:  # one seed: `sequential` is `loop`
        candidates = tuple(c for c in candidates if c != "sequential")
    if len(candidates) == 1:
        return candidates[0], {}
    rates = {s: measure(step, states, data, seed_keys, strategy=s, loop_form=loop_form,
                        chunk_size=chunk_size, cycle=cycle) for s in candidates}
    best = max(rates, key=rates.get)
    logging.getLogger("ics_jax").info("strategy auto -> %s (seed-steps/s: %s)", best, rates)
    return best, rates


def pad(tree, multiple: int):
    """Returns `tree` with its leading axis padded to a multiple of `multiple` by copies of
    entry 0 (a real seed, so padded programs compute nothing undefined)."""
    n = jax.tree.leaves(tree)[0].shape[0]
    extra = (-n) % multiple
    if not extra:
        return tree
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], extra, axis=0)]), tree)


def take(tree, n: int):
    """Returns the first `n` entries of `tree`'s leading axis."""
    return jax.tree.map(lambda x: x[:n], tree)


def stack(trees: list):
    """Stacks a list of equal pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list:
    """Splits a pytree with leading axis `n` into a list of `n` pytrees."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def run_seeds(step: Callable, states, data, seed_keys: jax.Array, first_step: int,
              num_steps: int, *, strategy: str, loop_form: str, chunk_size: int,
              report_every: int, cycle: int, on_report: Callable | None = None):
    """Advances stacked `states` `[S, ...]` by `num_steps` of `step(state, data, key, t, phase)`.

    `data` is shared by all seeds; `seed_keys` is `[S]`. Calls
    `on_report(end_step, states [S, ...], metrics [report_every, S])` every `report_every` steps.
    Returns the stacked final states.
    """
    num_seeds = seed_keys.shape[0]

    def vmapped(carry, t, phase, data, keys):
        return jax.vmap(lambda s, k: step(s, data, k, t, phase))(carry, keys)

    if strategy == "vmap":
        states, _ = loops.run(vmapped, states, first_step, num_steps, loop_form=loop_form,
                              chunk_size=chunk_size, report_every=report_every, cycle=cycle,
                              consts=(data, seed_keys), on_report=on_report)
        return states
    if strategy == "sharded":
        mesh = distributed.seed_mesh()

        def per_device(carry, t, phase, data, key_data):
            def body(c, t, d, k):
                return vmapped(c, t, phase, d, jax.random.wrap_key_data(k))
            return jax.shard_map(body, mesh=mesh, in_specs=(P("seeds"), P(), P(), P("seeds")),
                                 out_specs=(P("seeds"), P("seeds")), check_vma=False)(
                                     carry, t, data, key_data)

        def report(end_step, padded_states, metrics):  # drop the padding seeds
            on_report(end_step, take(padded_states, num_seeds), metrics[:, :num_seeds])

        # Each process feeds its own block of the (padded) seed axis; the data is replicated.
        padded = pad((states, jax.random.key_data(seed_keys)), mesh.size)
        total = seed_keys.shape[0] + (-seed_keys.shape[0]) % mesh.size
        block = distributed.local_seed_slice(total, mesh)
        states, key_data = distributed.shard_seeds(
            jax.tree.map(lambda x: x[block], padded), total, mesh)
        data = jax.tree.map(lambda x: jax.make_array_from_process_local_data(
            NamedSharding(mesh, P()), np.asarray(x)), data)
        states, _ = loops.run(per_device, states, first_step, num_steps, loop_form=loop_form,
                              chunk_size=chunk_size, report_every=report_every, cycle=cycle,
                              consts=(data, key_data), on_report=report if on_report else None)
        return take(states, num_seeds)
    if strategy not in ("loop", "sequential"):
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    chunk = loops.make_chunk(lambda s, t, phase, data, key: step(s, data, key, t, phase),
                             loop_form, chunk_size, cycle)
    per_call = loops.steps_per_call(loop_form, chunk_size)
    # `loop`: each seed on its own group of local devices (`placement.seed_meshes`: one seed
    # splits its batch over all of them, more seeds than devices share them round-robin);
    # dispatch is asynchronous, so the groups (forced host devices on a CPU too) run at once.
    # `sequential`: every seed on all local devices, one after another.
    meshes = (placement.seed_meshes(num_seeds) if strategy == "loop"
              else placement.seed_meshes(1) * num_seeds)
    per_seed = list(map(placement.place, unstack(states, num_seeds), meshes))
    keys = list(map(placement.place, unstack(seed_keys, num_seeds), meshes))
    data_on = {m: placement.place(data, m) for m in set(meshes)}
    home = jax.local_devices()[0]
    for start in range(first_step, first_step + num_steps, report_every):
        size = min(report_every, first_step + num_steps - start)
        metrics = []
        for i, mesh in enumerate(meshes):
            with jax.set_mesh(mesh):
                per_seed[i], m = loops.advance(chunk, per_seed[i], start, size, per_call,
                                               (data_on[mesh], keys[i]))
            metrics.append(m)
        if on_report is not None:
            on_report(start + size, _gather(per_seed, home),
                      jnp.stack(jax.device_put(metrics, home), axis=1))
    return _gather(per_seed, home)


def _gather(per_seed: list, device) -> object:
    """Stacks per-seed pytrees that live on different devices onto `device`."""
    return stack(jax.device_put(per_seed, device))
