"""How the seeds run: compiled chunks of whole iterations, the seed axis placed by the backend.

`placement()` decides from the backend and the process count alone, never from a timing:

- `loop` (one CPU process): a Python loop over the seeds; a chunk is one iteration of one seed,
  jitted alone and called back to back (dispatch is asynchronous, so the host runs ahead); the
  first report of a fresh run comes after one iteration, so progress shows within seconds. XLA's
  CPU backend runs a convolution's gradient about 60x slower inside a compiled loop
  (`lax.scan`), and `vmap` over seeds turns convolutions into grouped ones, which ran at 0.43x a
  loop there (docs/speed.md).
- `mesh` (an accelerator, or several processes): one program for every seed. `jax.shard_map`
  over a 1-D `("seeds",)` mesh of all devices of all processes gives each device a `lax.scan`
  over the report's iterations of the step `jax.vmap`ped over its block of seeds (on a CPU, one
  iteration per call). A seed count that does not divide the device count is padded with
  copies of seed 0, dropped again before anything is reported or returned; reports and
  results are host arrays. One accelerator is a mesh of one.

Seed i computes the same numbers either way, up to the order of float sums.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ics_jax import distributed, xla

PLACEMENTS = ("loop", "mesh")


def placement(backend: str | None = None, num_processes: int | None = None) -> str:
    """Returns `loop` for one CPU process, else `mesh` (defaults: this JAX's backend and
    process count)."""
    backend = backend or jax.default_backend()
    num_processes = num_processes or jax.process_count()
    return "loop" if backend == "cpu" and num_processes == 1 else "mesh"


def iterations_per_call(report_every: int, backend: str | None = None) -> int:
    """Returns how many iterations one call of the `mesh` program runs: one on a CPU (no
    compiled loop there), a whole report on an accelerator."""
    return 1 if (backend or jax.default_backend()) == "cpu" else report_every


def stack(trees: list):
    """Stacks a list of equal pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list:
    """Splits a pytree with leading axis `n` into a list of `n` pytrees."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


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


def runner(where: str | None = None) -> Callable:
    """Returns the runner of `where` (default: `placement()`; tests compare the two):
    `run(step, states, data, seed_keys, first, num, *, report_every, on_report)`.

    It advances stacked `states [S, ...]` by `num` iterations of `step(state, data, key, it) ->
    (state, metrics)` (`step.make_step`), starting at iteration `first`; `data` is shared by all
    seeds, `seed_keys` is `[S]`. At every multiple of `report_every`, and after the last, it
    calls `on_report(end, states [S, ...], metrics)` with the iterations done so far and each
    metric `[n, S]` over the `n` iterations since the last report; it returns the stacked final
    states.
    """
    where = where or placement()
    if where not in PLACEMENTS:
        raise ValueError(f"unknown placement {where!r}; choose one of {PLACEMENTS}")
    return _run_loop if where == "loop" else _run_mesh


def _reports(first: int, num: int, report_every: int, lead: bool = False):
    """Yields `(start, end)` of each report's iterations; with `lead`, the first report of a
    fresh run comes after its first iteration, so that progress shows within seconds."""
    if lead and first == 0 and num > 1 and report_every > 1:
        yield 0, 1
        first, num = 1, num - 1
    start = first
    while start < first + num:
        end = min((start // report_every + 1) * report_every, first + num)
        yield start, end
        start = end


def _run_loop(step, states, data, seed_keys, first, num, *, report_every, on_report=None):
    on_report = on_report or (lambda *_: None)
    chunk = xla.jit_now(step, donate_argnums=0)
    num_seeds = seed_keys.shape[0]
    per_seed, keys = unstack(states, num_seeds), list(seed_keys)
    for start, end in _reports(first, num, report_every, lead=True):
        metrics = []
        for i in range(num_seeds):
            seed_metrics = []
            for it in range(start, end):
                per_seed[i], m = chunk(per_seed[i], data, keys[i], np.int32(it))
                seed_metrics.append(m)
            metrics.append(stack(seed_metrics))  # each [n]
        on_report(end, stack(per_seed), jax.tree.map(lambda *m: jnp.stack(m, axis=1), *metrics))
    return stack(per_seed)


def _run_mesh(step, states, data, seed_keys, first, num, *, report_every, on_report=None):
    on_report = on_report or (lambda *_: None)
    mesh = distributed.seed_mesh()
    num_seeds = seed_keys.shape[0]
    per_call = iterations_per_call(report_every)

    every_seed = jax.vmap(step, in_axes=(0, None, 0, None))  # the step of a block of seeds

    def iteration(carry, it):
        """One iteration of a device's block of seeds in `lax.scan`'s form: `carry` is
        `(states, data, key_data)`, each metric `[S_local]`."""
        states, data, key_data = carry
        states, m = every_seed(states, data, jax.random.wrap_key_data(key_data), it)
        return (states, data, key_data), m

    @functools.cache  # one program per iteration count, compiled at its first call
    def program(length: int):
        """`((states, data, key_data), iterations [length]) -> (carry, metrics [length, S])`: a
        `lax.scan` of `length` iterations on each device (of one, on a CPU, XLA leaves no loop)."""
        seeds, shared = P(distributed.AXIS), P()
        return xla.jit_now(jax.shard_map(
            functools.partial(jax.lax.scan, iteration), mesh=mesh,
            in_specs=((seeds, shared, seeds), shared),
            out_specs=((seeds, shared, seeds), P(None, distributed.AXIS)), check_vma=False),
            donate_argnums=0)

    # Each process feeds its own block of the (padded) seed axis; the data is replicated.
    padded = pad((states, jax.random.key_data(seed_keys)), mesh.size)
    total = num_seeds + (-num_seeds) % mesh.size
    block = distributed.local_seed_slice(total, mesh)
    states, key_data = distributed.shard_seeds(jax.tree.map(lambda x: x[block], padded), total,
                                               mesh)
    data = jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        NamedSharding(mesh, P()), np.asarray(x)), data)
    carry = (states, data, key_data)
    for start, end in _reports(first, num, report_every):
        metrics = []
        for t in range(start, end, per_call):
            its = np.arange(t, min(t + per_call, end), dtype=np.int32)
            carry, m = program(len(its))(carry, its)
            metrics.append(m)
        states = carry[0]
        # To the host, then the padding dropped: never a resharding program, which on forced
        # CPU host devices would be an in-process collective (those can deadlock).
        on_report(end, take(distributed.to_host(states), num_seeds),
                  jax.tree.map(lambda *m: np.concatenate(m)[:, :num_seeds],
                               *distributed.to_host(metrics)))
    return take(distributed.to_host(states), num_seeds)
