"""The paper's Table 1 (AUC in %, mean and std over 5 seeds), kept as data in one place:
`resources/paper_table1.csv` beside this file, one row per dataset, normal class and method."""

import csv
import functools
import importlib.resources

METHODS = ("ocsvm", "iforest", "imagenet_ocsvm", "ssim", "dsvdd", "naive_nn", "nn_w_ics", "ics")


@functools.cache
def _rows() -> tuple[dict, ...]:
    path = importlib.resources.files(__package__).joinpath("resources/paper_table1.csv")
    return tuple(csv.DictReader(path.read_text().splitlines()))


def table1() -> dict[tuple[str, int, str], tuple[float, float]]:
    """Returns `{(dataset, normal_class, method): (auc_mean_percent, auc_std_percent)}`."""
    return {(r["dataset"], int(r["normal_class"]), r["method"]):
            (float(r["auc_mean"]), float(r["auc_std"])) for r in _rows()}


def class_name(dataset: str, normal_class: int) -> str:
    """Returns the paper's row label of a class ('Digit 0', 'Trouser', 'Airplane', ...)."""
    for r in _rows():
        if r["dataset"] == dataset and int(r["normal_class"]) == normal_class:
            return r["class_name"]
    raise KeyError(f"no class {normal_class} of {dataset} in Table 1")
