"""A run killed with SIGKILL mid-training and rerun ends exactly where an uninterrupted run does;
interrupted writes leave the previous file."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY, apply_tiny, tiny_flags

from ics_jax import default_config, outputs, pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]
# The teacher with two seeds, through the runner every network trains with (ICS's own resume
# is `test_pipeline`'s, in one process); many small checkpoints, so that the run is still going
# when the first one lands.
SETTINGS = {**TINY, "method": "teacher", "num_seeds": 2, "teacher_num_steps": 12,
            "log_every": 2, "checkpoint_every": 2}


def _command(workdir, npz):
    return [sys.executable, "-m", "experiments.run", "--config", "mnist.py",
            "--workdir", str(workdir), f"--config.data_dir={npz}",
            *tiny_flags(SETTINGS)]


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _steps(workdir) -> list[int]:
    folder = workdir / "checkpoints"
    return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_npz):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed, tiny_npz), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not _steps(killed) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists(), "the run ended before it could be killed"
    assert _steps(killed), "no checkpoint was written before the kill"

    subprocess.run(_command(killed, tiny_npz), cwd=REPO, env=_env(), check=True,
                   capture_output=True, timeout=300)
    config = apply_tiny(default_config(), SETTINGS)
    config.data_dir = str(tiny_npz)
    straight = pipeline.run_experiment(config, str(tmp_path / "straight"))  # never interrupted
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["auc"] == straight["auc"]  # bit-identical on CPU


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    outputs.write_json(str(path), {"auc": 0.5})

    def broken_dumps(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process were stopped mid-write

    monkeypatch.setattr(outputs.json, "dumps", broken_dumps)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_json(str(path), {"auc": 0.9})
    assert json.loads(path.read_text()) == {"auc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
