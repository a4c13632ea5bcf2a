"""How much of a stretch of wall time compiled programs run, read from a `jax.profiler` trace.

    with traced_window(log_dir):
        ...  # the calls to measure
    busy = busy_fraction(log_dir)  # 1 - busy is the time outside compiled code

A program runs where the trace has an XLA execution: on the CPU backend any event of the threads
that run programs (`tf_XLAPjRtCpuClient*`, which runs or waits for each program, and the
`tf_XLAEigen*` pool; compiler threads excluded), on an accelerator every event of a `/device:`
plane (kernels and copies, so gaps between kernels of one program count as idle too: an upper
bound on host overhead there). The window is the `TraceAnnotation` that `traced_window` opens
around the caller's block. A neighbour process on a shared machine slows executions down but
leaves the gaps between them alone, which timing chunks with `time.perf_counter` cannot tell
apart.
"""

import contextlib
import glob
import os

import jax
from jax.profiler import ProfileData

WINDOW = "ics_jax.busy.window"
CPU_EXECUTION_THREADS = ("tf_XLAPjRtCpuClient", "tf_XLAEigen")


@contextlib.contextmanager
def traced_window(log_dir: str):
    """Traces the block into `log_dir` (no Python function tracing) and marks it as the window."""
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    with jax.profiler.trace(log_dir, profiler_options=options):
        with jax.profiler.TraceAnnotation(WINDOW):
            yield


def covered_ns(intervals: list[tuple[int, int]], window: tuple[int, int]) -> int:
    """Returns the nanoseconds of `window = (start, end)` covered by the union of `intervals`."""
    covered, reach = 0, window[0]
    for start, end in sorted(intervals):
        start, end = max(start, reach), min(end, window[1])
        if end > start:
            covered += end - start
            reach = end
    return covered


def _events(plane):
    """Yields `(thread, name, start_ns, end_ns)` of every event of a trace plane."""
    for line in plane.lines:
        for event in line.events:
            yield line.name, event.name, event.start_ns, event.start_ns + event.duration_ns


def busy_fraction(log_dir: str) -> float | None:
    """Returns the fraction of `traced_window`'s block in which a compiled program ran, from the
    newest trace under `log_dir`; None when the trace records no execution it can read."""
    paths = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        return None
    planes = ProfileData.from_file(max(paths, key=os.path.getmtime)).planes
    window, device_runs, cpu_runs = None, [], []
    for plane in planes:
        on_device = plane.name.startswith("/device:")
        for thread, name, start, end in _events(plane):
            if name == WINDOW:
                window = (start, end)
            elif on_device:
                device_runs.append((start, end))
            elif thread.startswith(CPU_EXECUTION_THREADS):
                cpu_runs.append((start, end))
    runs = device_runs or cpu_runs
    if window is None or window[1] <= window[0] or not runs:
        return None
    return covered_ns(runs, window) / (window[1] - window[0])
