r"""The ablation table: each variant's sweep beside the default's, at the same iteration.

    python -m experiments.paper.ablation --baseline runs/curves --variants runs/ablation \
        --out docs/ablation.json

Every folder of `--variants` is the sweep workdir of one variant (run with
`--config.test_curve=True`; `runs/ablation/run.sh` makes them). A cell is compared with the
cell of the same dataset, class and method in the first `--baseline` workdir that has it
(`--baseline docs/table1_ae32,docs/table1` for cells spread over two): a trained method with
that cell's test curve at the variant's iteration count (a shorter run is a prefix of a longer
one), SSIM with its SSIM AUC. Test labels describe the variants here; nothing is chosen by them.
Prints a markdown table and writes the numbers to `--out`.
"""

import glob
import json
import os

import numpy as np
from absl import flags

from experiments import cli

_BASELINE = flags.DEFINE_list("baseline", None, "The default config's sweep workdirs; a cell is "
                               "compared with the first of them that has it.")
_VARIANTS = flags.DEFINE_string("variants", None, "A folder of one sweep workdir per variant.")
_OUT = flags.DEFINE_string("out", None, "Where the numbers go (JSON).")
PAIR_LOSSES = ("loss/closeness", "loss/dispersion", "loss/pairs")


def _json(path: str):
    with open(path) as f:
        return json.load(f)


def _curve(cell_dir: str, iteration: int) -> tuple[float | None, float | None]:
    """Returns a cell's test AUC % at the report of `iteration` and averaged over the reports
    after `iteration / 2` up to it (less noisy than one report), or Nones."""
    path = os.path.join(cell_dir, "test_curve.json")
    points = {p["iteration"]: 100 * float(np.mean(p["auc"])) for p in _json(path)}
    if iteration not in points:
        return None, None
    late = [auc for it, auc in points.items() if iteration / 2 < it <= iteration]
    return points[iteration], float(np.mean(late))


def _last_pair_losses(cell_dir: str) -> dict[str, float]:
    """Returns the pair losses of a cell's last report, from its TensorBoard scalars."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorBoard may import TensorFlow
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(os.path.join(cell_dir, "tensorboard"))
    events.Reload()
    return {tag.split("/")[1]: events.Scalars(tag)[-1].value
            for tag in PAIR_LOSSES if tag in events.Tags()["scalars"]}


def _first_with(baselines: list[str], *cell: str) -> str:
    """Returns the cell's folder in the first baseline workdir that finished it."""
    for baseline in baselines:
        if os.path.exists(os.path.join(baseline, *cell, "results.json")):
            return os.path.join(baseline, *cell)
    raise cli.UsageError(f"no baseline has the cell {'/'.join(cell)}; the baselines: "
                         f"{', '.join(baselines)}")


def compare(baselines: list[str], variant: str) -> list[dict]:
    """Returns one row per finished cell of the sweep workdir `variant`: its AUC %, the
    baselines' (`_first_with`) at the same iteration and, for trained methods, both runs' late
    average (`_curve`), its last report's AUC and pair losses, and the held-out stop's
    iterations."""
    rows = []
    for path in sorted(glob.glob(os.path.join(variant, "*", "*", "*", "results.json"))):
        cell_dir = os.path.dirname(path)
        dataset, normal_class, cell = cell_dir.split(os.sep)[-3:]
        results = _json(path)
        same = _first_with(baselines, dataset, normal_class, cell)
        row = {"dataset": dataset, "normal_class": int(normal_class),
               "method": results["method"], "auc": 100 * results["auc_mean"]}
        if results["method"] == "ssim":
            row["baseline_auc"] = 100 * _json(os.path.join(same, "results.json"))["auc_mean"]
        else:
            n = results["num_iterations"]
            (row["baseline_auc"], row["baseline_late_auc"]) = _curve(same, n)
            (row["last_report_auc"], row["late_auc"]) = _curve(cell_dir, n)
            row.update(iterations=n, **_last_pair_losses(cell_dir))
            if "held_out" in results:
                row["stopped_at"] = results["held_out"]["stopped_at"]
        rows.append(row)
    return rows


def markdown(table: dict[str, list[dict]]) -> str:
    """Returns a markdown table: a row per variant and method, a column per class (variant /
    baseline AUC %), the mean difference, and for trained methods the mean difference of the
    late averages."""
    from experiments.paper import report
    from experiments.paper import table as paper_table

    classes = sorted({(r["dataset"], r["normal_class"]) for rows in table.values() for r in rows})
    names = [f"{report.DATASET_NAMES[d]} {paper_table.class_name(d, c)}" for d, c in classes]
    lines = ["| variant | " + " | ".join(names) + " | mean difference | late average |",
             "| --- |" + " --- |" * (len(names) + 2)]
    for variant, method, rows in ((v, m, [r for r in found if r["method"] == m])
                                  for v, found in table.items()
                                  for m in sorted({r["method"] for r in found})):
        by_class = {(r["dataset"], r["normal_class"]): r for r in rows}
        cells, diffs, late = [], [], []
        for key in classes:
            r = by_class.get(key)
            if r is None or r["baseline_auc"] is None:
                cells.append("")
                continue
            diffs.append(r["auc"] - r["baseline_auc"])
            cells.append(f"{r['auc']:.1f} / {r['baseline_auc']:.1f}")
            if r.get("late_auc") is not None:
                late.append(r["late_auc"] - r["baseline_late_auc"])
        mean = f"{np.mean(diffs):+.1f} ({len(diffs)})" if diffs else ""
        late_mean = f"{np.mean(late):+.1f}" if late else ""
        lines.append(f"| {variant} ({method}) | " + " | ".join(cells)
                     + f" | {mean} | {late_mean} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    from ics_jax import outputs

    if not (_BASELINE.value and _VARIANTS.value):
        raise cli.UsageError("give --baseline DIR[,DIR...] (the default's sweeps) and "
                             "--variants DIR")
    table = {}
    for variant in sorted(os.listdir(_VARIANTS.value)):
        rows = compare(_BASELINE.value, os.path.join(_VARIANTS.value, variant))
        if rows:
            table[variant] = rows
    print(markdown(table), end="", flush=True)
    if _OUT.value:
        outputs.write_json(_OUT.value, table)


if __name__ == "__main__":
    cli.run_app(main)
