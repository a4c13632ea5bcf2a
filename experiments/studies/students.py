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

import dataclasses
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
    # `both` as a noisy student, from a random start.
    "both_noisy": {"targets": "both", "augment": "shift", "dropout": 0.5},
    # `both_noisy` after `rounds` cross-fitted rounds of re-cutting the split (`crossfit_round`).
    "both_noisy_round": {"targets": "both", "augment": "shift", "dropout": 0.5, "rounds": 1},
    "both_round": {"targets": "both", "rounds": 1},  # the round without the noise
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


def crossfit_round(config, data, split: split_lib.Split) -> tuple[split_lib.Split, dict]:
    """Returns `(split, row)`: `split` re-cut by the mean of two ranks of each normal image, by
    `split`'s score and by the held-out student's (the classifier trained on the other half of
    the class, cut by `split`'s score there, ranked within its half); `row`: the test AUC of the
    two students' mean logit and of the mean of its rank and the split's among the test images
    (diagnostics), how many atypical images are new, seconds."""
    start = time.time()
    n = data.x_train.shape[0]
    halves = np.array_split(np.random.default_rng(config.seed).permutation(n), 2)
    trainer = trainer_lib.make_trainer(config)
    held_out_rank, test_logits = np.empty(n), []
    for fit, held in (halves, halves[::-1]):
        part = split_lib.split_by_score(split.scores[fit], config.rho)
        states = trainer_lib.train_states(
            trainer, config, trainer_lib.training_data(trainer, data.x_train[fit], part),
            data.x_train.shape[1:])
        held_out_rank[held] = evaluate.rank_average(
            trainer_lib.test_scores(trainer, states, data.x_train[held])[0])
        test_logits.append(trainer_lib.test_scores(trainer, states, data.x_test)[0])
    students = np.mean(test_logits, axis=0)
    recut = split_lib.split_by_score(-evaluate.rank_average(-split.scores, held_out_rank),
                                     config.rho)
    recut = dataclasses.replace(recut, sight=split.sight, test_scores=-evaluate.rank_average(
        -split.test_scores, students))
    return recut, {"auc_students": evaluate.auc(data.y_test, students),
                   "auc_recut_score": evaluate.auc(data.y_test, -recut.test_scores),
                   "moved": int(np.setdiff1d(recut.atypical, split.atypical).size),
                   "seconds": round(time.time() - start, 1)}


def run_cell(cell: str, data_root: str, workdir: str) -> dict:
    dataset, normal_class, variant, *seed = cell.split(":")
    config = common.make(dataset, "quick")
    config.normal_class = int(normal_class)
    config.seed = int(seed[0]) if seed else 0
    config.log_every = 50
    changes = dict(VARIANTS[variant])
    rounds = changes.pop("rounds", 0)
    config.update(changes)
    data = data_lib.load_one_class(dataset, config.normal_class,
                                   os.path.join(data_root, cli.DATA_FILES[dataset]))
    start = time.time()
    split, teacher = class_split(config, data, os.path.join(workdir, dataset, normal_class))
    split_seconds = time.time() - start
    auc_split = evaluate.auc(data.y_test, -split.test_scores)
    round_rows = []
    for _ in range(rounds):
        split, row = crossfit_round(config, data, split)
        round_rows.append(row)
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
            "auc_split": auc_split, "weights": split.sight["weights"], "curve": curve,
            **({"rounds": round_rows} if rounds else {}), "last_losses": losses[-1],
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
    return "\n".join(lines + _rounds_table([r for r in rows if "rounds" in r]))


def _rounds_table(rows: list[dict]) -> list[str]:
    """Returns the lines of a table of the cross-fitted rounds' diagnostics in `rows` (AUC in %):
    per round, the held-out students' mean logit, the re-cut score, the atypical images that
    are new; then the final classifier's AUC."""
    if not rows:
        return []
    lines = ["", "| cell | the split's score | per round: the students, the re-cut score, "
             "new atypical | the final classifier |", "| --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["cell"]):
        rounds = "; ".join(f"{100 * d['auc_students']:.1f}, {100 * d['auc_recut_score']:.1f}, "
                           f"{d['moved']}" for d in r["rounds"])
        lines.append(f"| {r['cell']} | {100 * r['auc_split']:.1f} | {rounds} | "
                     f"{100 * r['auc']:.1f} |")
    return lines


if __name__ == "__main__":
    cli.cells_main(run_cell, report)
