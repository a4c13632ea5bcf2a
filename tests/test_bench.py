"""The benchmark command end to end: `python -m experiments.bench --config bench.py:quick`.

One subprocess run on tiny networks and two forced CPU devices (so `sharded` runs on a real
mesh, and one seed splits its batch over both); the tests check `bench.json` and the printed
table.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import TINY, tiny_flags

from ics_jax.seeds import STRATEGIES

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_SEEDS_LIST = (1, 2)
OTHERS_UP_TO = 1  # vmap and sharded (not offered on a CPU) are timed at 1 seed, skipped at 2
TOP_KEYS = {"backend", "device_count", "matmul_gflops", "step", "seeds", "ssim_split_s",
            "ssim_split"}
STEP_KEYS = {"compile_s", "steps_per_s", "images_per_s", "gflops", "fraction_of_peak",
             "peak_memory_bytes", "peak_memory_source", "host_overhead_fraction"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """Runs the quick benchmark once; returns its `bench.json` and stdout."""
    workdir = tmp_path_factory.mktemp("bench")
    # Optimization level 0: XLA's CPU compiles take about half as long; numbers stay sane.
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                        "--xla_backend_optimization_level=0"}
    argv = [sys.executable, "-m", "experiments.bench", "--config", "bench.py:quick",
            "--workdir", str(workdir), f"--config.num_seeds_list={NUM_SEEDS_LIST!r}",
            f"--config.other_strategies_up_to={OTHERS_UP_TO}",
            *tiny_flags()]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads((workdir / "bench.json").read_text()), proc.stdout


def test_bench_json_has_every_key(bench_run):
    results, _ = bench_run
    assert set(results) == TOP_KEYS
    assert set(results["step"]) == STEP_KEYS
    assert set(results["ssim_split"]) == {"train_s", "score_s"}
    assert results["backend"] == "cpu" and results["device_count"] == 2


def test_step_rates_are_sane(bench_run):
    results, _ = bench_run
    step = results["step"]
    assert results["matmul_gflops"] > 0
    assert step["compile_s"] > 0 and step["steps_per_s"] > 0 and step["gflops"] > 0
    # Whole cycles: closeness and dispersion take 2 batches, the binary phase 1.
    assert step["images_per_s"] == pytest.approx(step["steps_per_s"] * 5 / 3 * TINY["batch_size"])
    assert step["fraction_of_peak"] == pytest.approx(step["gflops"] / results["matmul_gflops"])
    assert step["fraction_of_peak"] > 0
    assert step["peak_memory_bytes"] > 0
    assert step["peak_memory_source"] in ("memory_analysis", "memory_stats")
    assert step["host_overhead_fraction"] is not None  # the profiler trace was read
    assert 0 <= step["host_overhead_fraction"] < 1


def test_seeds_rows_cover_every_strategy_and_skip_the_ones_not_offered(bench_run):
    results, _ = bench_run
    rows = {(r["num_seeds"], r["strategy"]): r for r in results["seeds"]}
    assert set(rows) == {(s, k) for s in NUM_SEEDS_LIST for k in (*STRATEGIES, "auto")}
    for (num_seeds, strategy), row in rows.items():
        if strategy in ("vmap", "sharded") and num_seeds > OTHERS_UP_TO:
            assert "not offered on cpu" in row["skipped"], row
            continue
        assert "skipped" not in row, row
        assert row["seed_steps_per_s"] > 0
        assert row["ratio_to_sequential"] == pytest.approx(
            row["seed_steps_per_s"] / row["sequential_seed_steps_per_s"])
    for num_seeds in NUM_SEEDS_LIST:  # one yardstick per seed count, timed beside its rows
        yardsticks = {r["sequential_seed_steps_per_s"] for (n, _), r in rows.items()
                      if n == num_seeds and "skipped" not in r}
        assert len(yardsticks) == 1
    assert 0.5 < rows[1, "loop"]["ratio_to_sequential"] < 2
    for num_seeds in NUM_SEEDS_LIST:
        auto = rows[num_seeds, "auto"]
        assert auto["chosen"] in (("loop",) if num_seeds == 1 else ("loop", "sequential"))
        assert auto["seed_steps_per_s"] == rows[num_seeds, auto["chosen"]]["seed_steps_per_s"]


def test_ssim_split_times_add_up(bench_run):
    results, _ = bench_run
    split = results["ssim_split"]
    assert split["train_s"] > 0 and split["score_s"] > 0
    assert results["ssim_split_s"] == pytest.approx(split["train_s"] + split["score_s"])


def test_prints_a_table_and_the_json_path(bench_run):
    _, stdout = bench_run
    assert "| seeds | strategy | seed-steps/s | x sequential |" in stdout
    assert "bench.json" in stdout
