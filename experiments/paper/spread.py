"""The report-to-report spread of a trained network's test AUC: how much the final number
depends on where training stopped.

    python -m experiments.paper.spread docs/table1/cifar10/{3,5,9}/ics_rho0.1

For each run folder (a `test_curve.json`, written with `--config.test_curve=True`) and each seed,
the standard deviation (ddof 1) of the test AUC over the reports at iteration 300 and later;
prints one line per run and the mean over every run and seed, in AUC points. A diagnostic on
labelled test data: it selects nothing.
"""

import json
import pathlib

import numpy as np

from experiments import cli

FROM_ITERATION = 300


def seed_spreads(run_dir: pathlib.Path) -> np.ndarray:
    """Returns `[S]` the per-seed standard deviation of the test AUC (%) over the reports at
    `FROM_ITERATION` and later, from `run_dir/test_curve.json`."""
    with open(run_dir / "test_curve.json") as f:
        points = [p for p in json.load(f) if p["iteration"] >= FROM_ITERATION]
    if len(points) < 2:
        raise cli.UsageError(f"{run_dir} has {len(points)} report(s) from iteration "
                             f"{FROM_ITERATION} on; the spread needs at least 2")
    return np.std(100 * np.array([p["auc"] for p in points]), axis=0, ddof=1)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise cli.UsageError("give the run folders: python -m experiments.paper.spread RUN ...")
    spreads = []
    for arg in argv[1:]:
        s = seed_spreads(pathlib.Path(arg))
        spreads.extend(s)
        print(f"{arg}: " + ", ".join(f"{v:.2f}" for v in s))
    print(f"mean over {len(spreads)} seed runs: {np.mean(spreads):.2f} AUC points")


if __name__ == "__main__":
    cli.run_app(main)
