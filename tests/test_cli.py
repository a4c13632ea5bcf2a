"""The command line end to end, offline: `python -m experiments.run` on TFDS mock data.

The two full runs are in-process, under `tfds.testing.mock_data` (which does not cross process
boundaries); the bad-input runs are subprocesses, to see the real exit code and stderr.
"""

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, tiny_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_MOCK_EXAMPLES = 200  # per split; the mock's labels are random, every class gets >= 10
NORMAL_CLASS = 0


def _run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """Runs `experiments.run.run()` with `sys.argv = ["run.py", *argv]`; returns (code, out, err).

    absl parses flags once per `app.run`, and ml_collections defines a `config.KEY` flag per
    override while parsing: those are dropped first so that a second run can define them again.
    """
    from absl import flags

    import experiments.run as run_mod

    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    out, err, saved_argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["experiments/run.py", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as exit_info:
                run_mod.run()
    finally:
        sys.argv = saved_argv
        for name in [n for n in flags.FLAGS if n.startswith("config.")]:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
    return exit_info.value.code or 0, out.getvalue(), err.getvalue()


def _iteration_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("iteration ")]


@pytest.fixture(scope="module")
def mock_mnist():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        yield


@pytest.fixture(scope="module")
def cli_run(mock_mnist, tmp_path_factory):
    """One tiny run of `--config mnist.py` (a bare name) in a fresh workdir."""
    from ics_jax import data

    arrays = data.load_arrays("mnist")  # the same mock data the run sees
    workdir = tmp_path_factory.mktemp("cli_run")
    argv = ["--config", "mnist.py", "--workdir", str(workdir),
            f"--config.normal_class={NORMAL_CLASS}", *tiny_flags()]
    code, out, err = _run_in_process(argv)
    assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return {"workdir": workdir, "argv": argv, "stdout": out, "arrays": arrays}


def test_mock_data_has_every_class_and_both_test_labels(cli_run):
    arrays = cli_run["arrays"]
    assert np.bincount(arrays.y_train, minlength=10).min() >= 10
    assert 0 < (arrays.y_test == NORMAL_CLASS).sum() < len(arrays.y_test)


def test_run_writes_results_config_split_checkpoints_metrics_and_figure(cli_run):
    from PIL import Image

    from ics_jax import pipeline

    workdir = cli_run["workdir"]
    results = json.loads((workdir / "results.json").read_text())
    for key in ("dataset", "normal_class", "method", "rho", "num_iterations", "seeds", "auc",
                "auc_mean", "auc_std", "timing"):
        assert key in results, key
    assert (results["dataset"], results["normal_class"], results["method"]) == (
        "mnist", NORMAL_CLASS, "ics")
    assert results["num_iterations"] == TINY["num_iterations"]
    assert set(results["timing"]) >= {"split", "train", "total"}
    assert all(v >= 0 for v in results["timing"].values())
    aucs = results["auc"]
    assert len(aucs) == len(results["seeds"]) == TINY["num_seeds"]
    assert all(0.0 <= a <= 1.0 for a in aucs)
    assert results["auc_mean"] == pytest.approx(np.mean(aucs), abs=1e-12)
    assert results["auc_std"] == pytest.approx(np.std(aucs), abs=1e-12)

    config = json.loads((workdir / "config.json").read_text())
    for key, value in TINY.items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value), key
    assert config["normal_class"] == NORMAL_CLASS and config["dataset"] == "mnist"

    num_normal = int((cli_run["arrays"].y_train == NORMAL_CLASS).sum())
    with np.load(workdir / "split.npz") as split:
        scores, atypical, typical = split["scores"], split["atypical"], split["typical"]
    assert scores.shape == (num_normal,)
    assert len(atypical) == round(config["rho"] * num_normal) > 0
    assert sorted(np.concatenate([atypical, typical]).tolist()) == list(range(num_normal))

    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps, "no checkpoint step folder"
    final_step = TINY["num_iterations"] * len(pipeline.METHOD_PHASES["ics"])
    assert steps[-1] == final_step

    assert list((workdir / "tensorboard").rglob("events.out.tfevents*"))

    with Image.open(workdir / "typical_atypical.png") as image:
        assert image.format == "PNG" and min(image.size) > 0
        image.verify()

    reports = _iteration_lines(cli_run["stdout"])
    assert [line.split()[1] for line in reports] == ["2/4", "4/4"]


def test_second_run_in_same_workdir_resumes_without_training(cli_run):
    workdir = cli_run["workdir"]
    before = json.loads((workdir / "results.json").read_text())
    split_before = (workdir / "split.npz").read_bytes()
    code, out, err = _run_in_process(cli_run["argv"])
    assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert _iteration_lines(out) == []  # the final checkpoint was restored: nothing to train
    after = json.loads((workdir / "results.json").read_text())
    assert after["auc"] == before["auc"]  # the trained states were restored, not re-initialised
    assert (workdir / "split.npz").read_bytes() == split_before  # the split was reused


# Bad input: exit code 2 and one `error:` line, no traceback ----------------------------------


@pytest.mark.parametrize("case", ["missing_data_dir", "normal_class_11", "unknown_key",
                                  "missing_config_file"])
def test_bad_input_exits_2_with_one_error_line(case, tmp_path, tiny_npz, tiny_overrides):
    config, extra, expect = "mnist.py", [], None
    if case == "missing_data_dir":
        extra, expect = [f"--config.data_dir={tmp_path / 'no_such_dir'}"], "no_such_dir"
    elif case == "normal_class_11":
        extra, expect = [f"--config.data_dir={tiny_npz}", "--config.normal_class=11"], \
            "normal_class"
    elif case == "unknown_key":
        extra, expect = ["--config.nonexistent_key=1"], "nonexistent_key"
    else:
        config, expect = "no_such_config.py", "no_such_config.py"
    workdir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--config", config, "--workdir", str(workdir),
         *tiny_overrides, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), proc.stderr
    assert sum(line.startswith("error:") for line in lines) == 1
    assert expect in lines[-1]
    # Nothing was trained: no split, no checkpoint, no progress line.
    assert not (workdir / "split.npz").exists() and not (workdir / "checkpoints").exists()
    assert _iteration_lines(proc.stdout) == []


def test_commands_ask_for_one_host_device_per_core_unless_the_user_chose():
    from experiments.cli import with_host_devices

    assert with_host_devices("", 2) == "--xla_force_host_platform_device_count=2"
    assert with_host_devices("--xla_dump_to=/tmp/x", 64).endswith("device_count=8")  # capped
    chosen = "--xla_force_host_platform_device_count=1 --xla_dump_to=/tmp/x"
    assert with_host_devices(chosen, 2) == chosen
