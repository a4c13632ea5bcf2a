r"""Runs one experiment: `python -m experiments.run --config mnist.py --workdir DIR`.

A bare config name resolves to `experiments/configs/`; a path works too, and `name.py:arg`
passes `arg` to its `get_config`. `--config.KEY=VALUE` overrides any key. With several processes
(`--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I`, or a
cluster's environment) every process runs this same command; process 0 prints and writes. A
mistake in the command line, config or data ends with one line on stderr and exit code 2
(`--debug` shows the traceback).
"""

import os
import sys
import time

from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for this run's outputs.")


def _print_progress(report: dict) -> None:
    it, total, seconds = report["iteration"], report["num_iterations"], report["seconds"]
    losses = "  ".join(f"{k} {v:.4f}" for k, v in report["losses"].items())
    rate = it / seconds if seconds > 0 else float("nan")
    left = (total - it) / rate if rate > 0 else float("nan")
    print(f"iteration {it}/{total}  {losses}  {rate:.2f} it/s  {left / 60:.1f} min left",
          flush=True)


def main(argv: list[str]) -> None:
    del argv
    # After flag parsing: a bad flag should not wait on JAX.
    from ics_jax import baselines, distributed, pipeline

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config NAME.py and --workdir DIR")
    distributed.initialize(config)  # several processes: joins them; else nothing
    primary = distributed.is_primary()
    if not primary:  # process 0 speaks for all
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    budget = (f"{config.num_seeds} seeds x {config.num_iterations} iterations"
              if config.method in pipeline.METHOD_PHASES else
              "one run, no seed" if config.method in baselines.DETERMINISTIC else
              f"{config.num_seeds} seeds")
    print(f"{config.method} on {config.dataset} class {config.normal_class}: {budget} -> "
          f"{workdir}", flush=True)
    t0 = time.time()
    results = pipeline.run_experiment(config, workdir, progress=_print_progress)
    aucs = ", ".join(f"{a:.4f}" for a in results["auc"])
    print(f"AUC {results['auc_mean']:.4f} +- {results['auc_std']:.4f} (seeds: {aucs}); "
          f"{time.time() - t0:.0f} s; results in {os.path.join(workdir, 'results.json')}",
          flush=True)


def run() -> None:
    """Entry point (also called by the tests)."""
    cli.run_app(main)


if __name__ == "__main__":
    run()
