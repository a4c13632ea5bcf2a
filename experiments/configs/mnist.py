"""MNIST, one normal digit against the other nine (Table 1, first block).

    python -m experiments.run --config mnist.py --workdir runs/mnist0 \\
        --config.data_dir=../shared/data/mnist

`--config mnist.py:quick` is a short job (one seed, 300 iterations) for a first look,
`--config mnist.py:paper` the paper's own configuration (the SSIM split, a constant rate);
`--config.normal_class=3`, `--config.rho=0.2` and any other key override the defaults.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    return common.make("mnist", arg)
