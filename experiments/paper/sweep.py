r"""Reproduces the paper's Table 1 (and, with `rho.py`, Fig. 4) as a resumable sweep.

    python -m experiments.paper.sweep --config table1.py --workdir runs/table1 \
        --config.data_root=../shared/data --config.datasets=mnist --config.methods=ics,ocsvm

Every finished cell (dataset, class, method, rho) is kept: run the same command again after a
stop and only unfinished cells run. `--report_only` rewrites the tables from the finished cells
of the config (say, all of them after narrowed sweeps) and runs nothing. Writes `table1.md`,
`table1.csv`, `rho_sweep.png` (several `rhos`) and a `typical_atypical.png` per dataset and class
under `--workdir`.

With `--config classes.py` and `--config.name=NAME` it runs one config over classes instead,
each cell in `WORKDIR/<dataset>/<class>/NAME/` (the teacher's table, docs/teacher.md):

    python -m experiments.paper.sweep --config classes.py --workdir docs/teacher_table \
        --config.data_root=../shared/data --config.datasets=cifar10 \
        --config.name=teacher --config.methods=teacher --config.num_seeds=2
"""

import time

from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the sweep's cells and tables.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only rewrite the tables and figures from the finished cells.")


def main(argv: list[str]) -> None:
    del argv
    from experiments.paper import cells  # after flag parsing: a bad flag should not wait on JAX

    config, workdir = _CONFIG.value, _WORKDIR.value
    if config is None or workdir is None:
        raise cli.UsageError("give --config table1.py (or classes.py) and --workdir DIR")
    if _REPORT_ONLY.value:
        if config.name:
            raise cli.UsageError("--report_only: a named sweep (--config.name) has no tables")
        cells.write_reports(config, workdir)
        print(f"tables in {workdir}/table1.md and table1.csv", flush=True)
        return
    todo = cells.cells(config)
    left = [c for c in todo if not cells.is_finished(workdir, c, config)]
    print(f"{len(todo)} cells, {len(todo) - len(left)} finished -> {workdir}", flush=True)
    t0 = time.time()

    def on_cell(cell, results):
        rho = "" if cell.rho is None else f" rho {cell.rho:g}"
        where = f" ({cell.name})" if cell.name else ""
        if results is None:
            print(f"{cell.dataset} class {cell.normal_class} {cell.method}: skipped, no "
                  "weights (--config.vgg19_weights)", flush=True)
            return
        print(f"{cell.dataset} class {cell.normal_class} {cell.method}{rho}{where}: AUC "
              f"{results['auc_mean']:.4f} +- {results['auc_std']:.4f} "
              f"({results['timing']['total']:.0f} s, {time.time() - t0:.0f} s so far)",
              flush=True)

    cells.run_sweep(config, workdir, on_cell=on_cell)
    if config.name:
        print(f"cells in {workdir}/<dataset>/<class>/{config.name}", flush=True)
    else:
        print(f"tables in {workdir}/table1.md and table1.csv", flush=True)


if __name__ == "__main__":
    cli.run_app(main)
