"""The label-free stop: the held-out part of the split, the best report per seed (kept across a
resume), and a run that returns the network of its best report."""

import json

import jax
import numpy as np
import pytest
from test_pipeline import _config, _synthetic

from ics_jax import pipeline, stopping
from ics_jax import split as split_lib


def test_hold_out_sets_aside_a_fraction_of_each_part_disjointly_and_by_key():
    split = split_lib.split_by_score(np.random.default_rng(0).random(200), rho=0.1)
    train, held = stopping.hold_out(split, 0.25, jax.random.key(0))
    assert (held.typical.size, held.atypical.size) == (45, 5)
    for part in ("typical", "atypical"):
        a, b = getattr(train, part), getattr(held, part)
        assert not set(a) & set(b)
        np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), getattr(split, part))
    again, _ = stopping.hold_out(split, 0.25, jax.random.key(0))
    other, _ = stopping.hold_out(split, 0.25, jax.random.key(1))
    np.testing.assert_array_equal(again.typical, train.typical)
    assert not np.array_equal(other.typical, train.typical)
    with pytest.raises(ValueError, match="validation_fraction=0.05 holds out 1 of 20"):
        stopping.hold_out(split, 0.05, jax.random.key(0))


def test_balanced_loss_weighs_both_parts_equally():
    assert stopping.balanced_loss(np.zeros(7), np.zeros(3)) == pytest.approx(np.log(2))
    # One badly scored atypical image counts as much as many typical ones.
    many_right = stopping.balanced_loss(np.full(100, -9.0), np.array([-9.0]))
    assert many_right == pytest.approx(0.5 * (np.log1p(np.exp(-9)) + np.log1p(np.exp(9))))


def _states(values):
    return {"v": np.asarray(values, np.float32)[:, None] * np.ones((1, 3), np.float32)}


def _score(states):  # logits follow the state: the lower v, the lower the loss
    v = np.asarray(states["v"])
    return v, -v


def test_best_report_keeps_each_seeds_lowest_loss_state_and_resumes_it(tmp_path):
    best = stopping.BestReport(_score, str(tmp_path))
    for iteration, values in ((1, [3.0, 1.0]), (2, [2.0, 5.0]), (3, [4.0, 0.0])):
        best.update(iteration, _states(values))
    np.testing.assert_array_equal(best.finish()["v"], _states([2.0, 0.0])["v"])
    summary = best.summary()
    assert summary["stopped_at"] == [2, 3]
    assert summary["iterations"] == [1, 2, 3]

    resumed = stopping.BestReport(_score, str(tmp_path))
    resumed.resume(_states([9.0, 9.0]))
    assert resumed.summary() == summary
    np.testing.assert_array_equal(resumed.finish()["v"], _states([2.0, 0.0])["v"])


def test_a_run_returns_the_network_of_its_best_held_out_report(tmp_path):
    data = _synthetic(n_train=96)
    config = _config(validation_fraction=0.2, test_curve=True, num_iterations=5, log_every=1)
    results = pipeline.run_experiment(config, str(tmp_path / "a"), data=data)
    held, curve = results["held_out"], results["test_curve"]
    assert held["iterations"] == curve["iterations"] == [1, 2, 3, 4, 5]
    loss = np.asarray(held["loss"])  # [reports, seeds]
    for seed, stopped in enumerate(held["stopped_at"]):
        assert stopped == held["iterations"][int(np.argmin(loss[:, seed]))]
        assert results["auc"][seed] == curve["auc"][held["iterations"].index(stopped)][seed]


def test_a_run_kept_before_the_stop_existed_is_found_and_not_mistaken_for_one(tmp_path):
    data, workdir = _synthetic(), tmp_path / "run"
    first = pipeline.run_experiment(_config(), str(workdir), data=data)
    saved = json.loads((workdir / "config.json").read_text())
    del saved["validation_fraction"]  # as written before the key existed
    (workdir / "config.json").write_text(json.dumps(saved))
    assert pipeline.run_experiment(_config(), str(workdir), data=data) == first
    with pytest.raises(pipeline.config_lib.ConfigError, match="validation_fraction=0.0"):
        pipeline.run_experiment(_config(validation_fraction=0.2), str(workdir), data=data)
