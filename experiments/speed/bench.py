r"""Throughput of the ICS training as a run does it, beside a PyTorch eager peer.

    python -m experiments.speed.bench --config bench.py --workdir runs/bench

On synthetic images (no dataset files), with the model, batch and autoencoder of the config,
through the trainer `run_experiment` uses (`trainer.make_trainer`, `seeds.runner`): an f32 matmul
peak; the SSIM split; the ICS iteration (time to the first report, iterations and images per
second, FLOP/s from XLA's cost analysis, memory, host overhead from a profiler trace,
`experiments.speed.busy`); seed-iterations per second for several seed counts; and, with
PyTorch installed (`pip install -e ".[bench]"`), the same network and iteration in PyTorch eager
mode (`experiments.speed.torch_peer`, a subprocess), timed in turn with ours, round by round,
and the ratio.
Prints a markdown table and writes `bench.json` (and `config.json`) in the workdir. XLA's
persistent compilation cache starts empty, so compile times are real. `bench.py:quick` is a
smoke run.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments.speed import busy
from ics_jax import config as config_lib
from ics_jax import outputs, seeds, trainer, xla
from ics_jax import split as split_lib

MATMUL_REPEATS = 5


def matmul_gflops(n: int, repeats: int = MATMUL_REPEATS) -> float:
    """Returns the best GFLOP/s (2 n^3 / t) of a jitted f32 `n x n` matmul after a warm-up."""
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    matmul = xla.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def images_per_iteration(phases: tuple[str, ...], batch_size: int) -> int:
    """Returns the images one iteration pushes through the network: a pair phase two batches,
    the binary phase one."""
    return sum(batch_size if p == "intra_class" else 2 * batch_size for p in phases)


def timed_run(t: trainer.Trainer, data, num_seeds: int, config, num_reports: int,
              report_every: int) -> list[tuple[int, float]]:
    """Runs `num_reports` reports of `report_every` iterations of `num_seeds` fresh seeds
    through the seeds' runner; returns `(iteration, seconds since the start)` at each report."""
    states = t.init_states(list(range(num_seeds)), data.typical.shape[1:])
    keys = jax.random.split(jax.random.key(2), num_seeds)
    stamps, start = [], time.perf_counter()

    def on_report(end, states_now, metrics):
        jax.block_until_ready(metrics)  # as training does: the metrics go to the host
        stamps.append((end, time.perf_counter() - start))

    seeds.runner()(t.step, states, data, keys, 0, num_reports * report_every,
                   report_every=report_every, on_report=on_report)
    return stamps


def rate(stamps: list[tuple[int, float]]) -> float:
    """Returns the median iterations/s between reports, skipping the first (compile)."""
    steps = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(stamps[1:-1], stamps[2:], strict=True)]
    return float(np.median(steps))


def iteration_costs(t: trainer.Trainer, data) -> dict:
    """Returns XLA's FLOPs and bytes of one seed's iteration, compiled as the CPU runs it."""
    state = t.init_states([0], data.typical.shape[1:])
    args = (seeds.unstack(state, 1)[0], data, jax.random.key(2), np.int32(0))
    compiled = xla.jit(t.step).lower(*args).compile()
    flops = (compiled.cost_analysis() or {}).get("flops")
    m = compiled.memory_analysis()
    memory = None if m is None else (m.temp_size_in_bytes + m.argument_size_in_bytes
                                     + m.output_size_in_bytes - m.alias_size_in_bytes)
    return {"flops": flops, "memory_bytes": memory}


def bench_iteration(t: trainer.Trainer, data, config, peak_gflops: float) -> dict:
    """Returns the one-seed iteration's rates, compile time, FLOP/s, memory, host overhead."""
    stamps = timed_run(t, data, 1, config, config.timed_reports, config.report_every)
    its = rate(stamps)
    costs = iteration_costs(t, data)
    gflops = None if costs["flops"] is None else costs["flops"] * its / 1e9
    with tempfile.TemporaryDirectory(prefix="ics-jax-bench-trace-") as trace_dir:
        with busy.traced_window(trace_dir):
            timed_run(t, data, 1, config, 2, config.report_every)
        busy_fraction = busy.busy_fraction(trace_dir)
    return {"first_report_s": stamps[0][1], "iterations_per_s": its,
            "images_per_s": its * images_per_iteration(t.phases, config.batch_size),
            "gflops": gflops, "fraction_of_peak": None if gflops is None else gflops / peak_gflops,
            "memory_bytes": costs["memory_bytes"],
            "host_overhead_fraction": None if busy_fraction is None else 1.0 - busy_fraction}


def bench_seeds(t: trainer.Trainer, data, config) -> list[dict]:
    """Returns seed-iterations/s per seed count, each against one seed timed just before."""
    rows = []
    for num_seeds in config.num_seeds_list:
        one = rate(timed_run(t, data, 1, config, config.timed_reports, config.report_every))
        many = num_seeds * rate(timed_run(t, data, num_seeds, config, config.timed_reports,
                                          config.report_every))
        rows.append({"num_seeds": num_seeds, "seed_iterations_per_s": many,
                     "one_seed_iterations_per_s": one, "ratio_to_one_seed": many / one})
    return rows


def peer_settings(config, num_typical: int, num_atypical: int) -> dict:
    """Returns the PyTorch peer's settings: the config's network, batch and optimizer."""
    return {"net": {"conv_features": list(config.conv_features),
                    "dense_features": config.dense_features, "latent_dim": config.latent_dim},
            "iteration": {"batch_size": config.batch_size, "learning_rate": config.learning_rate,
                          "b1": config.adam_b1, "weight_decay": config.weight_decay},
            "num_typical": num_typical, "num_atypical": num_atypical,
            "threads": len(os.sched_getaffinity(0))}


def bench_peer(t: trainer.Trainer, data, config) -> dict | None:
    """Times `config.peer_rounds` rounds, each ours then the PyTorch peer's, of
    `config.report_every` iterations; returns both rates per round and their ratio (ours /
    peer, > 1 = faster), or None without PyTorch."""
    if importlib.util.find_spec("torch") is None:
        return None
    settings = peer_settings(config, data.typical.shape[0], data.atypical.shape[0])
    peer = subprocess.Popen([sys.executable, "-m", "experiments.speed.torch_peer",
                             f"--settings={json.dumps(settings)}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        about = json.loads(peer.stdout.readline())
        n = config.report_every

        def peer_rate() -> float:
            peer.stdin.write(f"{n}\n")
            peer.stdin.flush()
            return n / float(peer.stdout.readline())

        peer_rate()  # warm-up
        ours, theirs = [], []
        for _ in range(config.peer_rounds):
            ours.append(rate(timed_run(t, data, 1, config, 3, n)))
            theirs.append(peer_rate())
    finally:
        peer.stdin.close()
        peer.wait(timeout=60)
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {**about, "ours_iterations_per_s": ours, "peer_iterations_per_s": theirs,
            "ratios": ratios, "ratio_median": float(np.median(ratios))}


def run(config: ml_collections.ConfigDict) -> dict:
    """Returns the results that `bench.json` holds."""
    images = np.random.default_rng(config.seed).random(
        (config.bench_images, *config.image_shape), np.float32)
    results = {"backend": jax.default_backend(), "device_count": jax.device_count(),
               "placement": seeds.placement(), "matmul_gflops": matmul_gflops(config.matmul_size)}
    start = time.perf_counter()
    parts, _ = split_lib.compute_split(config, images, split_lib.split_key(config))
    results["ssim_split_s"] = time.perf_counter() - start
    t = trainer.make_trainer(config)
    data = trainer.split_data(images, parts)
    results["iteration"] = bench_iteration(t, data, config, results["matmul_gflops"])
    results["seeds"] = bench_seeds(t, data, config)
    results["peer"] = bench_peer(t, data, config)
    return results


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: dict, config) -> str:
    """Returns the results as markdown."""
    s, peer = results["iteration"], results["peer"]
    memory = None if s["memory_bytes"] is None else s["memory_bytes"] / 2**20
    lines = [f"{results['backend']}, {results['device_count']} device(s), placement "
             f"{results['placement']}, f32 matmul peak {results['matmul_gflops']:.1f} GFLOP/s",
             "", f"| ICS iteration: {config.backbone} {tuple(config.conv_features)}, batch "
             f"{config.batch_size} | |", "| --- | --- |",
             f"| first report (compile + 1 iteration, s) | {s['first_report_s']:.2f} |",
             f"| iterations/s | {s['iterations_per_s']:.2f} |",
             f"| images/s | {s['images_per_s']:.0f} |",
             f"| GFLOP/s | {_fmt(s['gflops'], '.1f')} |",
             f"| fraction of matmul peak | {_fmt(s['fraction_of_peak'], '.1%')} |",
             f"| memory (MiB, XLA memory analysis) | {_fmt(memory, '.1f')} |",
             f"| host overhead (no program running) | "
             f"{_fmt(s['host_overhead_fraction'], '.1%')} |",
             f"| SSIM split, {config.bench_images} images, {config.ae_num_steps} AE steps (s) | "
             f"{results['ssim_split_s']:.1f} |", "",
             "| seeds | seed-iterations/s | x one seed |", "| --- | --- | --- |"]
    lines += [f"| {r['num_seeds']} | {r['seed_iterations_per_s']:.2f} | "
              f"{r['ratio_to_one_seed']:.2f} |" for r in results["seeds"]]
    if peer is None:
        lines += ["", "PyTorch peer: not installed (`pip install -e \".[bench]\"`)"]
    else:
        lines += ["", f"PyTorch {peer['torch']} eager, {peer['threads']} threads, "
                      f"{peer['params']:,} parameters: ours / peer per round "
                      + ", ".join(f"{r:.2f}" for r in peer["ratios"])
                      + f"; median **{peer['ratio_median']:.2f}x**"]
    return "\n".join(lines)


def _check(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for a config key the benchmark cannot use."""
    config_lib.validate(config)
    if config.method != "ics":
        raise config_lib.ConfigError(f"method={config.method!r}: the benchmark times ics")
    for key in ("timed_reports", "report_every", "matmul_size", "bench_images", "peer_rounds"):
        if not config[key] > 0:
            raise config_lib.ConfigError(f"{key}={config[key]!r} must be positive")
    if config.timed_reports < 3:
        raise config_lib.ConfigError("timed_reports must be at least 3 (the first compiles)")


def main(argv: list[str]) -> None:
    del argv
    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config bench.py and --workdir DIR")
    _check(config)
    with tempfile.TemporaryDirectory(prefix="ics-jax-bench-xla-") as cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        results = run(config)
    outputs.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    path = os.path.join(workdir, "bench.json")
    outputs.write_json(path, results)
    print(table(results, config))
    print(f"results in {path}", flush=True)


if __name__ == "__main__":  # the flags only here: tests import this module beside others
    _CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark config file.",
                                              lock_config=True)
    _WORKDIR = flags.DEFINE_string("workdir", None, "Folder for bench.json.")
    cli.run_app(main)
