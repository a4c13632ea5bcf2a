"""What every command of `experiments/` shares: config-name resolution, one-line errors, and the
command line of a study of cells (`cells_main`)."""

import json
import os
import sys
import warnings
from collections.abc import Callable

from absl import app, flags

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# Where each dataset lies under a folder like ../shared/data (its README).
DATA_FILES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist",
              "cifar10": "cifar10_jpeg.tar.gz"}


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
        message = str(e)
        if "Traceback (most recent call last)" in message:  # a config file's get_config raised
            last = message.strip().splitlines()[-1]  # "module.SomeError: what went wrong"
            message = f"in the config file: {last.split(': ', 1)[-1]}"
        raise UsageError(message) from e
    except (AttributeError, KeyError) as e:  # ml_collections: `--config.KEY` names no key
        key = str(e).strip("\"' ")
        raise UsageError(f"unknown config key {key!r}: no --config.{key} in the config "
                         "(keys: ics_jax/config.py)") from e


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the user's input was wrong: a bad flag, config or data file, or a
    path that cannot be read or written. Imported only when an error comes: a command that needs
    no JAX (the PyTorch peer) loads none."""
    from experiments.paper.cells import SweepError
    from ics_jax.config import ConfigError
    from ics_jax.data import DataError

    return UsageError, ConfigError, DataError, SweepError, OSError


def run_app(main: Callable[[list[str]], None]) -> None:
    """Runs an absl `main`. A mistake in the command line, config or data ends with one
    `error:` line and exit code 2, a non-finite loss with one line and exit code 1; anything
    else is a bug and shows its traceback. `--debug` shows the traceback of every error."""
    # XLA's persistent cache: a rerun, a resumed run and every sweep cell after the first reuse
    # compiled programs instead of compiling them again (seconds to a minute each on a CPU).
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "ics_jax", "xla"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's notices, if TFDS loads it
    argv = resolve_config_path(sys.argv)
    debug = "--debug" in argv
    # Warnings and errors only: Orbax logs every checkpoint step at INFO level. A later
    # `--verbosity=0` on the command line brings them back.
    argv = argv[:1] + ["--verbosity=-1"] + [a for a in argv[1:] if a != "--debug"]
    # A library warning (no split score sees the images, say) is one line on stderr.
    warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
    try:
        app.run(main, argv=argv, flags_parser=_parse_flags)
    except Exception as e:
        from ics_jax.trainer import NonFiniteError

        if debug or not isinstance(e, (*_user_errors(), NonFiniteError)):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1 if isinstance(e, NonFiniteError) else 2)


def cells_main(run_cell: Callable[[str, str, str], dict],
               report: Callable[[list[dict]], str]) -> None:
    """Runs a study of cells (`dataset:class[:options]`, one JSON row each) as a command:
    `--workdir DIR --data_root DATA CELL ...` runs the cells not yet in `DIR/cells.jsonl`
    (`run_cell(cell, data_root, workdir) -> row`), appending each row as it finishes;
    `--report FILE[,FILE...]` prints `report(rows)` of the rows in the files and runs nothing.
    Its flags are defined here, so a study module defines none when imported."""
    study = sys.argv[0]  # the module whose flags `--help` lists: the study's
    workdir = flags.DEFINE_string("workdir", None, "The study's folder: cells.jsonl, and what "
                                  "its cells keep.", module_name=study)
    data_root = flags.DEFINE_string("data_root", None, "The datasets' raw files, laid out as "
                                    "../shared/data.", module_name=study)
    report_files = flags.DEFINE_list("report", None, "Print the table of the rows in these "
                                     "JSONL files (comma-separated) and run nothing.",
                                     module_name=study)

    def main(argv: list[str]) -> None:
        cells = argv[1:]
        if report_files.value:
            if cells:
                raise UsageError(f"--report runs nothing: drop the cells ({cells[0]} ...)")
            print(report(read_rows(report_files.value)))
            return
        if not cells or workdir.value is None or data_root.value is None:
            raise UsageError("give --workdir DIR --data_root DATA CELL ..., or --report "
                             "FILE[,FILE...]")
        run_cells(cells, workdir.value, data_root.value, run_cell)

    run_app(main)


def read_rows(paths: list[str]) -> list[dict]:
    """Returns the rows of the JSONL files `paths`, in order."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f]
    return rows


def run_cells(cells: list[str], workdir: str, data_root: str,
              run_cell: Callable[[str, str, str], dict]) -> None:
    """Runs `run_cell(cell, data_root, workdir)` for each of `cells` not yet in
    `workdir/cells.jsonl`, printing each row and appending it to the file as it finishes."""
    bad = [c for c in cells if ":" not in c]
    if bad:
        raise UsageError(f"{bad[0]!r} is not a cell: give dataset:class[:options]")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "cells.jsonl")
    done = {row["cell"] for row in read_rows([path])} if os.path.exists(path) else set()
    for cell in (c for c in cells if c not in done):
        row = run_cell(cell, data_root, workdir)
        print(json.dumps(row), flush=True)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
