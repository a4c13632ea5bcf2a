"""Many seeds at once: a state with a leading seed axis, advanced by `vmap` or by a host loop.

- `vmap`: one program for all seeds (`jax.vmap` of the step); the accelerator default.
- `loop`: the single-seed program called once per seed; the CPU default, since XLA's CPU backend
  runs vmapped convolutions (batched weights become grouped convolutions) at about 0.4x the
  throughput of a loop over the same step.

Both run the same per-seed computation, so seed i agrees with a single run of seed i.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ics_jax import loops

STRATEGIES = ("loop", "vmap")


def default_strategy() -> str:
    """Returns the faster measured seed strategy for the current backend."""
    return "loop" if jax.default_backend() == "cpu" else "vmap"


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
    if strategy == "vmap":
        def vmapped(carry, t, phase, data, keys):
            return jax.vmap(lambda s, k: step(s, data, k, t, phase))(carry, keys)
        states, _ = loops.run(vmapped, states, first_step, num_steps, loop_form=loop_form,
                              chunk_size=chunk_size, report_every=report_every, cycle=cycle,
                              consts=(data, seed_keys), on_report=on_report)
        return states
    if strategy != "loop":
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    chunk = loops.make_chunk(lambda s, t, phase, data, key: step(s, data, key, t, phase),
                             loop_form, chunk_size, cycle)
    per_call = loops.steps_per_call(loop_form, chunk_size)
    per_seed, keys = unstack(states, num_seeds), unstack(seed_keys, num_seeds)
    for start in range(first_step, first_step + num_steps, report_every):
        size = min(report_every, first_step + num_steps - start)
        metrics = []
        for i in range(num_seeds):
            per_seed[i], m = loops.advance(chunk, per_seed[i], start, size, per_call,
                                           (data, keys[i]))
            metrics.append(m)
        if on_report is not None:
            on_report(start + size, stack(per_seed), jnp.stack(metrics, axis=1))
    return stack(per_seed)
