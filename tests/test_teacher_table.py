"""The teacher's table: the former default detector and the means over partial columns."""

import json

from experiments.studies import teacher_table

HEADER = "dataset,normal_class,ssim_mean,nn_w_ics_mean,ics_mean,ics_paper\n"


def _cell(workdir, dataset, normal_class, name, auc):
    folder = workdir / dataset / str(normal_class) / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(
        {"auc_mean": auc, "ensemble_auc": auc, "timing": {"total": 10.0}}))


def test_the_former_default_is_the_dataset_s_score_and_partial_means_say_their_count(tmp_path):
    csv = tmp_path / "table1.csv"
    csv.write_text(HEADER + "mnist,0,99.0,98.0,97.0,96.0\nmnist,1,90.0,89.0,88.0,87.0\n"
                   "cifar10,0,50.0,51.0,52.0,53.0\ncifar10,1,60.0,61.0,62.0,63.0\n")
    _cell(tmp_path, "mnist", 0, "teacher", 0.80)
    _cell(tmp_path, "cifar10", 0, "teacher", 0.70)
    _cell(tmp_path, "cifar10", 1, "teacher", 0.90)
    found, seconds = teacher_table.rows(tmp_path, csv)
    by_cell = {(r["dataset"], r["class"]): r for r in found}
    assert len(found) == 4 and seconds == {"teacher": [10.0] * 3}
    assert by_cell["mnist", 0]["former default"] == 99.0  # MNIST's default: SSIM
    assert by_cell["cifar10", 1]["former default"] == 90.0  # CIFAR-10's: the teacher
    assert by_cell["mnist", 1]["teacher"] is None
    table = teacher_table.markdown(found, seconds)
    assert "| **mnist, 2 of 10** | **94.5** | **94.5** | **80.0 (1 of 2)** |" in table
    assert "| **cifar10, 2 of 10** | **80.0** | **55.0** | **80.0** |" in table
