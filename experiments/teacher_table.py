"""The transformation teacher beside the split and ICS, per class and per dataset, as markdown.

    python -m experiments.teacher_table docs/teacher docs/table1/table1.csv

Reads each finished `WORKDIR/<dataset>/<class>/teacher/results.json` (experiments/
class_sweep.sh) and the Table 1 CSV of a sweep (`ssim_mean`, `ics_mean`, `ics_paper`); prints
one row per class with a teacher result and one mean row per dataset over those classes. AUC %.
"""

import csv
import json
import pathlib
import sys

from experiments import paper

DATASETS = ("mnist", "fashion_mnist", "cifar10")
DEVELOPMENT = {"mnist": (2, 5, 8), "fashion_mnist": (0, 2, 8), "cifar10": (3, 5, 9)}
COLUMNS = ("teacher", "ssim_mean", "ics_mean", "ics_paper")


def rows(workdir: pathlib.Path, table_csv: pathlib.Path) -> list[dict]:
    """Returns one dict per class with a finished teacher cell: dataset, class, the `COLUMNS`."""
    with open(table_csv) as f:
        table = {(r["dataset"], r["normal_class"]): r for r in csv.DictReader(f)}
    found = []
    for dataset in DATASETS:
        for normal_class in range(10):
            path = workdir / dataset / str(normal_class) / "teacher" / "results.json"
            if not path.exists():
                continue
            with open(path) as f:
                results = json.load(f)
            row = table.get((dataset, str(normal_class)), {})
            found.append({"dataset": dataset, "class": normal_class,
                          "teacher": 100 * results["auc_mean"],
                          **{k: float(row[k]) if row.get(k) else None for k in COLUMNS[1:]}})
    return found


def markdown(found: list[dict]) -> str:
    """Returns the per-class rows, then a mean row per dataset and class group."""
    lines = ["| class | teacher | SSIM (the split) | ICS | ICS, the paper |",
             "| --- | --- | --- | --- | --- |"]
    for r in found:
        name = f"{r['dataset']} {r['class']} ({paper.class_name(r['dataset'], r['class'])})"
        lines.append(f"| {name} | " + " | ".join(_cell(r[k]) for k in COLUMNS) + " |")
    for dataset in DATASETS:
        mine = [r for r in found if r["dataset"] == dataset]
        for label, group in (("development", [r for r in mine
                                              if r["class"] in DEVELOPMENT[dataset]]),
                             (f"all {len(mine)}", mine)):
            if group:
                means = [_mean([r[k] for r in group]) for k in COLUMNS]
                lines.append(f"| **{dataset}, {label}** | "
                             + " | ".join(f"**{_cell(m)}**" for m in means) + " |")
    return "\n".join(lines)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(value) -> str:
    return "" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    print(markdown(rows(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))))
