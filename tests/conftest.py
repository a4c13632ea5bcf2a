"""Shared test setup: CPU JAX on the default devices (as a user's run; `test_mesh` starts its
own process with 8 host devices), and a tiny experiment configuration.

The environment variables are set here, before any test module imports JAX or TensorFlow.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["JAX_PLATFORMS"] = "cpu"
# Tests rebuild the same programs many times: a suite-wide XLA cache, shared by the test
# workers and their subprocesses, compiles each once; the process that made it removes it.
# Every program goes in (a run's ~100 small eager ones too, ~0.1 s each to compile), so a
# subprocess's run reads what the workers compiled.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ics-jax-test-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite is compile-bound (tiny networks, two thousand programs): LLVM at optimisation
# level 1 compiles them a quarter faster than XLA's default 3 (at 0 the teacher's tiny runs
# end in a non-finite gradient). Every test process and subprocess compiles alike, so the runs
# a test compares are compiled alike; `test_mesh`'s tolerances are level 3's float noise.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=1".strip())


def xla_flags(devices: int | None = None, level: int = 1) -> str:
    """Returns `XLA_FLAGS` for a test's subprocess: LLVM at `level` (the suite's 1; XLA's
    default 3), with `devices` forced host devices if given."""
    count = "" if devices is None else f" --xla_force_host_platform_device_count={devices}"
    return f"--xla_backend_optimization_level={level}{count}"


import gzip  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Config values that make a whole experiment take seconds: two seeds, four iterations, a
# checkpoint and a progress report every two iterations, and networks a few channels wide.
TINY = {
    "num_seeds": 2,
    "num_iterations": 4,
    "log_every": 2,
    "checkpoint_every": 2,
    "ae_num_steps": 3,
    "batch_size": 8,
    "conv_features": (4, 4, 4, 4, 4),
    "dense_features": 8,
    "latent_dim": 4,
    "ae_conv_features": (4, 4, 4, 4, 4),
    "ae_latent_channels": 4,
    "teacher_num_steps": 3,
    "teacher_conv_features": (4, 4, 4, 4, 4),
    "teacher_dense_features": 8,
}


def tiny_flags(values: dict | None = None) -> list[str]:
    """Returns `--config.KEY=VALUE` command-line overrides for `values` (default `TINY`).

    Tuples are written as Python literals, e.g. `--config.conv_features=(4, 4, 4, 4, 4)`, which
    ml_collections' config_flags parses back into a tuple.
    """
    values = TINY if values is None else values
    return [f"--config.{key}={value!r}" if isinstance(value, tuple)
            else f"--config.{key}={value}" for key, value in values.items()]


def apply_tiny(config, values: dict | None = None):
    """Sets `values` (default `TINY`) on the ConfigDict `config` in place and returns it."""
    values = TINY if values is None else values
    with config.unlocked():
        for key, value in values.items():
            if key not in config:
                raise KeyError(f"TINY names {key!r}, which the config does not have")
            setattr(config, key, value)
    return config


@pytest.fixture
def tiny_overrides() -> list[str]:
    """`--config.KEY=VALUE` strings that make a command-line run tiny (see `TINY`)."""
    return tiny_flags()


@pytest.fixture
def tiny_config():
    """The default configuration (`ics_jax.config.default_config`) with `TINY` applied."""
    from ics_jax.config import default_config

    return apply_tiny(default_config())


@pytest.fixture
def tiny_npz(tmp_path):
    """A tiny MNIST-shaped `.npz` data file (random pixels, 4 train images per class)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
             y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """Returns uint8 `array` encoded as IDX: magic 0, 0, 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: pathlib.Path, arrays, gz: bool = True) -> None:
    """Writes the four MNIST IDX files of `arrays` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    values = (arrays.x_train[..., 0], arrays.y_train, arrays.x_test[..., 0], arrays.y_test)
    for stem, value in zip(stems, values, strict=False):
        raw = idx_bytes(value)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


def toy_data(key=0, n_typical=40, n_atypical=12, shape=(28, 28, 1)):
    """`train.SplitData` of toy images: typical, a bright centre square plus a little noise;
    atypical, uniform noise."""
    import jax.numpy as jnp

    from ics_jax import train

    rng = np.random.default_rng(key)
    typical = 0.05 * rng.random((n_typical,) + shape)
    typical[:, 10:18, 10:18] += 0.9
    atypical = rng.random((n_atypical,) + shape)
    return train.SplitData(jnp.asarray(typical, jnp.float32), jnp.asarray(atypical, jnp.float32))
