r"""Runs one experiment: `python -m experiments.run --config mnist.py --workdir DIR`.

A bare config name resolves to `experiments/configs/`; a path works too, and `name.py:arg`
passes `arg` to its `get_config`. `--config.KEY=VALUE` overrides any key. A mistake in the
command line, config or data ends with one line on stderr and exit code 2 (`--debug` shows the
traceback).
"""

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def resolve_config_path(argv: list[str]) -> list[str]:
    """Rewrites `--config NAME.py[:arg]` to a path under `experiments/configs/` if needed."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = _resolve(out[i + 1])
        elif arg.startswith("--config=") and "." not in arg.split("=", 1)[0][len("--config"):]:
            out[i] = "--config=" + _resolve(arg.split("=", 1)[1])
    return out


def _resolve(spec: str) -> str:
    path, sep, rest = spec.partition(":")
    if not os.path.exists(path) and os.path.exists(os.path.join(CONFIG_DIR, path)):
        path = os.path.join(CONFIG_DIR, path)
    return path + sep + rest


_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for this run's outputs.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show tracebacks instead of one-line errors.")


def _print_progress(report: dict) -> None:
    it, total, seconds = report["iteration"], report["num_iterations"], report["seconds"]
    losses = "  ".join(f"{k} {v:.4f}" for k, v in report["losses"].items())
    rate = it / seconds if seconds > 0 else float("nan")
    left = (total - it) / rate if rate > 0 else float("nan")
    print(f"iteration {it}/{total}  {losses}  {rate:.2f} it/s  {left / 60:.1f} min left",
          flush=True)


def main(argv: list[str]) -> None:
    del argv
    from ics_jax import pipeline  # after flag parsing: a bad flag should not wait on JAX

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise UsageError("give --config NAME.py and --workdir DIR")
    print(f"{config.method} on {config.dataset} class {config.normal_class}: "
          f"{config.num_seeds} seeds x {config.num_iterations} iterations -> {workdir}", flush=True)
    t0 = time.time()
    results = pipeline.run_experiment(config, workdir, progress=_print_progress)
    aucs = ", ".join(f"{a:.4f}" for a in results["auc"])
    print(f"AUC {results['auc_mean']:.4f} +- {results['auc_std']:.4f} (seeds: {aucs}); "
          f"{time.time() - t0:.0f} s; results in {os.path.join(workdir, 'results.json')}",
          flush=True)


class UsageError(ValueError):
    """A mistake in the command line."""


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


def run() -> None:
    """Entry point: absl app with one-line errors for user mistakes."""
    argv = resolve_config_path(sys.argv)
    debug = "--debug" in argv
    try:
        app.run(main, argv=argv, flags_parser=_parse_flags)
    except (ValueError, KeyError, TypeError, OSError, AttributeError) as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
