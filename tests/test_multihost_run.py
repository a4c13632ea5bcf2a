"""`experiments.run` as two JAX processes on 127.0.0.1 (one CPU device each, so that every
collective crosses processes through gloo): the mesh placement gives the AUCs of a
single-process loop over the same seeds, and process 0 alone speaks."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from conftest import TINY, apply_tiny, tiny_flags, xla_flags

from ics_jax import default_config, pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]
# 3 seeds over 2 devices: the seed axis is padded by one. The NaiveNN network: the same seeds
# and trainer, without a split autoencoder to train in every process.
SETTINGS = {**TINY, "method": "naive_nn", "num_seeds": 3, "num_iterations": 2,
            "initialization_timeout": 60}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(workdir, npz, *extra):
    return [sys.executable, "-m", "experiments.run", "--config", "mnist.py",
            "--workdir", str(workdir), f"--config.data_dir={npz}", *tiny_flags(SETTINGS), *extra]


def _env(devices: int):
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
            "XLA_FLAGS": xla_flags(devices)}


def test_two_processes_train_the_seeds_of_one_process(tmp_path, tiny_npz):
    port = _free_port()
    sharded = tmp_path / "sharded"
    procs = [subprocess.Popen(
        _command(sharded, tiny_npz, f"--config.coordinator_address=127.0.0.1:{port}",
                 "--config.num_processes=2", f"--config.process_id={i}"),
        cwd=REPO, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    # Process 0 speaks for both (Gloo's own connection lines come from C++, not from us).
    assert "AUC" in outs[0][0]
    assert not [line for line in outs[1][0].splitlines() if not line.startswith("[Gloo]")]

    config = apply_tiny(default_config(), SETTINGS)
    config.data_dir = str(tiny_npz)
    single = pipeline.run_experiment(config, str(tmp_path / "single"))  # the one-process loop
    a = json.loads((sharded / "results.json").read_text())
    assert a["placement"] == "mesh" and single["placement"] == "loop" and len(a["auc"]) == 3
    assert a["auc"] == single["auc"]  # AUC is a ranking: equal up to float noise in the scores
