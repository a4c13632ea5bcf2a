"""Fashion-MNIST, one normal class against the other nine (Table 1, second block).

    python -m experiments.run --config fashion_mnist.py --workdir runs/fashion_mnist1 \\
        --config.data_dir=../shared/data/fashion_mnist

`--config fashion_mnist.py:quick` is a short job (one seed, 300 iterations) for a first look,
`--config fashion_mnist.py:paper` the paper's own configuration (the SSIM split, a constant rate);
`--config.normal_class=3`, `--config.rho=0.2` and any other key override the defaults.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    return common.make("fashion_mnist", arg)
