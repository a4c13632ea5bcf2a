r"""One config over many classes, each `dataset:class` cell a run in its own folder.

    python -m experiments.paper.sweep --config classes.py --workdir docs/teacher_table \
        --config.data_root=../shared/data --config.datasets=mnist --config.normal_classes=2,5,8 \
        --config.name=teacher --config.methods=teacher --config.num_seeds=2

The library defaults at the quick budget (`common.quick`: one seed, 300 iterations), as
`--config DATASET.py:quick` runs one class. Each cell of `datasets` x `normal_classes` is
`WORKDIR/<dataset>/<class>/<name>/`, the same run (the same folder and `config.json`) as
`python -m experiments.run --config DATASET.py:quick --config.normal_class=CLASS
--workdir WORKDIR/DATASET/CLASS/NAME` with the same keys; `methods` (one) and `rhos` (one) set
its `method` and `rho`. Any other `--config.KEY=VALUE` applies to every cell. A finished cell
is kept: run the same command again after a stop.
"""

from experiments.configs import common
from experiments.paper import cells
from ics_jax.config import ConfigError, default_config


def get_config(arg: str | None = None):
    if arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; classes.py takes none")
    config = cells.sweep_config(common.quick(default_config()))
    config.methods = config.method  # the library's default method
    config.rhos = f"{config.rho:g}"
    return config
