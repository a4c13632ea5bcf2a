r"""The teacher's table: per class, the dataset's former default detector, the transformation
teacher and ICS on its split beside the SSIM split, NNwICS and ICS of a Table 1 sweep and the
paper's ICS, as markdown. AUC %.

    python -m experiments.studies.teacher_table --workdir docs/teacher_table \
        --table1 docs/table1/table1.csv

Reads the finished cells `WORKDIR/<dataset>/<class>/{teacher,ics_teacher,ics_auto}/results.json`
(named sweeps, `python -m experiments.paper.sweep --config classes.py --config.name=teacher
...`: docs/teacher.md) and the Table 1 CSV (`ssim_mean`, `nn_w_ics_mean`, `ics_mean`,
`ics_paper`); prints a row per class of either, then mean rows per dataset over the
development classes and over all of its classes (a column's mean over the classes it has,
their count beside it where that is fewer), and the wall time per cell of each column.
"""

import csv
import json
import pathlib

import numpy as np

from experiments import cli
from experiments.paper import table as paper_table

DATASETS = ("mnist", "fashion_mnist", "cifar10")
DEVELOPMENT = {"mnist": (2, 5, 8), "fashion_mnist": (0, 2, 8), "cifar10": (3, 5, 9)}
# (column, where it comes from: a Table 1 CSV column, or (cell, results.json key)).
COLUMNS = (("SSIM (the split)", "ssim_mean"), ("teacher", ("teacher", "auc_mean")),
           ("teacher, seed ensemble", ("teacher", "ensemble_auc")),
           ("NNwICS", "nn_w_ics_mean"), ("ICS, SSIM split", "ics_mean"),
           ("ICS, teacher split", ("ics_teacher", "auc_mean")),
           ("ICS + teacher", ("ics_teacher", "ics_ssim_auc")),
           ("split score, auto", ("ics_auto", "ssim_auc")),
           ("ICS, auto split", ("ics_auto", "auc_mean")),
           ("ICS, the paper", "ics_paper"))
# The former default detector of each dataset, chosen with its development classes' labels
# before the self-checked split: SSIM on MNIST, the teacher elsewhere.
FORMER_DEFAULT = {"mnist": "SSIM (the split)", "fashion_mnist": "teacher",
                  "cifar10": "teacher"}
NAMES = ("former default", *(name for name, _ in COLUMNS))


def rows(workdir: pathlib.Path, table_csv: pathlib.Path) -> tuple[list[dict], dict]:
    """Returns (one dict per class with a finished cell or a Table 1 row: dataset, class, a
    value per column of `NAMES`, None where missing; `{cell: [wall seconds per finished
    cell]}`)."""
    with open(table_csv) as f:
        table = {(r["dataset"], r["normal_class"]): r for r in csv.DictReader(f)}
    found, seconds = [], {}
    for dataset in DATASETS:
        for normal_class in range(10):
            cells = {}
            for cell in {c[0] for _, c in COLUMNS if isinstance(c, tuple)}:
                path = workdir / dataset / str(normal_class) / cell / "results.json"
                if path.exists():
                    with open(path) as f:
                        cells[cell] = json.load(f)
                    seconds.setdefault(cell, []).append(cells[cell]["timing"]["total"])
            if not cells and (dataset, str(normal_class)) not in table:
                continue
            row = {"dataset": dataset, "class": normal_class}
            for name, source in COLUMNS:
                if isinstance(source, tuple):
                    value = cells.get(source[0], {}).get(source[1])
                    row[name] = None if value is None else 100 * value
                else:
                    value = table.get((dataset, str(normal_class)), {}).get(source)
                    row[name] = float(value) if value else None
            row["former default"] = row[FORMER_DEFAULT[dataset]]
            found.append(row)
    return found, seconds


def markdown(found: list[dict], seconds: dict) -> str:
    """Returns the per-class rows, a mean row per dataset and class group, the times."""
    lines = ["| class | " + " | ".join(NAMES) + " |", "| --- |" + " --- |" * len(NAMES)]
    for r in found:
        label = f"{r['dataset']} {r['class']} ({paper_table.class_name(r['dataset'], r['class'])})"
        lines.append(f"| {label} | " + " | ".join(_cell(r[k]) for k in NAMES) + " |")
    for dataset in DATASETS:
        mine = [r for r in found if r["dataset"] == dataset]
        development = [r for r in mine if r["class"] in DEVELOPMENT[dataset]]
        for label, group in ((f"development, {len(development)} of 3", development),
                             (f"{len(mine)} of 10", mine)):
            if group:
                means = [_mean([r[k] for r in group]) for k in NAMES]
                lines.append(f"| **{dataset}, {label}** | " + " | ".join(
                    f"**{m}**" if m else "" for m in means) + " |")
    lines.append("")
    for cell, s in sorted(seconds.items()):
        lines.append(f"- `{cell}`: {len(s)} cells, {min(s):.0f}-{max(s):.0f} s a cell "
                     f"(median {np.median(s):.0f} s)")
    return "\n".join(lines)


def _mean(values) -> str:
    """Returns the mean of the values present, with their count where some are missing (`74.0
    (6 of 10)`), or '' where none is."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    mean = _cell(sum(present) / len(present))
    return mean if len(present) == len(values) else f"{mean} ({len(present)} of {len(values)})"


def _cell(value) -> str:
    return "" if value is None else f"{value:.1f}"


if __name__ == "__main__":  # the flags only here: tests import this module beside others
    from absl import flags

    _WORKDIR = flags.DEFINE_string("workdir", None, "The named sweeps' workdir.")
    _TABLE1 = flags.DEFINE_string("table1", None, "A Table 1 sweep's table1.csv.")

    def main(argv: list[str]) -> None:
        del argv
        if _WORKDIR.value is None or _TABLE1.value is None:
            raise cli.UsageError("give --workdir DIR and --table1 TABLE1.csv")
        print(markdown(*rows(pathlib.Path(_WORKDIR.value), pathlib.Path(_TABLE1.value))))

    cli.run_app(main)
