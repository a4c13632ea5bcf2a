"""Markdown tables of finished runs beside the paper's numbers."""

import json
import os

from ics_jax import paper


def render(workdir: str, datasets: list[str], classes: list[int]) -> str:
    """Returns a markdown table of finished runs: our AUC % beside the paper's ICS column."""
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
