"""Multi-host: real JAX processes on 127.0.0.1 (two devices each), joined by
`ics_jax.distributed`, each feeding its block of a seed-stacked state."""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ics_jax import distributed
from ics_jax.config import default_config

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_SEEDS = 4  # two processes x two devices: one seed per device

# Run as `worker.py ADDRESS NUM_PROCESSES PROCESS_ID TIMEOUT OUT_DIR [init-only]`. Prints the
# gathered states as JSON; writes OUT_DIR/results.json on the primary process only.
WORKER = '''
import json, os, sys

import jax
import jax.numpy as jnp

from ics_jax import distributed, outputs
from ics_jax.config import default_config


def init(seed):
    k_w, k_b = jax.random.split(jax.random.key(seed))
    return {"w": jax.random.normal(k_w, (3,)), "b": jax.random.uniform(k_b, ())}


def train(state, num_steps=5):
    def loss(s):
        return jnp.sum(jnp.sin(s["w"]) * s["w"] ** 2) + s["b"] ** 2 * jnp.sum(s["w"])

    def step(_, s):
        return jax.tree.map(lambda p, g: p - 0.1 * g, s, jax.grad(loss)(s))

    return jax.lax.fori_loop(0, num_steps, step, state)


def stack_seeds(seeds):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[init(s) for s in seeds])


if __name__ == "__main__":
    address, num_processes, process_id, timeout, out_dir, *init_only = sys.argv[1:]
    config = default_config()
    config.coordinator_address = address
    config.num_processes = int(num_processes)
    config.process_id = int(process_id)
    config.initialization_timeout = int(timeout)
    assert distributed.initialize(config)
    if init_only:
        sys.exit(0)
    assert distributed.initialize(config)  # a second call changes nothing
    assert jax.process_index() == int(process_id) and jax.device_count() == 4
    mesh = distributed.seed_mesh()
    block = distributed.local_seed_slice(4, mesh)
    states = distributed.shard_seeds(stack_seeds(range(block.start, block.stop)), 4, mesh)
    assert not states["w"].is_fully_addressable and len(states["w"].sharding.device_set) == 4
    gathered = distributed.gather(jax.jit(jax.vmap(train))(states))
    values = {"block": [block.start, block.stop], "process": jax.process_index(),
              **{k: v.tolist() for k, v in gathered.items()}}
    if distributed.is_primary():
        outputs.write_json(os.path.join(out_dir, "results.json"), values)
    print(json.dumps(values))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.CLUSTER_ENV}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO))
    return env


def start(script, address, process_id, timeout, out_dir, *extra):
    return subprocess.Popen(
        [sys.executable, str(script), address, "2", str(process_id), str(timeout), str(out_dir),
         *extra], env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def worker(tmp_path):
    """The worker script, written to `tmp_path`, and its module (for a single-process run)."""
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    spec = importlib.util.spec_from_file_location("worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_two_processes_match_one_and_only_process_0_writes(tmp_path, worker):
    script, module = worker
    address = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / f"out{i}" for i in range(2)]
    procs = [start(script, address, i, 30, outs[i]) for i in range(2)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]

    expected = jax.vmap(module.train)(module.stack_seeds(range(NUM_SEEDS)))
    printed = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert [r["block"] for r in printed] == [[0, 2], [2, 4]]
    for r in printed:  # every process gathers every seed
        for key in ("w", "b"):
            np.testing.assert_allclose(r[key], expected[key], rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected["w"][0], expected["w"][2])  # seeds differ
    assert sorted(os.listdir(outs[0])) == ["results.json"]
    assert not outs[1].exists()
    assert json.loads((outs[0] / "results.json").read_text()) == printed[0]


def test_unreachable_peer_fails_within_the_timeout(tmp_path, worker):
    script, _ = worker
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    proc = start(script, address, 0, 3, tmp_path, "init-only")
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


def test_seeds_must_split_evenly_over_the_devices():
    mesh = distributed.seed_mesh()
    with pytest.raises(ValueError, match=f"pad them to a multiple of {mesh.size}"):
        distributed.local_seed_slice(mesh.size + 1, mesh)


def test_one_process_shards_and_gathers_every_seed():
    mesh = distributed.seed_mesh()
    tree = {"x": np.arange(mesh.size * 3, dtype=np.float32).reshape(mesh.size, 3)}
    assert distributed.local_seed_slice(mesh.size, mesh) == slice(0, mesh.size)
    sharded = distributed.shard_seeds(tree, mesh.size, mesh)
    assert len(sharded["x"].sharding.device_set) == mesh.size
    np.testing.assert_array_equal(distributed.gather(sharded)["x"], tree["x"])
