r"""`ics_jax.ICS()` with its defaults, its split's own score and a pixel one-class SVM on image
sets a user might bring: a benchmark class, the same turned (no upright orientation), a few
hundred images.

    python -m experiments.studies.detector_sets --workdir runs/sets --data_root ../shared/data \
        mnist:0 mnist:2:turned mnist:2:n100 fashion_mnist:0:n300:turned

A cell is `dataset:class`, then `:nN` (the first N normal training images) and `:turned` (every
training and test image turned by a seeded random quarter turn) in any order. Per cell, one JSON
line in `workdir/cells.jsonl` (a finished cell is skipped on a rerun): the test AUC of ICS, of
the split's score (`ICS.split_score`), of the one-class SVM on the [0, 1] pixels (nu 0.1,
`baselines.ocsvm_scores`), the split's checks and weights, and the fit times.

    python -m experiments.studies.detector_sets --report docs/sight/sets.jsonl

prints them as the markdown table of docs/sight.md.
"""

import os
import time

import ics_jax
from experiments import cli
from ics_jax import baselines, evaluate, sight
from ics_jax import data as data_lib


def run_cell(cell: str, data_root: str, workdir: str) -> dict:
    """Returns the row of one cell; it keeps nothing in `workdir`."""
    del workdir
    dataset, normal_class, *options = cell.split(":")
    data = data_lib.load_one_class(dataset, int(normal_class),
                                   os.path.join(data_root, cli.DATA_FILES[dataset]))
    x_train, x_test = data.x_train, data.x_test
    for option in options:
        if option.startswith("n"):
            x_train = x_train[:int(option[1:])]
    if "turned" in options:
        x_train, x_test = sight.turned(x_train, 1), sight.turned(x_test, 2)
    start = time.time()
    model = ics_jax.ICS().fit(x_train)
    ics_seconds = time.time() - start
    start = time.time()
    ocsvm = baselines.ocsvm_scores(x_train, x_test, nu=0.1)
    ocsvm_seconds = time.time() - start
    return {"cell": cell, "n_train": int(x_train.shape[0]),
            "auc_ics": evaluate.auc(data.y_test, model.decision_function(x_test)),
            "auc_split": evaluate.auc(data.y_test, -model.split_score(x_test)),
            "auc_ocsvm": evaluate.auc(data.y_test, ocsvm), "checks": model.checks_,
            "weights": model.weights_, "n_iter": model.n_iter_,
            "ics_fit_seconds": round(ics_seconds, 1), "ocsvm_fit_seconds": round(ocsvm_seconds, 1)}


def report(rows: list[dict]) -> str:
    """Returns the markdown table of `rows` (`run_cell`'s), AUC in %."""
    lines = ["| cell | images | checks (teacher, SSIM) | weights | ICS | the split's score | "
             "pixel OCSVM | ICS fit |", "| --- |" + " --- |" * 7]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['n_train']} | {r['checks']['teacher']:.2f}, "
            f"{r['checks']['ssim']:.2f} | {r['weights']['teacher']:.1f}, "
            f"{r['weights']['ssim']:.1f} | {100 * r['auc_ics']:.1f} | {100 * r['auc_split']:.1f}"
            f" | {100 * r['auc_ocsvm']:.1f} | {r['ics_fit_seconds']:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.cells_main(run_cell, report)
