r"""ICS on every normal class of one or more datasets, beside the paper's ICS column.

    python -m experiments.table --config mnist.py --workdir runs/table \
        --datasets=mnist,fashion_mnist --data_root=../shared/data \
        --config.num_iterations=100 --config.num_seeds=1

Each class runs in `workdir/<dataset>/<class>/`; a class whose `results.json` exists is not run
again, so a stopped table resumes. Writes `workdir/ics_table.md` after every class.
"""

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


def main(argv):
    del argv
    from ics_jax import outputs, pipeline
    from ics_jax.report import render
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
