"""The Table 1 / Fig. 4 sweep: resumable cells run exactly once, a shared split, the tables;
named sweeps of one config over classes."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import apply_tiny, write_idx_set

from experiments.configs import classes, common
from experiments.paper import cells, report
from experiments.paper import table as paper_table
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import default_config, pipeline
from ics_jax import split as split_lib
from ics_jax import workdir as workdir_lib


@pytest.fixture
def data_root(tmp_path):
    """`data_root/mnist/` as MNIST IDX files: 30 training and 6 test images per digit."""
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(300) % 10, np.arange(60) % 10
    arrays = data_lib.Arrays(x_train=rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8),
                             y_train=y_train,
                             x_test=rng.integers(0, 256, (60, 28, 28, 1), dtype=np.uint8),
                             y_test=y_test)
    write_idx_set(tmp_path / "data" / "mnist", arrays)
    return tmp_path / "data"


def _config(data_root, **overrides):
    config = cells.sweep_config(apply_tiny(default_config()))
    values = dict(datasets="mnist", normal_classes="0,1", methods="ocsvm,ssim,ics,imagenet_ocsvm",
                  data_root=str(data_root), split_by="ssim")  # Table 1's: SSIM a method
    config.update({**values, **overrides})
    return config


class _Killed(Exception):
    pass


def test_killed_sweep_restarts_and_finishes_every_cell_exactly_once(tmp_path, data_root,
                                                                    monkeypatch):
    config, workdir = _config(data_root), str(tmp_path / "sweep")
    real = pipeline.run_experiment
    finished, started = [], []

    def run(cfg, cell_dir, **kwargs):
        started.append(cell_dir)
        if len(started) == 6:  # the second class's ICS cell: killed after its first report
            def kill(report):
                raise _Killed
            kwargs["progress"] = kill
        results = real(cfg, cell_dir, **kwargs)
        finished.append(cell_dir)
        return results

    monkeypatch.setattr(pipeline, "run_experiment", run)
    with pytest.raises(_Killed):
        cells.run_sweep(config, workdir)
    assert len(finished) == 5
    stamps = {d: (tmp_path / d / "results.json").stat().st_mtime_ns for d in finished}
    results = cells.run_sweep(config, workdir)

    runnable = [c for c in cells.cells(config) if c.method != "imagenet_ocsvm"]
    assert sorted(finished) == sorted(c.directory(workdir) for c in runnable)
    assert len(finished) == len(set(finished))  # every cell finished exactly once
    assert set(results) == set(runnable)
    assert all((tmp_path / d / "results.json").stat().st_mtime_ns == s
               for d, s in stamps.items())  # finished cells were not rewritten
    # The killed ICS cell resumed from its checkpoint: only its last report ran again.
    ics_1 = cells.Cell("mnist", 1, "ics", 0.1).directory(workdir)
    assert started.count(ics_1) == 2
    table = (tmp_path / "sweep" / "table1.md").read_text()
    assert table.count("no weights") == 2  # imagenet_ocsvm without --config.vgg19_weights
    assert (tmp_path / "sweep" / "mnist" / "0" / "typical_atypical.png").exists()


def test_methods_share_the_class_split_and_rhos_cut_the_same_scores(tmp_path, data_root):
    config = _config(data_root, normal_classes="0", methods="ssim,ics", rhos="0.1,0.2")
    workdir = str(tmp_path / "sweep")
    results = cells.run_sweep(config, workdir)
    by_method = {(c.method, c.rho): r for c, r in results.items()}
    ssim = by_method[("ssim", None)]
    assert ssim["auc_mean"] == by_method[("ics", 0.1)]["ssim_auc"]
    class_split = split_lib.load(f"{workdir}/mnist/0/split.npz")
    for rho in (0.1, 0.2):
        cell_split = split_lib.load(cells.Cell("mnist", 0, "ics", rho).directory(workdir)
                                         + "/split.npz")
        np.testing.assert_array_equal(cell_split.scores, class_split.scores)
        assert cell_split.atypical.size == round(rho * class_split.scores.size)
        assert by_method[("ics", rho)]["rho"] == rho
    assert (tmp_path / "sweep" / "rho_sweep.png").exists()
    curve = report.rho_curve(results)
    assert curve["mnist"][0] == [0.1, 0.2]
    assert curve["mnist"][1][1] == pytest.approx(100 * by_method[("ics", 0.2)]["auc_mean"])


def test_a_named_sweep_runs_each_class_as_experiments_run_would(tmp_path, data_root):
    """`--config classes.py --config.name=NAME`: a cell is `workdir/<dataset>/<class>/NAME`,
    the run `python -m experiments.run --config mnist.py:quick` makes there (its split in its
    own folder), and no table is written."""
    config = apply_tiny(classes.get_config())
    config.update(datasets="mnist", normal_classes="0", data_root=str(data_root), name="ics_ssim",
                  split_by="ssim")
    workdir = tmp_path / "sweep"
    (cell,) = cells.cells(config)
    folder = workdir / "mnist" / "0" / "ics_ssim"
    assert cell.method == "ics" and cell.directory(str(workdir)) == str(folder)
    results = cells.run_sweep(config, str(workdir))
    assert (folder / "split.npz").exists() and not (workdir / "mnist" / "0" / "split.npz").exists()
    assert not (workdir / "table1.md").exists()
    run_config = apply_tiny(common.make("mnist", "quick"))
    run_config.update(normal_class=0, data_dir=str(data_root / "mnist"), split_by="ssim")
    assert workdir_lib.finished_results(str(folder), run_config) == results[cell]


def test_a_named_sweep_takes_any_method_but_one_folder_per_class():
    config = cells.sweep_config()
    config.update(datasets="mnist", normal_classes="0,1", methods="teacher")
    with pytest.raises(cells.SweepError, match="named sweep"):
        cells.cells(config)  # no column of the paper's table
    config.name = "teacher"
    assert [c.directory("w") for c in cells.cells(config)] == ["w/mnist/0/teacher",
                                                               "w/mnist/1/teacher"]
    config.update(methods="ics", rhos="0.1,0.2")
    with pytest.raises(cells.SweepError, match="one folder per class"):
        cells.cells(config)


def test_the_rho_curve_compares_the_same_classes_at_every_rho():
    def ics(normal_class, rho, *aucs):
        return cells.Cell("mnist", normal_class, "ics", rho), {"auc": list(aucs)}

    # Class 2 is finished at both rhos, class 5 only at the first (a sweep stopped midway).
    results = dict([ics(2, 0.1, 0.9, 0.8), ics(5, 0.1, 0.5, 0.5), ics(2, 0.2, 0.7, 0.7),
                    (cells.Cell("mnist", 5, "nn_w_ics", 0.2), {"auc": [0.1]})])
    rhos, aucs, num_classes = report.rho_curve(results)["mnist"]
    assert rhos == [0.1, 0.2] and num_classes == 1
    assert aucs == pytest.approx([85.0, 70.0])
    assert report.rho_curve(dict([ics(2, 0.1, 0.9), ics(5, 0.2, 0.7)])) == {}


def test_a_changed_config_in_the_same_workdir_is_refused(tmp_path, data_root):
    workdir = str(tmp_path / "sweep")
    cells.run_sweep(_config(data_root, normal_classes="0", methods="ocsvm"), workdir)
    with pytest.raises(config_lib.ConfigError, match="ocsvm_nu=0.15, not 0.3"):
        cells.run_sweep(_config(data_root, normal_classes="0", methods="ocsvm", ocsvm_nu=0.3),
                        workdir)
    # An execution-only key (how often to log), or a split key for a method without the split,
    # does not invalidate finished cells.
    cells.run_sweep(_config(data_root, normal_classes="0", methods="ocsvm", log_every=1,
                            ae_num_steps=7), workdir)
    # A cell from an older version without a key whose default now computes something else.
    cell_config = tmp_path / "sweep" / "mnist" / "0" / "ocsvm" / "config.json"
    old = json.loads(cell_config.read_text())
    del old["baseline_inputs"]
    cell_config.write_text(json.dumps(old))
    with pytest.raises(config_lib.ConfigError, match="baseline_inputs=None"):
        cells.run_sweep(_config(data_root, normal_classes="0", methods="ocsvm"), workdir)


@pytest.mark.parametrize("key, value, expect", [("methods", "ics,svm", "methods="),
                                                ("normal_classes", "0,x", "normal_classes="),
                                                ("datasets", "", "datasets=")])
def test_bad_sweep_lists_raise_one_line(tmp_path, key, value, expect):
    config = cells.sweep_config()
    config[key] = value
    with pytest.raises(cells.SweepError, match=expect):
        cells.cells(config)


def test_rho_applies_only_to_the_methods_that_split():
    config = cells.sweep_config()
    config.update(datasets="mnist", normal_classes="3", methods="ocsvm,ssim,ics,nn_w_ics",
                  rhos="0.1,0.2")
    got = {(c.method, c.rho) for c in cells.cells(config)}
    assert got == {("ocsvm", None), ("ssim", None), ("ics", 0.1), ("ics", 0.2),
                   ("nn_w_ics", 0.1), ("nn_w_ics", 0.2)}


def _results(auc, seeds=2):
    return {"auc_mean": auc, "auc_std": 0.01, "auc": [auc] * seeds, "seeds": list(range(seeds)),
            "num_iterations": 7}


def test_table_puts_the_papers_values_and_differences_beside_ours():
    finished = {cells.Cell("mnist", 0, "ics", None): _results(0.90),
                cells.Cell("mnist", 2, "ics", None): _results(0.80),
                cells.Cell("mnist", 0, "ocsvm", None): _results(0.70, seeds=1)}
    layout = report.Layout(datasets=["mnist"], classes=[0, 1, 2], methods=["ocsvm", "ics"])
    ref = paper_table.table1()
    p0, p2 = ref[("mnist", 0, "ics")][0], ref[("mnist", 2, "ics")][0]
    md = report.table_markdown(finished, layout)
    rows = {r.split(" | ")[0].strip("| "): r for r in md.splitlines() if r.startswith("| ")}
    assert f"90.0 (1.0) / {p0:.1f} ({90.0 - p0:+.1f})" in rows["Digit 0"]
    assert f"70.0 / {ref[('mnist', 0, 'ocsvm')][0]:.1f}" in rows["Digit 0"]  # one run: no std
    assert rows["Digit 1"].count("/") == 0  # nothing finished for digit 1
    assert f"**85.0** / {(p0 + p2) / 2:.1f} ({85.0 - (p0 + p2) / 2:+.1f}), n=2" in rows["**mean**"]

    table = list(csv.DictReader(io.StringIO(report.table_csv(finished, layout))))
    assert [r["normal_class"] for r in table] == ["0", "1", "2", "mean"]
    assert float(table[2]["ics_mean"]) == 80.0
    assert float(table[2]["ics_paper"]) == p2
    assert float(table[2]["ics_difference"]) == pytest.approx(80.0 - p2)
    assert table[1]["ics_mean"] == "" and float(table[1]["ics_paper"]) > 0
    assert float(table[3]["ics_mean"]) == 85.0


def test_table_adds_the_ics_variants_and_the_wall_time_per_cell():
    ics0 = {**_results(0.90), "ensemble_auc": 0.93, "timing": {"total": 100.0}}
    ics2 = {**_results(0.80), "ensemble_auc": 0.81, "ics_ssim_auc": 0.85,
            "timing": {"total": 300.0}}
    finished = {cells.Cell("mnist", 0, "ics", None): ics0,
                cells.Cell("mnist", 2, "ics", None): ics2}
    md = report.table_markdown(finished, report.Layout(["mnist"], [0, 1, 2], ["ics"]))
    rows = {r.split(" | ")[0].strip("| "): r[2:-2].split(" | ") for r in md.splitlines()
            if r.startswith("| ")}
    assert rows["normal class"][1:] == ["ICS (ours)", "ICS, seed ensemble", "ICS + SSIM"]
    assert rows["Digit 0"][2:] == ["93.0", ""]  # no rank average in this cell
    assert rows["Digit 2"][2:] == ["81.0", "85.0"]
    assert rows["**mean**"][2:] == ["**87.0**, n=2", "**85.0**, n=1"]
    assert "100-300 s per cell (median 200 s)" in md
    without = report.table_markdown({cells.Cell("mnist", 0, "ics", None): _results(0.9)},
                                    report.Layout(["mnist"], [0], ["ics"]))
    assert "ensemble" not in without  # no variant column where no cell has one


def test_paper_table_has_eight_methods_for_thirty_classes():
    t = paper_table.table1()
    assert len(t) == 3 * 10 * len(paper_table.METHODS)
    assert t[("fashion_mnist", 1, "ics")] == (98.9, 0.2)  # Trouser, as printed in the paper
    assert json.dumps(sorted(report.METHOD_NAMES)) == json.dumps(sorted(paper_table.METHODS))


def test_curve_points_average_the_seeds_and_rank_with_the_split(tmp_path):
    from ics_jax import outputs

    labels = np.array([0, 0, 1, 1])
    scores = {"1": np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]),  # seeds disagree
              "5": np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.4, 0.3]])}
    outputs.write_json(str(tmp_path / "test_curve.json"),
                       [{"iteration": 1, "auc": [1.0, 0.0]}, {"iteration": 5, "auc": [1.0, 1.0]}])
    outputs.write_npz(str(tmp_path / "test_curve.json.npz"), **scores)
    ssim = np.array([0.9, 0.8, 0.1, 0.2])  # low similarity = anomalous: ranks 1 and 2 anomalous
    split_lib.save(str(tmp_path / "split.npz"), split_lib.Split(
        scores=np.ones(4), atypical=np.array([0, 1]), typical=np.array([2, 3]),
        test_scores=ssim))
    points = report.curve_points(str(tmp_path), labels)
    assert points["iterations"] == [1, 5] and points["auc"] == [50.0, 100.0]
    # At 1 the seeds' mean is flat (ties): the ranks are the SSIM's alone, which are perfect;
    # at 5 both scores rank the anomalies first.
    assert points["rank_average"] == [100.0, 100.0]
    flipped = report.curve_points(str(tmp_path), 1 - labels)  # the same scores, labels swapped
    assert flipped["rank_average"] == [0.0, 0.0]


def test_authors_selection_reports_the_rest_at_each_seeds_best_validation_report(tmp_path):
    from ics_jax import outputs

    valid, rest = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], [[0.7, 0.2], [0.3, 0.9], [0.4, 0.6]]
    outputs.write_json(str(tmp_path / "test_curve.json"), [
        {"iteration": i + 1, "auc": [0.5, 0.5], "authors_valid": v, "authors_rest": r}
        for i, (v, r) in enumerate(zip(valid, rest, strict=True))])
    picked = report.authors_selection(str(tmp_path))
    # Seed 0 is picked at iteration 1 (rest 0.7), seed 1 at 2 (rest 0.9); the last report: 0.4, 0.6.
    assert picked["selected"] == pytest.approx(80.0)
    assert picked["final"] == pytest.approx(50.0)


def _curves_entry(**classes):
    return {"curves": {n: {"ICS": {"iterations": [100], "auc": [a]}} for n, a in classes.items()},
            "ssim": {n: a - 1 for n, a in classes.items()}, "authors_protocol": {}}


def test_merged_curves_keep_earlier_classes_in_class_order_and_the_new_run_wins():
    earlier = {"mnist": _curves_entry(**{"Digit 5": 90.0, "Digit 2": 80.0}),
               "fashion_mnist": _curves_entry(**{"Pullover": 70.0})}
    earlier["mnist"].pop("authors_protocol")  # curves.json files from before the key existed
    new = {"mnist": _curves_entry(**{"Digit 8": 60.0, "Digit 5": 95.0})}
    merged = report.merge_curves(new, earlier)
    assert list(merged["mnist"]["curves"]) == ["Digit 2", "Digit 5", "Digit 8"]
    assert merged["mnist"]["curves"]["Digit 5"]["ICS"]["auc"] == [95.0]
    assert merged["mnist"]["ssim"] == {"Digit 2": 79.0, "Digit 5": 94.0, "Digit 8": 59.0}
    assert merged["fashion_mnist"] == earlier["fashion_mnist"]
