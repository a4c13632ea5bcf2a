r"""ICS on every normal class of one or more datasets, beside the paper's ICS column.

    python -m experiments.table --config mnist.py --workdir runs/table \
        --datasets=mnist,fashion_mnist --data_root=../shared/data \
        --config.num_iterations=100 --config.num_seeds=1

Each class runs in `workdir/<dataset>/<class>/`; a class whose `results.json` exists is not run
again, so a stopped table resumes. Writes `workdir/ics_table.md` after every class.
"""

import json
import os

from absl import flags
from ml_collections import config_flags

from experiments import cli

# Local raw files of each dataset under --data_root, laid out as ../shared/data.
LOCAL_FILES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist",
               "cifar10": "cifar10_jpeg.tar.gz"}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config file.", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the table and its runs.")
_DATASETS = flags.DEFINE_list("datasets", ["mnist"], "Datasets to run.")
_CLASSES = flags.DEFINE_list("classes", [str(i) for i in range(10)], "Normal classes to run.")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "Folder with each dataset's raw files.")


def render(workdir: str, datasets: list[str], classes: list[int]) -> str:
    """Returns a markdown table of finished runs: our AUC % beside the paper's ICS column."""
    from ics_jax import paper
    table = paper.table1()
    lines = ["| dataset | class | ours: AUC % mean (std) | paper ICS | difference | seeds | "
             "iterations | train s | authors' selection on test labels | SSIM baseline: ours "
             "(paper) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset in datasets:
        ours_all, paper_all = [], []
        for c in classes:
            path = os.path.join(workdir, dataset, str(c), "results.json")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                r = json.load(f)
            mean, std = 100 * r["auc_mean"], 100 * r["auc_std"]
            ref = table[(dataset, c, "ics")][0]
            ours_all.append(mean)
            paper_all.append(ref)
            lines.append(f"| {dataset} | {paper.class_name(dataset, c)} | {mean:.1f} ({std:.1f}) "
                         f"| {ref:.1f} | {mean - ref:+.1f} | {len(r['seeds'])} | "
                         f"{r['num_iterations']} | {r['timing']['train']:.0f} | "
                         f"{_authors_cell(r)} | {_ssim_cell(r, table[(dataset, c, 'ssim')][0])} |")
        if ours_all:
            m, p = sum(ours_all) / len(ours_all), sum(paper_all) / len(paper_all)
            lines.append(f"| {dataset} | **mean of {len(ours_all)}** | **{m:.1f}** | **{p:.1f}** "
                         f"| {m - p:+.1f} | | | | | |")
    return "\n".join(lines) + "\n"


def _authors_cell(results: dict) -> str:
    """'selected (final)': AUC % on the authors' 70% part at their selected checkpoint, and of
    our final parameters on the same part; empty without `authors_protocol`."""
    if "authors_protocol" not in results:
        return ""
    a = results["authors_protocol"]
    selected = 100 * sum(a["auc_selected_on_test"]) / len(a["auc_selected_on_test"])
    final = 100 * sum(a["auc_final_same_70pct"]) / len(a["auc_final_same_70pct"])
    return f"{selected:.1f} ({final:.1f})"


def _ssim_cell(results: dict, paper_ssim: float) -> str:
    ours = results.get("ssim_auc")
    return "" if ours is None else f"{100 * ours:.1f} ({paper_ssim:.1f})"


def main(argv):
    del argv
    from ics_jax import outputs, pipeline
    base, workdir = _CONFIG.value, _WORKDIR.value
    classes = [int(c) for c in _CLASSES.value]
    for dataset in _DATASETS.value:
        for c in classes:
            run_dir = os.path.join(workdir, dataset, str(c))
            if os.path.exists(os.path.join(run_dir, "results.json")):
                continue
            config = base.copy_and_resolve_references()
            config.dataset, config.normal_class = dataset, c
            if _DATA_ROOT.value:
                config.data_dir = os.path.join(_DATA_ROOT.value, LOCAL_FILES[dataset])
            r = pipeline.run_experiment(config, run_dir)
            print(f"{dataset} class {c}: AUC {r['auc_mean']:.4f} +- {r['auc_std']:.4f} "
                  f"({r['timing']['total']:.0f} s)", flush=True)
            outputs.write_text(os.path.join(workdir, "ics_table.md"),
                               render(workdir, _DATASETS.value, classes))
    outputs.write_text(os.path.join(workdir, "ics_table.md"),
                       render(workdir, _DATASETS.value, classes))


if __name__ == "__main__":
    cli.run_app(main)
