"""The library pipeline on synthetic data: resume equals an uninterrupted run; NaN stops a run."""

import json
import math
import re

import numpy as np
import pytest
from conftest import apply_tiny

from ics_jax import data as data_lib
from ics_jax import default_config, evaluate, outputs, pipeline, trainer
from ics_jax import workdir as workdir_lib


def _synthetic(n_train=48, n_test=40, seed=0) -> data_lib.OneClassData:
    """Normal: a bright square; anomalies: a bright bar; both with noise."""
    rng = np.random.default_rng(seed)
    x_train = 0.1 * rng.random((n_train, 28, 28, 1), dtype=np.float32)
    x_train[:, 8:20, 8:20] += 0.8
    x_test = 0.1 * rng.random((n_test, 28, 28, 1), dtype=np.float32)
    y_test = (np.arange(n_test) % 2).astype(np.int32)
    x_test[y_test == 0, 8:20, 8:20] += 0.8
    x_test[y_test == 1, 2:26, 12:16] += 0.8
    return data_lib.OneClassData(x_train=x_train, x_test=x_test, y_test=y_test,
                                 test_classes=y_test.astype(np.int64))


def _config(**overrides):
    """The tiny default config on the SSIM split (one network to train: these tests are about
    the run, not the split; tests/test_cli.py runs the default split end to end)."""
    config = apply_tiny(default_config())
    config.update(split_by="ssim", **overrides)
    return config


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    data = _synthetic()
    # A constant rate: a run asked for more iterations goes on (a cosine run's length is fixed).
    straight = pipeline.run_experiment(_config(num_iterations=4, lr_schedule="constant"),
                                       str(tmp_path / "a"), data=data)
    pipeline.run_experiment(_config(num_iterations=2, lr_schedule="constant"),
                            str(tmp_path / "b"), data=data)
    reports = []
    resumed = pipeline.run_experiment(_config(num_iterations=4, lr_schedule="constant"),
                                      str(tmp_path / "b"), data=data, progress=reports.append)
    assert [r["iteration"] for r in reports] == [4]  # iterations 1-2 came from the checkpoint
    assert resumed["auc"] == straight["auc"]
    split = np.load(tmp_path / "a" / "split.npz")  # the split's score as a detector
    assert straight["ssim_auc"] == evaluate.auc(data.y_test, -split["test_scores"])
    assert resumed["ssim_auc"] == straight["ssim_auc"]


def test_seed_s_of_a_run_computes_what_a_one_seed_run_of_seed_s_computes(tmp_path):
    data = _synthetic()
    both = pipeline.run_experiment(_config(seed=0, num_seeds=2), str(tmp_path / "a"), data=data)
    alone = pipeline.run_experiment(_config(seed=1, num_seeds=1), str(tmp_path / "b"), data=data)
    assert both["seeds"] == [0, 1] and alone["seeds"] == [1]
    assert alone["auc"] == both["auc"][1:]
    assert alone["ssim_auc"] == both["ssim_auc"]  # one split for every seed: split_seed's
    saved = np.load(tmp_path / "a" / "test_scores.npz")
    assert saved["scores"].shape == (2, data.y_test.size)
    assert [evaluate.auc(saved["labels"], s) for s in saved["scores"]] == both["auc"]
    assert evaluate.auc(data.y_test, saved["scores"].mean(0)) == both["ensemble_auc"]
    with open(tmp_path / "b" / "config.json") as f:
        assert json.load(f)["split_seed"] == 0


def test_tensorboard_gets_each_phase_s_loss_and_gradient_norm_and_the_speed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pipeline.run_experiment(_config(num_iterations=6), str(tmp_path), data=_synthetic())
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for phase in ("closeness", "intra_class", "dispersion"):
        assert {f"loss/{phase}", f"grad_norm/{phase}"} <= tags
        assert [e.step for e in events.Scalars(f"loss/{phase}")] == [1, 2, 4, 6]
    assert [e.step for e in events.Scalars("speed/iterations_per_second")] == [2, 4, 6]
    assert "test/auc_mean" in tags


def test_non_finite_loss_stops_the_run_naming_phase_iteration_and_seed(tmp_path):
    config = _config(learning_rate=math.inf)
    with pytest.raises(trainer.NonFiniteError,
                       match=r"the classifier's (closeness|intra_class|dispersion) "
                             r"(loss|gradient norm) is non-finite at iteration \d+ of seed \d+"):
        pipeline.run_experiment(config, str(tmp_path), data=_synthetic())
    assert not (tmp_path / "results.json").exists()


def test_a_finished_run_is_returned_unchanged_and_another_config_is_refused(tmp_path):
    data, workdir = _synthetic(), tmp_path / "run"
    first = pipeline.run_experiment(_config(), str(workdir), data=data)
    stamps = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    again = pipeline.run_experiment(_config(log_every=1), str(workdir), data=data)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()} == stamps
    with pytest.raises(pipeline.config_lib.ConfigError, match="rho=0.1, not 0.2"):
        pipeline.run_experiment(_config(rho=0.2), str(workdir), data=data)


def test_a_datasets_default_is_recorded_and_an_explicit_equal_value_is_the_same_run(tmp_path):
    from ics_jax.config import AE_LATENT_CHANNELS

    workdir = str(tmp_path / "run")
    first = pipeline.run_experiment(_config(dataset="fashion_mnist", ae_latent_channels=None),
                                    workdir, data=_synthetic())
    with open(f"{workdir}/config.json") as f:
        assert json.load(f)["ae_latent_channels"] == AE_LATENT_CHANNELS["fashion_mnist"]
    same = _config(dataset="fashion_mnist", ae_latent_channels=AE_LATENT_CHANNELS["fashion_mnist"])
    assert workdir_lib.finished_results(workdir, same) == first
    other = AE_LATENT_CHANNELS["cifar10"]
    with pytest.raises(pipeline.config_lib.ConfigError, match=f"not {other}"):
        workdir_lib.finished_results(workdir, _config(dataset="fashion_mnist",
                                                   ae_latent_channels=other))


def test_output_files_are_readable_by_everyone_the_umask_allows(tmp_path):
    pipeline.run_experiment(_config(num_seeds=1), str(tmp_path / "run"), data=_synthetic())
    for name in ("config.json", "results.json", "split.npz", "typical_atypical.png"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~outputs._UMASK


def test_diagnostic_test_curve_and_authors_protocol_use_the_reports(tmp_path):
    results = pipeline.run_experiment(_config(test_curve=True, authors_protocol=True),
                                      str(tmp_path / "run"), data=_synthetic())
    curve = results["test_curve"]
    assert curve["iterations"] == [1, 2, 4]  # the first iteration, then every log_every=2
    assert np.asarray(curve["auc"]).shape == (3, 2)  # reports x seeds
    assert curve["auc"][-1] == results["auc"]  # the last report holds the final parameters
    protocol = results["authors_protocol"]
    assert all(i in curve["iterations"] for i in protocol["selected_iteration"])


@pytest.mark.parametrize("override, message", [
    ({"normal_class": 10}, "normal_class=10"),
    ({"rho": 0.5}, "rho=0.5"),
    ({"rho": 0.0}, "rho=0.0"),
    ({"batch_size": 7}, "batch_size=7"),
    ({"backbone": "resnet"}, "backbone='resnet'"),
    ({"num_iterations": 0}, "num_iterations=0"),
    ({"data_dir": "/no/such/folder"}, "data_dir=/no/such/folder does not exist"),
    ({"validation_fraction": 0.5}, "validation_fraction=0.5"),
    ({"method": "ssim", "validation_fraction": 0.1}, "method=ssim does not train on"),
])
def test_bad_config_fails_before_any_work(tmp_path, override, message):
    with pytest.raises(pipeline.config_lib.ConfigError, match=re.escape(message)):
        pipeline.run_experiment(_config(**override), str(tmp_path / "run"), data=_synthetic())
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained
