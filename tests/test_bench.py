"""The benchmark: one quick in-process run on tiny networks, and the PyTorch peer's network."""

import jax
import pytest

from experiments.configs import bench as bench_config
from experiments.speed import bench, torch_peer
from ics_jax import config as config_lib
from ics_jax import methods, trainer

ITERATION_KEYS = {"first_report_s", "iterations_per_s", "images_per_s", "gflops",
                  "fraction_of_peak", "memory_bytes", "host_overhead_fraction"}


@pytest.fixture(scope="module")
def quick():
    """The quick benchmark's config and results (the PyTorch peer only where it is installed)."""
    config = bench_config.get_config("quick")
    config.num_seeds_list = (2,)
    return config, bench.run(config)


def test_results_hold_every_figure_with_consistent_units(quick):
    config, results = quick
    assert results["placement"] == "loop" and results["matmul_gflops"] > 0
    step = results["iteration"]
    assert set(step) == ITERATION_KEYS
    per_iteration = bench.images_per_iteration(methods.METHODS["ics"].phases, config.batch_size)
    assert per_iteration == 5 * config.batch_size  # 2 pair phases of 2 batches, one binary
    assert 0 <= step["host_overhead_fraction"] <= 1 and step["gflops"] > 0
    rows = results["seeds"]
    assert [r["num_seeds"] for r in rows] == list(config.num_seeds_list)
    table = bench.table(results, config)
    assert "| iterations/s |" in table and "| seeds | seed-iterations/s | x one seed |" in table


def test_the_rate_skips_the_compiling_report_and_takes_the_median():
    stamps = [(1, 10.0), (3, 11.0), (5, 12.0), (7, 13.0), (9, 18.0)]  # one slow report
    assert bench.rate(stamps) == pytest.approx(2.0)  # 2 it/s; the first interval not counted


def test_peer_rounds_alternate_and_give_ours_over_theirs(quick):
    pytest.importorskip("torch")
    config, results = quick
    peer = results["peer"]
    assert len(peer["ratios"]) == len(peer["ours_iterations_per_s"]) == config.peer_rounds
    assert peer["params"] == _our_parameter_count(config)


@pytest.mark.parametrize("arg", [None, "quick"])
def test_the_peer_network_has_our_parameter_count(arg):
    pytest.importorskip("torch")
    config = bench_config.get_config(arg)
    net = torch_peer.make_net(tuple(config.conv_features), config.dense_features,
                              config.latent_dim)
    assert sum(p.numel() for p in net.parameters()) == _our_parameter_count(config)


def test_a_config_the_benchmark_cannot_use_is_refused():
    config = bench_config.get_config("quick")
    config.timed_reports = 2
    with pytest.raises(config_lib.ConfigError, match="timed_reports"):
        bench._check(config)


def _our_parameter_count(config) -> int:
    t = trainer.make_trainer(config)
    states = t.init_states([0], (28, 28, 1))
    return sum(x.size for x in jax.tree.leaves(states.params))
