"""Table 1 and Fig. 4 of finished sweep cells, beside the paper's numbers.

Results come as `{cell: results}` where a cell has `dataset`, `normal_class` and `method`
attributes (`experiments.paper.cells.Cell`) and `results` is a `results.json` dict (AUC in [0, 1]).
"""

import dataclasses
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.paper import table as paper_table  # noqa: E402
from ics_jax import baselines, evaluate, outputs  # noqa: E402
from ics_jax import split as split_lib  # noqa: E402

METHOD_NAMES = {"ocsvm": "OCSVM", "iforest": "IF", "imagenet_ocsvm": "ImageNet",
                "ssim": "SSIM", "dsvdd": "DSVDD", "naive_nn": "NaiveNN", "nn_w_ics": "NNwICS",
                "ics": "ICS (ours)"}
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which rows and columns a table has."""

    datasets: list[str]
    classes: list[int]
    methods: list[str]


def _by_key(results: dict) -> dict[tuple[str, int, str], dict]:
    return {(c.dataset, c.normal_class, c.method): r for c, r in results.items()}


def _ours(r: dict) -> tuple[float, float]:
    return 100 * r["auc_mean"], 100 * r["auc_std"]


def _column_means(found: dict, layout: Layout, dataset: str, method: str):
    """Returns (our mean, the paper's mean over the same classes, n) or None if none finished."""
    ref = paper_table.table1()
    done = [c for c in layout.classes if (dataset, c, method) in found]
    if not done:
        return None
    ours = np.mean([_ours(found[(dataset, c, method)])[0] for c in done])
    theirs = np.mean([ref[(dataset, c, method)][0] for c in done])
    return float(ours), float(theirs), len(done)


# Variants of ICS that its cells report beside their per-seed AUC (results.json keys): the
# seeds' mean score as one detector; ICS + SSIM, its rank average with the split's SSIM score,
# ranks among the training images (`ICS(combine_split=True)`); and, in cells run before that
# variant existed, the same average with ranks among the test images.
VARIANTS = {"ensemble_auc": "ICS, seed ensemble", "ics_ssim_auc": "ICS + SSIM",
            "ssim_rank_average_auc": "ICS + SSIM, test-set ranks"}


def _variant_columns(found: dict, layout: Layout) -> list[str]:
    """Returns the `VARIANTS` keys that some finished `ics` cell of the layout holds."""
    return [k for k in VARIANTS if "ics" in layout.methods and any(
        k in r for (_, _, m), r in found.items() if m == "ics")]


def table_markdown(results: dict, layout: Layout, missing: set = frozenset(),
                   rho: float = 0.1) -> str:
    """Returns one markdown table per dataset: a row per normal class, a column per method,
    each entry `ours (std) / paper (ours - paper)` in AUC %, then a column per ICS variant
    (`VARIANTS`, ours only), and a row of per-dataset means over the finished classes; a single
    run shows no spread. Cells in `missing` say 'no weights'; unfinished cells are empty."""
    found, ref = _by_key(results), paper_table.table1()
    missing_keys = {(c.dataset, c.normal_class, c.method) for c in missing}
    variants = _variant_columns(found, layout)
    names = [METHOD_NAMES[m] for m in layout.methods] + [VARIANTS[k] for k in variants]
    lines = [f"AUC in %: ours, mean (std) over seeds / the paper's Table 1 (difference). "
             f"rho = {rho:g} for the methods that split the normal class.", ""]
    for dataset in layout.datasets:
        lines += [f"### {DATASET_NAMES[dataset]}", "", "| normal class | " + " | ".join(names)
                  + " |", "| --- |" + " --- |" * len(names)]
        for c in layout.classes:
            entries = []
            for m in layout.methods:
                key, (p, _) = (dataset, c, m), ref[(dataset, c, m)]
                if key in found:
                    mean, std = _ours(found[key])
                    spread = f" ({std:.1f})" if len(found[key]["auc"]) > 1 else ""  # one seed
                    entries.append(f"{mean:.1f}{spread} / {p:.1f} ({mean - p:+.1f})")
                else:
                    entries.append(f"no weights / {p:.1f}" if key in missing_keys else "")
            ics = found.get((dataset, c, "ics"), {})
            entries += [f"{100 * ics[k]:.1f}" if k in ics else "" for k in variants]
            lines.append(f"| {paper_table.class_name(dataset, c)} | " + " | ".join(entries) + " |")
        means = []
        for m in layout.methods:
            col = _column_means(found, layout, dataset, m)
            means.append("" if col is None else
                         f"**{col[0]:.1f}** / {col[1]:.1f} ({col[0] - col[1]:+.1f}), n={col[2]}")
        for k in variants:
            got = [found[(dataset, c, "ics")][k] for c in layout.classes
                   if k in found.get((dataset, c, "ics"), {})]
            means.append(f"**{100 * np.mean(got):.1f}**, n={len(got)}" if got else "")
        lines += ["| **mean** | " + " | ".join(means) + " |", ""]
    lines += _budget_lines(results)
    return "\n".join(lines) + "\n"


def _budget_lines(results: dict) -> list[str]:
    """One line per method: seeds, training budget and wall time per cell of its finished
    cells (a cell's `timing.total`; a split the sweep trained once for the class is not in it)."""
    out = []
    for m in METHOD_NAMES:
        rs = [r for c, r in results.items() if c.method == m]
        if rs:
            seeds = sorted({len(r["seeds"]) for r in rs})
            iters = sorted({r["num_iterations"] for r in rs})
            budget = f", {'/'.join(map(str, iters))} iterations" if m in (
                "ics", "nn_w_ics", "naive_nn") else ""
            times = [r["timing"]["total"] for r in rs if "timing" in r]
            wall = (f", {np.min(times):.0f}-{np.max(times):.0f} s per cell (median "
                    f"{np.median(times):.0f} s)" if times else "")
            out.append(f"- {METHOD_NAMES[m]}: {len(rs)} cells, "
                       f"{'/'.join(map(str, seeds))} seed(s){budget}{wall}")
    return out


def table_csv(results: dict, layout: Layout) -> str:
    """Returns the same table as CSV: a row per dataset and class (and a `mean` row per
    dataset), for each method the columns `<method>_mean`, `_std`, `_paper`, `_difference`."""
    found, ref = _by_key(results), paper_table.table1()
    header = ["dataset", "normal_class", "class_name"] + [
        f"{m}_{k}" for m in layout.methods for k in ("mean", "std", "paper", "difference")]
    rows = [",".join(header)]
    for dataset in layout.datasets:
        for c in layout.classes:
            row = [dataset, str(c), paper_table.class_name(dataset, c)]
            for m in layout.methods:
                p = ref[(dataset, c, m)][0]
                if (dataset, c, m) in found:
                    mean, std = _ours(found[(dataset, c, m)])
                    row += [f"{mean:.2f}", f"{std:.2f}", f"{p:.1f}", f"{mean - p:+.2f}"]
                else:
                    row += ["", "", f"{p:.1f}", ""]
            rows.append(",".join(row))
        row = [dataset, "mean", "mean of finished classes"]
        for m in layout.methods:
            col = _column_means(found, layout, dataset, m)
            row += (["", "", "", ""] if col is None else
                    [f"{col[0]:.2f}", "", f"{col[1]:.2f}", f"{col[0] - col[1]:+.2f}"])
        rows.append(",".join(row))
    return "\n".join(rows) + "\n"


def rho_curve(results: dict) -> dict[str, tuple[list[float], list[float], int]]:
    """Returns `{dataset: (rhos, mean AUC % over classes and seeds, number of classes)}` of the
    finished `ics` cells with a `rho`, over the classes finished at every `rho` of the dataset,
    so that a partly run sweep compares the same classes at each point."""
    aucs: dict[str, dict[float, dict[int, list[float]]]] = {}
    for cell, r in results.items():
        if cell.method == "ics" and cell.rho is not None:
            aucs.setdefault(cell.dataset, {}).setdefault(cell.rho, {})[cell.normal_class] = [
                100 * a for a in r["auc"]]
    curves = {}
    for dataset, by_rho in aucs.items():
        rhos = sorted(by_rho)
        classes = set.intersection(*(set(by_rho[r]) for r in rhos))
        if classes:
            curves[dataset] = (rhos, [float(np.mean([a for c in classes for a in by_rho[r][c]]))
                                      for r in rhos], len(classes))
    return curves


def plot_rho_curve(path: str, results: dict) -> None:
    """Saves Fig. 4: mean ICS AUC against `rho`, one line per dataset."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    curves = rho_curve(results)
    for dataset, (rhos, aucs, num_classes) in curves.items():
        classes = "1 class" if num_classes == 1 else f"{num_classes} classes"
        ax.plot(rhos, aucs, marker="o", label=f"{DATASET_NAMES[dataset]} ({classes})")
    ax.set_xlabel("rho (atypical fraction)")
    ax.set_ylabel("AUC % (mean over classes, seeds)")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    outputs.save_figure(path, fig)


def curve_points(cell_dir: str, labels: np.ndarray | None = None) -> dict:
    """Returns a cell's test curve `{iterations, auc}` (mean over seeds, AUC %) from its
    `test_curve.json`; with the test `labels`, also `rank_average`: the AUC of the rank average
    of the seeds' mean score and the split's SSIM score at each report."""
    with open(os.path.join(cell_dir, "test_curve.json")) as f:
        points = json.load(f)
    out = {"iterations": [p["iteration"] for p in points],
           "auc": [100 * float(np.mean(p["auc"])) for p in points]}
    if labels is not None:
        ssim = baselines.ssim_anomaly_scores(split_lib.load(os.path.join(cell_dir, "split.npz")))
        with np.load(os.path.join(cell_dir, "test_curve.json.npz")) as f:
            out["rank_average"] = [100 * evaluate.auc(labels, evaluate.rank_average(
                f[str(i)].mean(axis=0), ssim)) for i in out["iterations"]]
    return out


def authors_selection(cell_dir: str) -> dict[str, float]:
    """Returns, from a cell's `test_curve.json`, what the authors' released protocol would
    report (`evaluate.authors_protocol_split`): `selected`, the AUC % on the other 70% of the
    test set of each seed's report with the best AUC on the 30%, and `final`, the last report's
    AUC % on the same 70%, both averaged over the seeds. A diagnostic of test-label selection."""
    with open(os.path.join(cell_dir, "test_curve.json")) as f:
        points = json.load(f)
    seeds = range(len(points[-1]["auc"]))
    selected = [max(points, key=lambda p, i=i: p["authors_valid"][i])["authors_rest"][i]
                for i in seeds]
    return {"selected": 100 * float(np.mean(selected)),
            "final": 100 * float(np.mean(points[-1]["authors_rest"]))}


def merge_curves(summary: dict, earlier: dict) -> dict:
    """Returns `summary` (as `experiments.paper.curves` writes it: `{dataset: {"curves", "ssim",
    "authors_protocol"}}`, each keyed by class name) with the classes and datasets of `earlier`
    that it lacks added, each dataset's classes in class order; `summary` wins where both hold
    a class."""
    merged = {}
    for dataset in {**earlier, **summary}:
        order = [paper_table.class_name(dataset, i) for i in range(10)]
        old, new = earlier.get(dataset, {}), summary.get(dataset, {})
        merged[dataset] = {}
        for key in ("curves", "ssim", "authors_protocol"):
            both = {**old.get(key, {}), **new.get(key, {})}
            merged[dataset][key] = {name: both[name] for name in order if name in both}
    return merged


def plot_curves(path: str, title: str, panels: dict[str, dict[str, dict]],
                ssim: dict[str, float]) -> None:
    """Saves one panel per class (`panels[class][label] = curve_points(...)`): test AUC against
    iterations, with the class's SSIM score (`ssim[class]`, AUC %) as a dashed line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.2), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items(), strict=True):
        for label, c in curves.items():
            ax.plot(c["iterations"], c["auc"], marker=".", label=label)
            if "rank_average" in c:
                ax.plot(c["iterations"], c["rank_average"], ls=":", label=f"{label} + SSIM ranks")
        if name in ssim:
            ax.axhline(ssim[name], ls="--", color="gray", label="SSIM (the split)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test AUC % (diagnostic)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    outputs.save_figure(path, fig)
