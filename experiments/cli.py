"""What every command of `experiments/` shares: config-name resolution and one-line errors."""

import os
import sys
from collections.abc import Callable

from absl import app, flags

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class UsageError(ValueError):
    """A mistake in the command line."""


def resolve_config_path(argv: list[str]) -> list[str]:
    """Rewrites `--config NAME.py[:arg]` to a path under `experiments/configs/` if needed."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = _resolve(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + _resolve(arg.split("=", 1)[1])
    return out


def _resolve(spec: str) -> str:
    path, sep, rest = spec.partition(":")
    if not os.path.exists(path) and os.path.exists(os.path.join(CONFIG_DIR, path)):
        path = os.path.join(CONFIG_DIR, path)
    return path + sep + rest


def _parse_flags(argv: list[str]) -> list[str]:
    """Parses `argv` like absl, but a bad flag raises UsageError (one line, exit code 2) instead
    of absl's usage text and exit code 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise UsageError(str(e)) from e
    except (AttributeError, KeyError) as e:  # ml_collections: `--config.KEY` names no key
        key = str(e).strip("\"' ")
        raise UsageError(f"unknown config key {key!r}: no --config.{key} in the config "
                         "(keys: ics_jax/config.py)") from e


def with_host_devices(xla_flags: str, num_cores: int | None = None) -> str:
    """Returns `xla_flags` asking for one CPU device per core (at most 8) unless it already
    names a count. One seed then splits its batch over the host devices (1.37x one device's
    steps/s on 2 cores), several run side by side (`ics_jax/placement.py`, `seeds.py`); an
    accelerator backend is unaffected."""
    if "xla_force_host_platform_device_count" in xla_flags:
        return xla_flags
    num_cores = num_cores or len(os.sched_getaffinity(0))
    return f"{xla_flags} --xla_force_host_platform_device_count={min(num_cores, 8)}".strip()


def run_app(main: Callable[[list[str]], None]) -> None:
    """Runs an absl `main`; a user mistake ends with one `error:` line and exit code 2.

    `--debug` anywhere on the command line shows the traceback instead.
    """
    # XLA's persistent cache: a rerun, a resumed run and every sweep cell after the first reuse
    # compiled programs instead of compiling them again (seconds to a minute each on a CPU).
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "ics_jax", "xla"))
    os.environ["XLA_FLAGS"] = with_host_devices(os.environ.get("XLA_FLAGS", ""))
    argv = resolve_config_path(sys.argv)
    debug = "--debug" in argv
    # Warnings and errors only: Orbax and TensorFlow log every checkpoint step at INFO level.
    # A later `--verbosity=0` on the command line brings them back.
    argv = argv[:1] + ["--verbosity=-1"] + [a for a in argv[1:] if a != "--debug"]
    try:
        app.run(main, argv=argv, flags_parser=_parse_flags)
    except (ValueError, KeyError, TypeError, OSError, AttributeError, FloatingPointError) as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        # 1: the run itself failed (a non-finite loss); 2: the user's input was wrong.
        sys.exit(1 if isinstance(e, FloatingPointError) else 2)
