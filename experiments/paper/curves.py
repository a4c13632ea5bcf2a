r"""Test AUC against iterations for the cells of sweeps run with `--config.test_curve=True`.

    python -m experiments.paper.curves --workdir runs/curves --data_root=../shared/data \
        --out_dir=docs [--classes=mnist:2,fashion_mnist:0]

For every dataset in the workdir (narrowed to `--classes`), one figure `curves_<dataset>.png`
(a panel per class: ICS, NNwICS and the split's SSIM score, and the rank average of each with
the SSIM score) and the numbers in `curves.json` beside it. Classes that an earlier
`curves.json` in `--out_dir` holds and the workdir does not stay in it and in the figures, so
curves run in several workdirs (or sessions) draw together. Printed, per dataset, what the
authors' released protocol (the report with the best AUC on 30% of the test set) would report
for ICS on the other 70%, against the last report. Test labels describe training here; nothing
is chosen by them.
"""

import glob
import json
import os

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep workdir with test curves.")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "The datasets' raw files, as for the sweep.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the figures and curves.json go.")
_CLASSES = flags.DEFINE_list("classes", None, "Only these DATASET:CLASS cells (default: all).")
LABELS = {"ics": "ICS", "nn_w_ics": "NNwICS"}


def _wanted(dataset: str, normal_class: int) -> bool:
    return _CLASSES.value is None or f"{dataset}:{normal_class}" in _CLASSES.value


def _authors_lines(dataset: str, picks: dict[str, dict]) -> list[str]:
    """A markdown table of `report.authors_selection` per class, and its mean."""
    import numpy as np

    lines = [f"{dataset}: ICS AUC % on 70% of the test set, last report / the report picked on "
             "the other 30% (the authors' protocol)", "",
             "| class | last report | picked on test labels | difference |",
             "| --- | --- | --- | --- |"]
    for name, p in picks.items():
        lines.append(f"| {name} | {p['final']:.1f} | {p['selected']:.1f} | "
                     f"{p['selected'] - p['final']:+.1f} |")
    final, selected = (np.mean([p[k] for p in picks.values()]) for k in ("final", "selected"))
    return lines + [f"| mean (n={len(picks)}) | {final:.1f} | {selected:.1f} | "
                    f"{selected - final:+.1f} |", ""]


def main(argv: list[str]) -> None:
    del argv
    from experiments.paper import report
    from experiments.paper import table as paper_table
    from ics_jax import baselines, data, evaluate, outputs
    from ics_jax import split as split_lib

    workdir, out_dir = _WORKDIR.value, _OUT_DIR.value or _WORKDIR.value
    if workdir is None:
        raise cli.UsageError("give --workdir DIR")
    found = {}
    for path in sorted(glob.glob(os.path.join(workdir, "*", "*", "*", "test_curve.json"))):
        cell_dir = os.path.dirname(path)
        dataset, normal_class = cell_dir.split(os.sep)[-3], int(cell_dir.split(os.sep)[-2])
        if _wanted(dataset, normal_class):
            found.setdefault(dataset, {}).setdefault(normal_class, []).append(cell_dir)
    if not found:
        raise cli.UsageError(f"no cell with a test_curve.json in {workdir} (run the sweep with "
                             "--config.test_curve=True)")
    summary = {}
    for dataset, classes in found.items():
        panels, ssim, picks = {}, {}, {}
        for normal_class, cell_dirs in sorted(classes.items()):
            labels = None
            if _DATA_ROOT.value:
                labels = data.load_one_class(dataset, normal_class, data_dir=os.path.join(
                    _DATA_ROOT.value, cli.DATA_FILES[dataset])).y_test
            name = paper_table.class_name(dataset, normal_class)
            panels[name] = {}
            for cell_dir in cell_dirs:
                method = os.path.basename(cell_dir).split("_rho")[0]
                panels[name][LABELS.get(method, method)] = report.curve_points(cell_dir, labels)
                if method == "ics":
                    picks[name] = report.authors_selection(cell_dir)
            if labels is not None:  # the class's cells share one split
                ssim[name] = 100 * evaluate.auc(labels, baselines.ssim_anomaly_scores(
                    split_lib.load(os.path.join(cell_dirs[0], "split.npz"))))
        summary[dataset] = {"curves": panels, "ssim": ssim, "authors_protocol": picks}
    summary_path = os.path.join(out_dir, "curves.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = report.merge_curves(summary, json.load(f))
    for dataset in found:
        name, entry = report.DATASET_NAMES[dataset], summary[dataset]
        report.plot_curves(os.path.join(out_dir, f"curves_{dataset}.png"),
                           f"{name}: test AUC over training", entry["curves"], entry["ssim"])
        if entry["authors_protocol"]:
            print("\n".join(_authors_lines(name, entry["authors_protocol"])), flush=True)
    outputs.write_json(summary_path, summary)
    print(f"{', '.join(found)} -> {out_dir}", flush=True)


if __name__ == "__main__":
    cli.run_app(main)
