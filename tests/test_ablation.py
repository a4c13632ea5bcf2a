"""The ablation table compares a variant with the default at the variant's own iteration, each
cell with the first baseline workdir that has it."""

import json

import pytest

from experiments.paper import ablation
from ics_jax import outputs


def _cell(root, method_dir, results, curve=None, losses=None):
    cell = root / "mnist" / "2" / method_dir
    cell.mkdir(parents=True)
    (cell / "results.json").write_text(json.dumps(results))
    if curve is not None:
        (cell / "test_curve.json").write_text(json.dumps(
            [{"iteration": it, "auc": [auc]} for it, auc in curve.items()]))
    if losses is not None:
        writer = outputs.MetricWriter(str(cell / "tensorboard"))
        for it, value in losses.items():
            writer.scalars(it, {"loss/closeness": value, "loss/intra_class": 0.5})
        writer.close()


def test_a_variant_is_compared_at_its_iteration_not_the_baselines_end(tmp_path):
    pytest.importorskip("tensorboard")
    base, variant = tmp_path / "base", tmp_path / "variant"
    _cell(base, "ics_rho0.1", {"method": "ics", "num_iterations": 800, "auc_mean": 0.99},
          curve={100: 0.5, 200: 0.6, 300: 0.7, 400: 0.8, 800: 0.99})
    _cell(tmp_path / "other_base", "ssim", {"method": "ssim", "auc_mean": 0.9})
    _cell(variant, "ics_rho0.1", {"method": "ics", "num_iterations": 400, "auc_mean": 0.85},
          curve={300: 0.75, 400: 0.85}, losses={300: 0.4, 400: 0.2})
    _cell(variant, "ssim", {"method": "ssim", "auc_mean": 0.95})
    baselines = [str(base), str(tmp_path / "other_base")]  # the SSIM cell is in the second
    ics, ssim = sorted(ablation.compare(baselines, str(variant)), key=lambda r: r["method"])
    assert ics["auc"] == pytest.approx(85) and ics["baseline_auc"] == pytest.approx(80)
    assert ics["late_auc"] == pytest.approx(80) and ics["baseline_late_auc"] == pytest.approx(75)
    assert ics["closeness"] == pytest.approx(0.2)  # the last report's
    assert ssim["auc"] == pytest.approx(95) and ssim["baseline_auc"] == pytest.approx(90)
    table = ablation.markdown({"variant": [ics, ssim]})
    assert "| variant (ics) | 85.0 / 80.0 | +5.0 (1) | +5.0 |" in table
    assert "| variant (ssim) | 95.0 / 90.0 | +5.0 (1) |  |" in table
