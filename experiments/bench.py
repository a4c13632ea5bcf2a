r"""Throughput of the SSIM split, the ICS training step and many seeds at once.

    python -m experiments.bench --config bench.py --workdir runs/bench

On synthetic 28x28x1 images (no dataset files), with the model, batch and autoencoder of the
config: an f32 matmul peak; the SSIM split; the training step in the backend's loop form
(compile time, steps and images per second, achieved FLOP/s from XLA's cost analysis, memory,
host overhead: the share of a profiler trace of back-to-back chunks in which no program runs,
`experiments.busy`); seed-steps per second of every seed strategy, each against one seed's rate
timed beside it. Prints a markdown table and writes
`bench.json` (and `config.json`) in the workdir. XLA's persistent compilation cache starts empty,
so every compile time is a real compile. `--config bench.py:quick` is a smoke run.
"""

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import flags
from ml_collections import config_flags

from experiments import busy, cli
from ics_jax import config as config_lib
from ics_jax import loops, models, outputs, pipeline, placement, seeds, split, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for bench.json.")
IMAGE_SHAPE = (28, 28, 1)
CYCLE = len(train.PHASES)
MATMUL_REPEATS = 5


def _seconds(fn: Callable) -> float:
    """Returns the wall time of `fn()` until its result is ready."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def matmul_gflops(n: int, repeats: int = MATMUL_REPEATS) -> float:
    """Returns the best GFLOP/s (2 n^3 / t) of a jitted f32 `n x n` matmul after a warm-up."""
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    _seconds(lambda: matmul(a, b))
    return 2 * n**3 / min(_seconds(lambda: matmul(a, b)) for _ in range(repeats)) / 1e9


def ssim_split(config: ml_collections.ConfigDict,
               images: np.ndarray) -> tuple[split.Split, dict]:
    """Trains the split autoencoder on `images` and scores them, as a run does; returns the
    split and `{train_s, score_s}`."""
    key = pipeline.experiment_keys(config)[0]
    start = time.perf_counter()
    autoencoder, params = pipeline.train_split_autoencoder(config, images, key)
    jax.block_until_ready(params)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = split.ssim_scores(autoencoder, params, images, max_val=config.ssim_max_val)
    score_s = time.perf_counter() - start
    return split.split_by_score(scores, config.rho), {"train_s": train_s, "score_s": score_s}


@dataclasses.dataclass
class Bench:
    """The ICS training step of a config on split images, built as `pipeline` builds it."""

    config: ml_collections.ConfigDict
    net: models.OneClassNet
    tx: optax.GradientTransformation
    step: Callable
    data: train.SplitData
    loop_form: str
    chunk_size: int

    @property
    def per_call(self) -> int:
        return loops.steps_per_call(self.loop_form, self.chunk_size)

    def states(self, num_seeds: int):
        """Returns fresh stacked states `[S, ...]` and seed keys `[S]`, as a run makes them."""
        _, init_key, train_key = pipeline.experiment_keys(self.config)
        states = [train.init_state(self.net, self.tx, k, IMAGE_SHAPE)
                  for k in jax.random.split(init_key, num_seeds)]
        return seeds.stack(states), jax.random.split(train_key, num_seeds)

    def chunk(self, loop_form: str, chunk_size: int) -> Callable:
        """Returns the jitted one-seed `chunk(state, first_step, data, key)` of `loop` seeds."""
        return loops.make_chunk(lambda s, t, phase, data, key: self.step(s, data, key, t, phase),
                                loop_form, chunk_size, CYCLE)


def make_bench(config: ml_collections.ConfigDict, parts: split.Split,
               images: np.ndarray) -> Bench:
    """Returns the training step of `config` on the typical/atypical parts of `images`."""
    net = pipeline.build_network(config)
    tx = train.make_optimizer(config.learning_rate, config.adam_b1)
    step = train.make_train_step(net, tx, batch_size=config.batch_size,
                                 weight_decay=config.weight_decay)
    data = train.SplitData(typical=jnp.asarray(images[parts.typical]),
                           atypical=jnp.asarray(images[parts.atypical]))
    loop_form = loops.default_loop_form() if config.loop_form == "auto" else config.loop_form
    # As training: unrolled, one iteration per program; scan, one report per program.
    chunk_size = CYCLE if loop_form == "unrolled" else config.log_every * CYCLE
    return Bench(config, net, tx, step, data, loop_form, chunk_size)


def _flops_per_step(b: Bench, args: tuple) -> float | None:
    """Returns XLA's FLOP count per step, of the program compiled for one device. XLA counts a
    `while` body (scan) or one `switch` branch once, so it counts one unrolled cycle."""
    compiled = b.chunk("unrolled", CYCLE).lower(*args).compile()
    flops = (compiled.cost_analysis() or {}).get("flops")
    return flops / CYCLE if flops else None


def _peak_memory(compiled) -> tuple[int | None, str]:
    """Returns the chunk's bytes (temporaries + arguments + outputs - donated outputs) from
    XLA's memory analysis, else the device's peak, and which one it is."""
    m = compiled.memory_analysis()
    if m is not None:
        return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
                - m.alias_size_in_bytes), "memory_analysis"
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"], "memory_stats"
    return None, "unavailable"


def _images(first_step: int, num_steps: int, batch_size: int) -> int:
    """Returns the images steps `first_step...` push through the network: the pair phases two
    batches, the binary phase one."""
    return sum(batch_size if train.PHASES[t % CYCLE] == "intra_class" else 2 * batch_size
               for t in range(first_step, first_step + num_steps))


def bench_step(b: Bench, peak_gflops: float) -> dict:
    """Returns the one-seed training step's rates, compile time, memory and host overhead, on
    the devices a one-seed run uses (`placement.seed_meshes(1)`: all local ones)."""
    states, keys = b.states(1)
    state, consts = seeds.unstack(states, 1)[0], (b.data, keys[0])
    flops = _flops_per_step(b, (state, jnp.int32(0), *consts))  # of the whole, unsplit step
    mesh = placement.seed_meshes(1)[0]
    with jax.set_mesh(mesh):
        return _time_step(b, placement.place((state, *consts), mesh), flops, peak_gflops)


def _time_step(b: Bench, placed: tuple, flops: float | None, peak_gflops: float) -> dict:
    """Returns `bench_step`'s results for `placed = (state, data, key)`, under the caller's
    mesh; `flops` is per step."""
    state, consts = placed[0], placed[1:]
    args = (state, jnp.int32(0), *consts)
    start = time.perf_counter()
    compiled = b.chunk(b.loop_form, b.chunk_size).lower(*args).compile()
    compile_s = time.perf_counter() - start
    memory, memory_source = _peak_memory(compiled)
    state, _ = jax.block_until_ready(compiled(*args))  # the first run, untimed
    n, per_call = b.config.timed_chunks, b.per_call
    times = []
    for k in range(1, n + 1):
        t = jnp.int32(k * per_call)
        start = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, t, *consts))
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="ics-jax-bench-trace-") as trace_dir:
        with busy.traced_window(trace_dir):  # the same number of chunks as training runs them
            jax.block_until_ready(loops.advance(compiled, state, (n + 1) * per_call,
                                                n * per_call, per_call, consts))
        busy_fraction = busy.busy_fraction(trace_dir)
    # Rates from the median chunk: a neighbour's burst on a shared machine slows a few chunks.
    chunk_s = float(np.median(times))
    steps_per_s = per_call / chunk_s
    gflops = None if flops is None else flops * steps_per_s / 1e9
    return {"compile_s": compile_s, "steps_per_s": steps_per_s,
            "images_per_s": _images(per_call, per_call, b.config.batch_size) / chunk_s,
            "gflops": gflops,
            "fraction_of_peak": None if gflops is None else gflops / peak_gflops,
            "peak_memory_bytes": memory, "peak_memory_source": memory_source,
            "host_overhead_fraction": None if busy_fraction is None else 1.0 - busy_fraction}


def _seed_row(b: Bench, num_seeds: int, strategy: str) -> dict:
    """Returns `{num_seeds, strategy, seed_steps_per_s}` from `seeds.measure`, or `skipped` with
    XLA's reason when the program does not fit the device."""
    row = {"num_seeds": num_seeds, "strategy": strategy}
    states, keys = b.states(num_seeds)
    try:
        row["seed_steps_per_s"] = seeds.measure(
            b.step, states, b.data, keys, strategy=strategy, loop_form=b.loop_form,
            chunk_size=b.chunk_size, cycle=CYCLE, num_chunks=b.config.timed_chunks)
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        row["skipped"] = str(e).splitlines()[0]
    return row


def bench_seeds(b: Bench) -> list[dict]:
    """Returns a row per seed count and strategy of `seeds.STRATEGIES` plus `auto` (the rate of
    the strategy `seeds.choose_strategy` picks, named in `chosen`). A strategy that
    `seeds.candidate_strategies` does not offer on this backend is timed only up to
    `other_strategies_up_to` seeds. `ratio_to_sequential` divides by
    `sequential_seed_steps_per_s`: one `loop` seed's steps/s, the mean of a timing just before
    and one just after the seed count's rows, so that a shared machine's drift over the run
    does not enter the ratio."""
    offered, up_to = seeds.candidate_strategies(), b.config.other_strategies_up_to
    before = _seed_row(b, 1, "loop")
    rows = []
    for num_seeds in b.config.num_seeds_list:
        measured = {}
        for s in seeds.STRATEGIES:
            if (num_seeds, s) == (1, "loop"):
                measured[s] = before
            elif s in offered or num_seeds <= up_to:
                measured[s] = _seed_row(b, num_seeds, s)
            else:
                measured[s] = {"num_seeds": num_seeds, "strategy": s, "skipped":
                               f"not offered on {jax.default_backend()}; timed up to "
                               f"{up_to} seeds"}
        states, keys = b.states(num_seeds)
        chosen, _ = seeds.choose_strategy(b.step, states, b.data, keys, loop_form=b.loop_form,
                                          chunk_size=b.chunk_size, cycle=CYCLE)
        after = _seed_row(b, 1, "loop")
        sequential = (before["seed_steps_per_s"] + after["seed_steps_per_s"]) / 2
        rows += [_with_ratio(row, sequential) for row in
                 (*measured.values(), {**measured[chosen], "strategy": "auto", "chosen": chosen})]
        before = after
    return rows


def _with_ratio(row: dict, sequential: float) -> dict:
    """Returns a timed `row` with its ratio to `sequential` seed-steps/s; a skipped one as is."""
    if "seed_steps_per_s" not in row:
        return row
    return {**row, "sequential_seed_steps_per_s": sequential,
            "ratio_to_sequential": row["seed_steps_per_s"] / sequential}


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: dict, b: Bench) -> str:
    """Returns the results as markdown lines, ready for the README."""
    c, s, ssim = b.config, results["step"], results["ssim_split"]
    memory = None if s["peak_memory_bytes"] is None else s["peak_memory_bytes"] / 2**20
    lines = [f"{results['backend']}, {results['device_count']} device(s), f32 matmul peak "
             f"{results['matmul_gflops']:.1f} GFLOP/s", "",
             f"| ICS step: {c.backbone} {tuple(c.conv_features)}, batch {c.batch_size}, "
             f"{b.loop_form} x {b.per_call} | |", "| --- | --- |",
             f"| compile (s) | {s['compile_s']:.2f} |",
             f"| steps/s | {s['steps_per_s']:.1f} |",
             f"| images/s | {s['images_per_s']:.0f} |",
             f"| GFLOP/s | {_fmt(s['gflops'], '.1f')} |",
             f"| fraction of matmul peak | {_fmt(s['fraction_of_peak'], '.1%')} |",
             f"| peak memory per device (MiB, {s['peak_memory_source']}) | "
             f"{_fmt(memory, '.1f')} |",
             f"| host overhead (no program running) | "
             f"{_fmt(s['host_overhead_fraction'], '.1%')} |", "",
             "| seeds | strategy | seed-steps/s | x sequential |", "| --- | --- | --- | --- |"]
    for r in results["seeds"]:
        name = f"auto ({r['chosen']})" if r["strategy"] == "auto" else r["strategy"]
        rate = (f"{r['seed_steps_per_s']:.1f} | {r['ratio_to_sequential']:.2f}"
                if "skipped" not in r else f"skipped: {r['skipped']} |")
        lines.append(f"| {r['num_seeds']} | {name} | {rate} |")
    lines += ["", f"| SSIM split, {c.bench_images} images, {c.ae_num_steps} AE steps "
                  "| AE training (s) | scoring (s) | total (s) |", "| --- | --- | --- | --- |",
              f"| | {ssim['train_s']:.1f} | {ssim['score_s']:.1f} | "
              f"{results['ssim_split_s']:.1f} |"]
    return "\n".join(lines)


def _check(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for a config key the benchmark cannot use."""
    config_lib.validate(config)
    if not config.num_seeds_list or min(config.num_seeds_list) < 1:
        raise config_lib.ConfigError(f"num_seeds_list={config.num_seeds_list} must list seed "
                                     "counts of at least 1")
    for key in ("timed_chunks", "matmul_size", "bench_images", "other_strategies_up_to"):
        if not config[key] > 0:
            raise config_lib.ConfigError(f"{key}={config[key]!r} must be positive")


def run(config: ml_collections.ConfigDict) -> tuple[dict, Bench]:
    """Returns the results that `bench.json` holds, and the benchmarked step."""
    images = np.random.default_rng(config.seed).random(
        (config.bench_images, *IMAGE_SHAPE), np.float32)
    results = {"backend": jax.default_backend(), "device_count": jax.device_count(),
               "matmul_gflops": matmul_gflops(config.matmul_size)}
    parts, results["ssim_split"] = ssim_split(config, images)
    results["ssim_split_s"] = sum(results["ssim_split"].values())
    b = make_bench(config, parts, images)
    results["step"] = bench_step(b, results["matmul_gflops"])
    results["seeds"] = bench_seeds(b)
    return results, b


def main(argv: list[str]) -> None:
    del argv
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config bench.py and --workdir DIR")
    _check(config)
    # A fresh persistent compilation cache: every compile time is a real compile, and a program
    # built again (each strategy's first chunk, `auto`'s candidates) loads instead.
    with tempfile.TemporaryDirectory(prefix="ics-jax-bench-xla-") as cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        results, b = run(config)
    outputs.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    path = os.path.join(workdir, "bench.json")
    outputs.write_json(path, results)
    print(table(results, b))
    print(f"results in {path}", flush=True)


if __name__ == "__main__":
    cli.run_app(main)
