"""experiments.curves: curves from several workdirs draw together."""

from experiments import curves


def _entry(**classes):
    return {"curves": {n: {"ICS": {"iterations": [100], "auc": [a]}} for n, a in classes.items()},
            "ssim": {n: a - 1 for n, a in classes.items()}, "authors_protocol": {}}


def test_earlier_classes_stay_in_class_order_and_the_new_run_wins():
    earlier = {"mnist": _entry(**{"Digit 5": 90.0, "Digit 2": 80.0}),
               "fashion_mnist": _entry(**{"Pullover": 70.0})}
    earlier["mnist"].pop("authors_protocol")  # curves.json files from before the key existed
    new = {"mnist": _entry(**{"Digit 8": 60.0, "Digit 5": 95.0})}
    merged = curves.merge_earlier(new, earlier)
    assert list(merged["mnist"]["curves"]) == ["Digit 2", "Digit 5", "Digit 8"]
    assert merged["mnist"]["curves"]["Digit 5"]["ICS"]["auc"] == [95.0]
    assert merged["mnist"]["ssim"] == {"Digit 2": 79.0, "Digit 5": 94.0, "Digit 8": 59.0}
    assert merged["fashion_mnist"] == earlier["fashion_mnist"]
