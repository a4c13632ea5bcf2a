"""The command line end to end, offline: `python -m experiments.run` on TFDS mock data, and a
study's command line (its cells, `--report`).

Every run is in-process (`tfds.testing.mock_data` does not cross process boundaries), through
`experiments.run.run()`, with its exit code and its stdout and stderr captured.
"""

import contextlib
import io
import json
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
    """One tiny run of `--config mnist.py` (a bare name), the default: ICS on the self-checked
    split, in a fresh workdir."""
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
    assert steps[-1] == TINY["num_iterations"]

    assert list((workdir / "tensorboard").rglob("events.out.tfevents*"))

    with Image.open(workdir / "typical_atypical.png") as image:
        assert image.format == "PNG" and min(image.size) > 0
        image.verify()

    reports = _iteration_lines(cli_run["stdout"])
    assert [line.split()[1] for line in reports] == ["1/4", "2/4", "4/4"]
    for network, steps in (("teacher", TINY["teacher_num_steps"]),
                           ("autoencoder", TINY["ae_num_steps"])):  # the split's two networks
        lines = [line for line in cli_run["stdout"].splitlines()
                 if line.startswith(f"split {network}: step")]
        assert lines and lines[-1].split()[3] == f"{steps}/{steps}"
    assert results["method"] == "ics" and results["split_by"] == "auto"
    assert any(line.startswith("split checks (0 chance, 1 perfect): teacher ")
               for line in cli_run["stdout"].splitlines())
    sight = results["sight"]  # what the checks found, and the weights they gave
    assert set(sight["checks"]) == set(sight["weights"]) == {"teacher", "ssim"}
    assert sum(sight["weights"].values()) == pytest.approx(1.0)
    last = cli_run["stdout"].splitlines()[-1]  # the summary shows ICS, the split and both
    assert f"AUC {results['auc_mean']:.4f}" in last
    assert f"the split's score {results['ssim_auc']:.4f}" in last
    assert f"ICS + the split's score {results['ics_ssim_auc']:.4f}" in last
    assert "split weights teacher" in last


# Bad input: exit code 2 and one `error:` line, no traceback, nothing written --------------


@pytest.mark.parametrize("case", ["missing_data_dir", "normal_class_11", "unknown_key",
                                  "missing_config_file", "bad_config_argument", "bad_data_file"])
def test_bad_input_exits_2_with_one_error_line_and_writes_nothing(case, tmp_path, tiny_npz,
                                                                  tiny_overrides):
    config, extra = "mnist.py", []
    expect = {"missing_data_dir": "no_such_dir", "normal_class_11": "normal_class",
              "unknown_key": "nonexistent_key", "missing_config_file": "no_such_config.py",
              "bad_config_argument": "fast", "bad_data_file": "not an npz"}[case]
    if case == "missing_data_dir":
        extra = [f"--config.data_dir={tmp_path / 'no_such_dir'}"]
    elif case == "normal_class_11":
        extra = [f"--config.data_dir={tiny_npz}", "--config.normal_class=11"]
    elif case == "unknown_key":
        extra = ["--config.nonexistent_key=1"]
    elif case == "missing_config_file":
        config = "no_such_config.py"
    elif case == "bad_config_argument":
        config = "mnist.py:fast"
    else:
        broken = tmp_path / "broken.npz"
        broken.write_bytes(b"not a zip")
        extra = [f"--config.data_dir={broken}"]
    workdir = tmp_path / "run"
    code, out, err = _run_in_process(["--config", config, "--workdir", str(workdir),
                                      *tiny_overrides, *extra])
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), err
    assert sum(line.startswith("error:") for line in lines) == 1
    assert expect in lines[-1]
    assert out == ""  # no header line, no progress
    assert not workdir.exists()  # no config.json, split or checkpoint


def test_a_finished_run_says_so_and_changes_nothing(cli_run):
    workdir = cli_run["workdir"]
    stamps = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    code, out, err = _run_in_process(cli_run["argv"])
    assert code == 0, err
    assert "finished" in out and "nothing changed" in out and "AUC" in out
    assert _iteration_lines(out) == []
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()} == stamps


def test_a_study_runs_only_its_unfinished_cells_and_keeps_every_row(tmp_path):
    from experiments import cli

    calls = []

    def run_cell(cell, data_root, workdir):
        calls.append(cell)
        return {"cell": cell, "data_root": data_root, "workdir": workdir}

    cli.run_cells(["mnist:1", "mnist:2"], str(tmp_path), "DATA", run_cell)
    cli.run_cells(["mnist:1", "mnist:2", "cifar10:3"], str(tmp_path), "DATA", run_cell)  # a rerun
    assert calls == ["mnist:1", "mnist:2", "cifar10:3"]
    rows = cli.read_rows([str(tmp_path / "cells.jsonl")])
    assert [r["cell"] for r in rows] == calls
    assert all(r["data_root"] == "DATA" and r["workdir"] == str(tmp_path) for r in rows)
    with pytest.raises(cli.UsageError, match="'mnist' is not a cell"):
        cli.run_cells(["mnist"], str(tmp_path), "DATA", run_cell)


def _set_row(cell: str, auc: float) -> dict:
    """A row as `experiments.studies.detector_sets.run_cell` writes it."""
    return {"cell": cell, "n_train": 100, "auc_ics": auc, "auc_split": auc, "auc_ocsvm": auc,
            "checks": {"teacher": 0.5, "ssim": 0.25}, "weights": {"teacher": 1.0, "ssim": 0.0},
            "n_iter": 10, "ics_fit_seconds": 3.0, "ocsvm_fit_seconds": 1.0}


def test_a_study_s_report_prints_the_table_of_comma_separated_row_files(tmp_path):
    from experiments.studies import detector_sets

    rows = [_set_row("mnist:0", 0.9), _set_row("mnist:1", 0.8), _set_row("cifar10:3", 0.7)]
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    files[0].write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    files[1].write_text(json.dumps(rows[2]) + "\n")
    command = [sys.executable, "-m", "experiments.studies.detector_sets"]
    done = subprocess.run([*command, f"--report={files[0]},{files[1]}"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    assert done.stdout == detector_sets.report(rows) + "\n"
    # A second file after a space is a cell to the command line, not a report file.
    done = subprocess.run([*command, "--report", str(files[0]), str(files[1])], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: --report runs nothing: drop the cells ({files[1]} ...)\n"
