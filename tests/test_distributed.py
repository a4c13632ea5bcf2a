"""Multi-host building blocks: joining processes (a peer that never comes ends the process in
one line), and the seed blocks, shards and gathers of one process. `test_multihost_run` runs
the whole command as two processes."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import pytest
from conftest import xla_flags

from ics_jax import distributed
from ics_jax.config import default_config

REPO = pathlib.Path(__file__).resolve().parents[1]

# Run as `worker.py ADDRESS NUM_PROCESSES PROCESS_ID TIMEOUT`: joins the processes, then exits.
WORKER = '''
import sys

from ics_jax import distributed
from ics_jax.config import default_config

address, num_processes, process_id, timeout = sys.argv[1:]
config = default_config()
config.update(coordinator_address=address, num_processes=int(num_processes),
              process_id=int(process_id), initialization_timeout=int(timeout))
assert distributed.initialize(config)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.CLUSTER_ENV}
    env.update(XLA_FLAGS=xla_flags(2), JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO))
    return env


def start(script, address, process_id, timeout):
    return subprocess.Popen(
        [sys.executable, str(script), address, "2", str(process_id), str(timeout)],
        env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_unreachable_peer_fails_within_the_timeout(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    proc = start(script, address, 0, 3)
    _, err = proc.communicate(timeout=90)
    elapsed = time.monotonic() - began
    assert proc.returncode == 1, err[-3000:]
    assert elapsed < 3 + 30  # the timeout plus starting Python and importing JAX
    assert (f"ics_jax.distributed: could not reach the coordinator at {address} within 3 s "
            "(process 0 of 2): not every process joined") in err


@pytest.mark.parametrize("given, missing", [
    ({"coordinator_address": "127.0.0.1:1234"}, "num_processes, process_id unset"),
    ({"num_processes": 2, "process_id": 1}, "coordinator_address unset"),
])
def test_partial_settings_name_the_missing_keys(given, missing):
    config = default_config()
    config.update(given)
    with pytest.raises(ValueError, match=missing) as error:
        distributed.initialize(config)
    assert "\n" not in str(error.value)
    assert not jax.distributed.is_initialized()


def test_nothing_set_and_no_cluster_is_one_process(monkeypatch):
    for name in distributed.CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize(default_config()) is False
    assert not jax.distributed.is_initialized()
