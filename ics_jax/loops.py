"""Loop forms for a compiled step `step(carry, t, phase, *consts) -> (carry, metrics)`.

`consts` (the training images, say) are arguments, never donated and never baked into the
program as constants. A step cycles through `cycle` phases; `phase` is either a Python int (the
phase is known when the step is traced) or None (the step picks phase `t % cycle` itself with
`lax.switch`).

- `python`: the switch step jitted alone, called once per step from Python; dispatch is
  asynchronous, so the host never waits on a step.
- `unrolled`: `chunk_size` steps traced one after another into one program with static phases: no
  `while` and no conditional in the HLO. Fastest on XLA's CPU backend, where a convolution's
  weight gradient inside a `while` body or a `lax.switch` branch falls off the fast path
  (jax-ml/jax#12868; measured here 9x slower in a branch, 60x in a loop).
- `scan`: `lax.scan` of the switch step over `chunk_size` steps; one dispatch per chunk, the
  form accelerators like.

Every form runs the same steps with the same step indices, so they agree to float tolerance.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

LOOP_FORMS = ("python", "unrolled", "scan")


def default_loop_form() -> str:
    """Returns the fastest measured loop form for the current backend."""
    return "unrolled" if jax.default_backend() == "cpu" else "scan"


def make_chunk(step: Callable, loop_form: str, chunk_size: int, cycle: int = 1) -> Callable:
    """Returns jitted `chunk(carry, first_step, *consts) -> (carry, metrics [n, ...])`.

    `n` is 1 for `python` and `chunk_size` for the others. `unrolled` needs `chunk_size` and
    every `first_step` to be multiples of `cycle`.
    """
    if loop_form == "python":
        def single(carry, t, *consts):
            carry, m = step(carry, t, None, *consts)
            return carry, jax.tree.map(lambda x: x[None], m)
        return jax.jit(single, donate_argnums=0)
    if loop_form == "unrolled":
        if chunk_size % cycle:
            raise ValueError(f"chunk_size={chunk_size} is not a multiple of the {cycle} phases")

        def unrolled(carry, first_step, *consts):
            metrics = []
            for i in range(chunk_size):
                carry, m = step(carry, first_step + i, i % cycle, *consts)
                metrics.append(m)
            return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)
        return jax.jit(unrolled, donate_argnums=0)
    if loop_form == "scan":
        def scanned(carry, first_step, *consts):
            return jax.lax.scan(lambda c, t: step(c, t, None, *consts), carry,
                                first_step + jnp.arange(chunk_size))
        return jax.jit(scanned, donate_argnums=0)
    raise ValueError(f"unknown loop_form {loop_form!r}; choose one of {LOOP_FORMS}")


def steps_per_call(loop_form: str, chunk_size: int) -> int:
    """Returns how many steps one call of `make_chunk(...)` advances."""
    return 1 if loop_form == "python" else chunk_size


def advance(chunk: Callable, carry, first_step: int, num_steps: int, per_call: int,
            consts: tuple = ()):
    """Calls `chunk` to run `num_steps` steps from `first_step`.

    Returns `(carry, metrics [num_steps, ...])`. Nothing is copied to the host: metrics stay
    device arrays until the caller reads them.
    """
    metrics = []
    for start in range(first_step, first_step + num_steps, per_call):
        carry, m = chunk(carry, jnp.int32(start), *consts)
        metrics.append(m)
    return carry, jax.tree.map(lambda *xs: jnp.concatenate(xs), *metrics)


def run(step: Callable, carry, first_step: int, num_steps: int, *, loop_form: str,
        chunk_size: int, report_every: int, cycle: int = 1, consts: tuple = (),
        on_report: Callable | None = None):
    """Runs `num_steps` steps; calls `on_report(end_step, carry, metrics)` every `report_every`.

    `report_every`, `num_steps` and `first_step` must be multiples of the steps one call runs.
    Returns `(carry, the last report's metrics [report_every, ...])`.
    """
    per_call = steps_per_call(loop_form, chunk_size)
    for value, name in ((report_every, "report_every"), (num_steps, "num_steps"),
                        (first_step, "first_step")):
        if value % per_call:
            raise ValueError(f"{name}={value} is not a multiple of chunk_size={per_call}")
    chunk = make_chunk(step, loop_form, chunk_size, cycle)
    metrics = None
    for start in range(first_step, first_step + num_steps, report_every):
        size = min(report_every, first_step + num_steps - start)
        carry, metrics = advance(chunk, carry, start, size, per_call, consts)
        if on_report is not None:
            on_report(start + size, carry, metrics)
    return carry, metrics
