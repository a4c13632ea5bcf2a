r"""What each split score can see, label-free, against what it does see on the test labels.

    python -m experiments.studies.sight_study --workdir runs/sight --data_root ../shared/data \
        mnist:2 mnist:5 fashion_mnist:0 cifar10:3 mnist:2:turned

Per cell (`dataset:class`, `:turned` turns every training and test image by a seeded random
quarter turn, so no image is upright): a tenth of the normal training images is held out; the
teacher and the split autoencoder train on the rest, as the default config trains them. On the
held-out tenth: the teacher's transformation accuracy and, for each kind of pseudo-anomaly made
from held-out images, the AUC of each score between held-out images and their pseudo-anomalies.
On the test labels (to evaluate, never to choose): each score's AUC and their rank average's.
One JSON line per cell in `workdir/cells.jsonl`; a finished cell is skipped on a rerun.

    python -m experiments.studies.sight_study \
        --report docs/sight/upright.jsonl,docs/sight/turned.jsonl

prints the markdown table of docs/sight.md from such files: per cell the checks, the scores'
test AUCs, what `sight.weigh` chooses and the AUC of the split's score it makes, and the mean
of each group of cells.
"""

import os
import time
import warnings

import numpy as np

from experiments import cli
from ics_jax import autoencoder as ae_lib
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import evaluate, sight
from ics_jax import split as split_lib
from ics_jax import teacher as teacher_lib


def pseudo_anomalies(images: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Returns `{kind: [N, H, W, C]}` pseudo-anomalies made from `images` alone."""
    rng = np.random.default_rng(seed)
    n, h, w, _ = images.shape
    hh, hw = h // 2, w // 2
    other = images[rng.permutation(n)]
    out = {"blend": 0.5 * (images + other)}
    out["quadrants"] = sight.quadrants_moved(images)
    # A patch of another image, half the side, pasted at a random place (CutPaste).
    pasted = images.copy()
    for i in range(n):
        y0, x0, y1, x1 = rng.integers(0, h - hh + 1, 4)
        pasted[i, y0:y0 + hh, x0:x0 + hw] = other[i, y1:y1 + hh, x1:x1 + hw]
    out["cutpaste"] = pasted
    return out


def run_cell(cell: str, data_root: str, workdir: str) -> dict:
    """Returns the row of one cell; it keeps nothing in `workdir`."""
    del workdir
    dataset, normal_class, *rest = cell.split(":")
    turned = rest == ["turned"]
    data = data_lib.load_one_class(dataset, int(normal_class),
                                   os.path.join(data_root, cli.DATA_FILES[dataset]))
    x_train, x_test = data.x_train, data.x_test
    if turned:
        x_train, x_test = sight.turned(x_train, 1), sight.turned(x_test, 2)
    config = config_lib.default_config()
    config.dataset = dataset
    fit_idx, held_idx = sight.holdout(x_train.shape[0], config.split_seed)
    fit, held = x_train[fit_idx], x_train[held_idx]
    key = split_lib.split_key(config)
    start = time.time()
    teacher, t_vars = teacher_lib.fit_teacher(config, fit, key)
    autoencoder, ae_params = ae_lib.train_autoencoder(
        fit, key, num_steps=config.ae_num_steps, batch_size=config.batch_size,
        learning_rate=config.ae_learning_rate, autoencoder=ae_lib.build_autoencoder(config),
        loss=config.ae_loss)
    seconds = time.time() - start

    def teacher_score(x):
        return teacher_lib.teacher_scores(teacher, t_vars, x)

    def ssim_score(x):  # higher = more anomalous
        return -split_lib.ssim_scores(autoencoder, ae_params, x, config.ssim_max_val)

    row = {"cell": cell, "n_train": int(x_train.shape[0]), "train_seconds": round(seconds, 1),
           "teacher_accuracy": sight.transformation_accuracy(teacher, t_vars, held)}
    ones = np.ones(held.shape[0])
    for name, score in (("teacher", teacher_score), ("ssim", ssim_score)):
        on_held = score(held)
        for kind, pseudo in pseudo_anomalies(held, 0).items():
            row[f"{name}_{kind}"] = evaluate.auc(np.r_[0 * ones, ones],
                                                 np.r_[on_held, score(pseudo)])
    test = {"teacher": teacher_score(x_test), "ssim": ssim_score(x_test)}
    reference = {"teacher": teacher_score(fit), "ssim": ssim_score(fit)}
    for name, s in test.items():
        row[f"auc_{name}"] = evaluate.auc(data.y_test, s)
    row["auc_rank_average"] = evaluate.auc(data.y_test, evaluate.rank_average(
        test["teacher"], test["ssim"], references=[reference["teacher"], reference["ssim"]]))
    return row


GROUPS = {"development classes": ("mnist:2", "mnist:5", "mnist:8", "fashion_mnist:0",
                                    "fashion_mnist:2", "fashion_mnist:8", "cifar10:3",
                                    "cifar10:5", "cifar10:9"),
          "MNIST 0, 1, 8 (alike turned)": ("mnist:0", "mnist:1", "mnist:8")}


def report(rows: list[dict]) -> str:
    """Returns the markdown table of `rows` (`run_cell`'s): a line per cell, then group means."""
    lines = ["| cell | teacher check | SSIM check | weights (teacher, SSIM) | teacher | SSIM | "
             "rank average | the split's score |", "| --- |" + " --- |" * 7]
    for row in rows:
        row["checks"] = {"teacher": sight.teacher_check(row["teacher_accuracy"], 4),
                         "ssim": 2 * row["ssim_quadrants"] - 1}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["weights"] = sight.weigh(row["checks"]).weights
        row["auc_split"] = (row["auc_rank_average"] if min(row["weights"].values()) > 0 else
                            row["auc_teacher"] if row["weights"]["teacher"] else row["auc_ssim"])
        lines.append(f"| {row['cell']} | {row['checks']['teacher']:.2f} | "
                     f"{row['checks']['ssim']:.2f} | {row['weights']['teacher']:.1f}, "
                     f"{row['weights']['ssim']:.1f} | " + " | ".join(
                         f"{100 * row[k]:.1f}" for k in ("auc_teacher", "auc_ssim",
                                                         "auc_rank_average", "auc_split")) + " |")
    by_cell = {row["cell"]: row for row in rows}
    groups = {**GROUPS, "development classes, turned": tuple(
        c + ":turned" for c in GROUPS["development classes"])}
    for name, cells in groups.items():
        for dataset in ("mnist", "fashion_mnist", "cifar10", None):
            group = [by_cell[c] for c in cells if c in by_cell
                     and (dataset is None or c.startswith(dataset + ":"))]
            if not group or (dataset and name.startswith("MNIST")):
                continue
            named = [c for c in cells if dataset is None or c.startswith(dataset + ":")]
            label = f"{name}, {dataset or 'all'} ({len(group)} of {len(named)})"
            lines.append(f"| **{label}** | | | | " + " | ".join(
                f"**{100 * np.mean([r[k] for r in group]):.1f}**"
                for k in ("auc_teacher", "auc_ssim", "auc_rank_average", "auc_split")) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.cells_main(run_cell, report)
