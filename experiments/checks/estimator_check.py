r"""The estimator against the experiment runner, on real files: the same config, one seed.

    python -m experiments.checks.estimator_check --config fashion_mnist.py:quick \
        --config.data_dir=../shared/data/fashion_mnist --config.normal_class=1 \
        --workdir runs/estimator_check

Fits `ics_jax.ICS` on the normal class's training images through the estimator, saves it to
`WORKDIR/model`, loads it in a new process that scores the test set, and runs
`run_experiment` with the same config in `WORKDIR/run`. Prints both AUCs and whether they are
equal, and writes them to `WORKDIR/estimator_check.json`.
"""

import json
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the model, the run and the JSON.")
_SCORE = flags.DEFINE_bool("score_only", False, "Load WORKDIR/model, print the test AUC.")


def _test_auc(config, workdir: str) -> float:
    import ics_jax
    from ics_jax import evaluate

    data = ics_jax.load_one_class(config.dataset, config.normal_class, data_dir=config.data_dir)
    model = ics_jax.ICS.load(os.path.join(workdir, "model"))
    return evaluate.auc(data.y_test, model.decision_function(data.x_test))


def main(argv: list[str]) -> None:
    del argv
    import ics_jax
    from ics_jax import config as config_lib
    from ics_jax import data as data_lib

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config NAME.py and --workdir DIR")
    config.num_seeds = 1
    if _SCORE.value:
        print(json.dumps({"auc": _test_auc(config, workdir)}), flush=True)
        return
    arrays = data_lib.load_arrays(config.dataset, config.data_dir)
    normal = arrays.x_train[arrays.y_train == config.normal_class]  # uint8, as a user has them
    resolved = config_lib.resolved(config)  # the run's keys; the estimator's own cap off
    overrides = {k: resolved[k] for k in ics_jax.ICS().get_params() if k in resolved}
    model = ics_jax.ICS(**overrides, max_epochs=None, verbose=True).fit(normal)
    model.save(os.path.join(workdir, "model"))
    scored = subprocess.run([sys.executable, "-m", "experiments.checks.estimator_check",
                             *sys.argv[1:], "--score_only"], check=True, capture_output=True,
                            text=True)
    estimator_auc = json.loads(scored.stdout.strip().splitlines()[-1])["auc"]
    results = ics_jax.run_experiment(config, os.path.join(workdir, "run"))
    out = {"estimator_auc_loaded_in_new_process": estimator_auc,
           "run_experiment_auc": results["auc"][0],
           "equal": estimator_auc == results["auc"][0]}
    from ics_jax import outputs

    outputs.write_json(os.path.join(workdir, "estimator_check.json"), out)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cli.run_app(main)
