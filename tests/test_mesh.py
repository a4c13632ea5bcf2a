"""The `mesh` placement on 8 host devices, against the one-process CPU loop.

A process's device count is fixed when JAX starts, and the other tests run on the default
devices (one CPU), so `test_mesh_cases_on_eight_host_devices` runs this module again in a
subprocess with `--xla_force_host_platform_device_count=8`; there the cases below run, here
they are skipped. Reports and results of the mesh placement come back through the host: no
program here reshards across the host devices (an in-process collective, which can deadlock on
a busy machine).
"""

import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY, apply_tiny, toy_data, xla_flags
from test_seeds import _iteration, _states

from ics_jax import default_config, distributed, seeds, trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
EIGHT = pytest.mark.skipif(jax.device_count() != 8, reason="runs in a subprocess with 8 devices")


def test_mesh_cases_on_eight_host_devices():
    if jax.device_count() == 8:
        pytest.skip("this is the subprocess")
    # At XLA's default optimisation: the loop-vs-mesh tolerances below are its float noise.
    env = {**os.environ, "XLA_FLAGS": xla_flags(8, level=3)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                          __file__], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout, run.stdout[-2000:]


@EIGHT
def test_the_mesh_placement_equals_a_loop_over_seeds_with_padding(monkeypatch):
    """3 seeds over 8 host devices: five of them run padding copies of seed 0. Each program
    runs a scan of 3 iterations, as on an accelerator (the CPU's one iteration per program
    runs in `test_multihost_run`)."""
    monkeypatch.setattr(seeds, "iterations_per_call", lambda report_every: 3)
    net, tx, iteration = _iteration(tx=optax.sgd(0.05))
    keys = jax.random.split(jax.random.key(6), 3)
    reported = {}

    def run(where):
        return seeds.runner(where)(
            iteration, _states(net, tx, 3), toy_data(), keys, 0, 6, report_every=3,
            on_report=lambda e, s, m: reported.setdefault((where, e), m["loss/closeness"].shape))

    loop, mesh = run("loop"), run("mesh")
    assert reported[("mesh", 6)] == (3, 3)  # [iterations, seeds]: no padding
    assert reported[("loop", 1)] == (1, 3) and reported[("loop", 6)] == (3, 3)
    chex.assert_trees_all_close(loop.params, mesh.params, rtol=1e-4, atol=1e-6)


@EIGHT
def test_the_teacher_s_seeds_run_in_one_mesh_program_equal_to_the_loop():
    """The teacher through the same runner: 3 seeds over 8 host devices."""
    config = apply_tiny(default_config(), {**TINY, "method": "teacher", "num_seeds": 3})
    teacher = trainer.make_trainer(config)
    images = jnp.asarray(toy_data().typical)  # [N, 28, 28, 1]
    keys = jnp.stack([trainer.seed_keys(s)[1] for s in range(3)])
    states = {where: seeds.runner(where)(
        teacher.step, teacher.init_states([0, 1, 2], images.shape[1:]), images, keys, 0, 4,
        report_every=2) for where in ("loop", "mesh")}
    # The scores, not the parameters: a convolution's bias before batch norm has no true
    # gradient, and Adam turns the float noise in its gradient into full steps.
    scores = {where: trainer.test_scores(teacher, s, np.asarray(images))
              for where, s in states.items()}
    np.testing.assert_allclose(scores["loop"], scores["mesh"], rtol=1e-4, atol=1e-5)


@EIGHT
def test_seeds_must_split_evenly_over_the_devices():
    mesh = distributed.seed_mesh()
    with pytest.raises(ValueError, match=f"pad them to a multiple of {mesh.size}"):
        distributed.local_seed_slice(mesh.size + 1, mesh)


@EIGHT
def test_one_process_shards_and_gathers_every_seed():
    mesh = distributed.seed_mesh()
    tree = {"x": np.arange(mesh.size * 3, dtype=np.float32).reshape(mesh.size, 3)}
    assert distributed.local_seed_slice(mesh.size, mesh) == slice(0, mesh.size)
    sharded = distributed.shard_seeds(tree, mesh.size, mesh)
    assert len(sharded["x"].sharding.device_set) == mesh.size
    np.testing.assert_array_equal(distributed.gather(sharded)["x"], tree["x"])
