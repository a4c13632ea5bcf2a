"""Table 1 of the paper: 3 datasets x 10 normal classes x 8 methods, 5 seeds each.

    python -m experiments.paper.sweep --config table1.py --workdir runs/table1 \\
        --config.data_root=../shared/data

The paper's configuration (`common.paper`: the SSIM split, a constant rate), 5 seeds and 10000
iterations: hours on an accelerator. `table1.py:cpu` is one seed and 50 iterations, minutes
per class on a 2-core CPU (docs/results.md); narrow with `--config.datasets=mnist
--config.normal_classes=0,1 --config.methods=ics,ocsvm`.
"""

from experiments.configs import common
from experiments.paper import cells
from ics_jax.config import ConfigError, default_config


def get_config(arg: str | None = None):
    config = cells.sweep_config(common.paper(default_config()))
    if arg == "cpu":
        cpu_budget(config)
    elif arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; the only one is 'cpu'")
    return config


def cpu_budget(config):
    """The budget that fits a 2-core CPU in about an hour per dataset: one seed, 50 ICS
    iterations (150 steps), 300 autoencoder steps, 500 + 500 Deep SVDD steps."""
    config.num_seeds = 1
    config.num_iterations = 50
    config.ae_num_steps = 300
    config.dsvdd_ae_num_steps = 500
    config.dsvdd_num_steps = 500
    config.log_every = 25
    config.checkpoint_every = 25
    return config
