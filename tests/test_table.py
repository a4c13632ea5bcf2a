"""The ICS table renderer: our AUC beside the paper's, with differences and a mean row."""

import json

from ics_jax import paper, report


def _write(root, dataset, c, auc, ssim_auc=None):
    run = root / dataset / str(c)
    run.mkdir(parents=True)
    results = {"auc_mean": auc, "auc_std": 0.01, "seeds": [0, 1], "num_iterations": 7,
               "timing": {"train": 3.0}, "ssim_auc": ssim_auc}
    (run / "results.json").write_text(json.dumps(results))


def test_render_puts_paper_values_and_differences_beside_ours(tmp_path):
    _write(tmp_path, "mnist", 0, 0.90, ssim_auc=0.5)
    _write(tmp_path, "mnist", 2, 0.80)
    text = report.render(str(tmp_path), ["mnist"], [0, 1, 2])
    rows = [r for r in text.splitlines() if r.startswith("| mnist")]
    assert len(rows) == 3  # classes 0 and 2 (1 has not run), and the mean row
    p0, p2 = paper.table1()[("mnist", 0, "ics")][0], paper.table1()[("mnist", 2, "ics")][0]
    assert f"| 90.0 (1.0) | {p0:.1f} | {90.0 - p0:+.1f} | 2 | 7 |" in rows[0]
    assert f"50.0 ({paper.table1()[('mnist', 0, 'ssim')][0]:.1f})" in rows[0]
    assert f"| {p2:.1f} | {80.0 - p2:+.1f} |" in rows[1]
    assert f"**{85.0:.1f}** | **{(p0 + p2) / 2:.1f}**" in rows[2]


def test_paper_table_has_eight_methods_for_thirty_classes():
    t = paper.table1()
    assert len(t) == 3 * 10 * len(paper.METHODS)
    assert t[("fashion_mnist", 1, "ics")] == (98.9, 0.2)  # Trouser, as printed in the paper
