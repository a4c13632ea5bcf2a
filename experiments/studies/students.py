r"""ICS against the score its split is cut by: the classifier variants of docs/students.md, one
seed, on one split per class.

    python -m experiments.studies.students --workdir workdirs/students --data_root ../shared/data \
        cifar10:3:ics cifar10:3:student cifar10:3:rank cifar10:3:student_rank

A cell is `dataset:class:variant[:seed]` (seed 0 if left out: the classifier's initialisation);
the variants are `VARIANTS`' config changes to the quick config
(`experiments/configs/<dataset>.py:quick`: 300 iterations, the self-checked split). The split of
a class is computed once (`workdir/<dataset>/<class>/split.npz` and the teacher's variables
beside it) and shared by its variants and seeds. Per cell, one JSON line in
`workdir/cells.jsonl` (a finished cell is skipped on a rerun): the test AUC of the classifier's
own score at the end, of the split's score, and the test AUC at each report (a diagnostic
curve, never a selection).

    python -m experiments.studies.students --report docs/students/rows.jsonl

prints the markdown table of docs/students.md.
"""

import os
import time

import numpy as np

from experiments import cli
from experiments.configs import common
from ics_jax import data as data_lib
from ics_jax import evaluate, outputs
from ics_jax import split as split_lib
from ics_jax import trainer as trainer_lib

# Each variant's config changes to the quick config.
VARIANTS = {
    "ics": {},
    "student": {"student": True},
    "rank": {"targets": "rank"},
    "both": {"targets": "both"},  # the ranking beside the binary phase
    "both_long": {"targets": "both", "num_iterations": 600},  # twice the quick budget
    "student_rank": {"student": True, "targets": "rank"},
    # The student fine-tuned a third as long.
    "student_short": {"student": True, "num_iterations": 100},
    # A noisy student: shifted inputs and dropout.
    "student_noisy": {"student": True, "augment": "shift", "dropout": 0.5},
}


def class_split(config, data, directory: str):
    """Returns `(split, teacher variables)` of `config`'s class, computed once in
    `directory`."""
    split_path, teacher_path = (os.path.join(directory, f) for f in ("split.npz",
                                                                     "teacher.msgpack"))
    if os.path.exists(teacher_path):
        return split_lib.load(split_path), outputs.read_variables(teacher_path)
    split, model = split_lib.compute_split(config, data.x_train, split_lib.split_key(config),
                                           data.x_test)
    split_lib.save(split_path, split)
    outputs.write_variables(teacher_path, model["teacher"])
    return split, model["teacher"]


def run_cell(cell: str, data_root: str, workdir: str) -> dict:
    dataset, normal_class, variant, *seed = cell.split(":")
    config = common.make(dataset, "quick")
    config.normal_class = int(normal_class)
    config.seed = int(seed[0]) if seed else 0
    config.log_every = 50
    config.update(VARIANTS[variant])
    data = data_lib.load_one_class(dataset, config.normal_class,
                                   os.path.join(data_root, cli.DATA_FILES[dataset]))
    start = time.time()
    split, teacher = class_split(config, data, os.path.join(workdir, dataset, normal_class))
    split_seconds = time.time() - start
    trainer = trainer_lib.make_trainer(config, teacher if config.student else None)
    curve, losses = [], []

    def on_report(iteration, metrics, states):
        scores = trainer_lib.test_scores(trainer, states, data.x_test)[0]
        curve.append([iteration, round(evaluate.auc(data.y_test, scores), 4)])
        losses.append({k: round(v, 4) for k, v in metrics.items() if k.startswith("loss/")})

    start = time.time()
    states = trainer_lib.train_states(
        trainer, config, trainer_lib.training_data(trainer, data.x_train, split),
        data.x_train.shape[1:], on_report=on_report)
    scores = trainer_lib.test_scores(trainer, states, data.x_test)[0]
    return {"cell": cell, "auc": evaluate.auc(data.y_test, scores),
            "auc_split": evaluate.auc(data.y_test, -split.test_scores),
            "weights": split.sight["weights"], "curve": curve, "last_losses": losses[-1],
            "split_seconds": round(split_seconds, 1),
            "train_seconds": round(time.time() - start, 1)}


def report(rows: list[dict]) -> str:
    """Returns the markdown table of `rows` (`run_cell`'s): per class, the split's score and
    each variant's AUC in % (the mean over the seeds it ran, their count where more than one);
    then per dataset, each variant's mean gap to the split's score over the classes it ran
    (their count in brackets)."""
    seeds: dict[tuple, dict] = {}  # (dataset, class) -> {variant: [AUC per seed]}
    for r in rows:
        dataset, normal_class, variant = r["cell"].split(":")[:3]
        aucs = seeds.setdefault((dataset, int(normal_class)), {"split": [r["auc_split"]]})
        aucs.setdefault(variant, []).append(r["auc"])
    variants = [v for v in VARIANTS if any(v in c for c in seeds.values())]

    def cell(aucs: list[float]) -> str:
        return f"{100 * np.mean(aucs):.1f}" + (f" ({len(aucs)} seeds)" if len(aucs) > 1 else "")

    lines = ["| class | the split's score | " + " | ".join(variants) + " |",
             "| --- |" + " --- |" * (len(variants) + 1)]
    for (dataset, normal_class), aucs in sorted(seeds.items()):
        cells = [cell(aucs[v]) if v in aucs else "" for v in ["split", *variants]]
        lines.append(f"| {dataset} {normal_class} | " + " | ".join(cells) + " |")
    for dataset in sorted({d for d, _ in seeds}):
        gaps = []
        for v in variants:
            ran = [np.mean(a[v]) - a["split"][0] for (d, _), a in seeds.items()
                   if d == dataset and v in a]
            gaps.append(f"{100 * np.mean(ran):+.1f} ({len(ran)})" if ran else "")
        lines.append(f"| {dataset}: minus the split's score | | " + " | ".join(gaps) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.cells_main(run_cell, report)
