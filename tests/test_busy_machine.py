"""The default command at the default model size, on the default devices, on a busy machine.

`experiments.run --config mnist.py:quick`, cut to a few steps, beside a CPU-bound process: it
finishes, with the AUC of the same config run first in this quiet process, to the last digit. The
process boundary is the point: the run sets up its devices as a user's command does. (The quiet
run fills the suite's compilation cache, so the hog lives only while the busy run trains.)
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from conftest import xla_flags

from experiments.configs import mnist
from ics_jax import pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _mnist_like(path: pathlib.Path) -> pathlib.Path:
    """An `.npz` of 28x28 images, 40 training and 20 test images per class."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=np.arange(400) % 10, x_test=x_test,
             y_test=np.arange(200) % 10)
    return path


OVERRIDES = {"teacher_num_steps": 4, "ae_num_steps": 4, "num_iterations": 3, "log_every": 3}


def test_the_default_run_finishes_beside_a_cpu_hog_with_the_quiet_result(tmp_path):
    npz = _mnist_like(tmp_path / "mnist_like.npz")
    config = mnist.get_config("quick")
    config.update(data_dir=str(npz), **OVERRIDES)
    quiet = pipeline.run_experiment(config, str(tmp_path / "quiet"))

    # The default devices: the suite's XLA_FLAGS force no device count.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": xla_flags()}
    command = [sys.executable, "-m", "experiments.run", "--config", "mnist.py:quick",
               "--workdir", str(tmp_path / "busy"), f"--config.data_dir={npz}",
               *(f"--config.{k}={v}" for k, v in OVERRIDES.items())]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
    finally:
        hog.kill()
        hog.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    busy = json.loads((tmp_path / "busy" / "results.json").read_text())
    assert busy["num_devices"] == 1  # the default devices
    assert (busy["method"], busy["split_by"]) == ("ics", "auto")  # it trained ICS
    assert busy["auc"] == quiet["auc"]
