"""`experiments.speed.busy`: the share of a window in which compiled programs run, from a real
trace."""

import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.speed import busy


def test_covered_counts_overlaps_once_and_clips_to_the_window():
    intervals = [(5, 15), (0, 10), (20, 30), (22, 24), (40, 50)]
    # (0, 15) and (20, 30) clipped to (2, 25): 13 + 5; (40, 50) lies outside.
    assert busy.covered_ns(intervals, (2, 25)) == 18
    assert busy.covered_ns([], (0, 10)) == 0
    assert busy.covered_ns([(0, 100)], (10, 20)) == 10


def _program_and_input():
    """Returns a jitted program of a few milliseconds and its input."""
    program = jax.jit(lambda x: jnp.tanh(x @ x) / 256.0)
    x = jnp.ones((512, 512), jnp.float32)
    jax.block_until_ready(program(x))
    return program, x


def test_programs_back_to_back_keep_the_window_busy(tmp_path):
    program, x = _program_and_input()
    with busy.traced_window(str(tmp_path)):
        for _ in range(20):  # asynchronous dispatch: the next call queues behind the last
            x = program(x)
        jax.block_until_ready(x)
    assert busy.busy_fraction(str(tmp_path)) > 0.8


def test_host_pauses_between_programs_count_as_idle(tmp_path):
    program, x = _program_and_input()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x = jax.block_until_ready(program(x))
        times.append(time.perf_counter() - start)
    pause = 2 * float(np.median(times))  # idle twice as long as each program runs: busy ~1/3
    with busy.traced_window(str(tmp_path)):
        for _ in range(10):
            x = jax.block_until_ready(program(x))
            time.sleep(pause)
    assert 0.1 < busy.busy_fraction(str(tmp_path)) < 0.6


def test_no_trace_reads_as_none(tmp_path):
    assert busy.busy_fraction(str(tmp_path)) is None
