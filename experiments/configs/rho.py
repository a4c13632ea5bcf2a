"""Fig. 4 of the paper: mean ICS AUC against the atypical ratio `rho`, 4 seeds per class.

    python -m experiments.paper.sweep --config rho.py --workdir runs/rho \\
        --config.data_root=../shared/data

Writes `rho_sweep.png`. It may share a workdir with `table1.py` (same budget): the `rho = 0.1`
cells and each class's autoencoder are then computed once. `rho.py:cpu` is the CPU budget.
"""

from experiments.configs import table1


def get_config(arg: str | None = None):
    config = table1.get_config(arg)
    config.methods = "ics"
    config.rhos = "0.1,0.01,0.05,0.2,0.3"  # the first one is the table's
    if arg is None:
        config.num_seeds = 4
    return config
