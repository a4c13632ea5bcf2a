"""CIFAR-10, one normal class against the other nine (Table 1, third block).

    python -m experiments.run --config cifar10.py --workdir runs/cifar10_0 \\
        --config.data_dir=../shared/data/cifar10_jpeg.tar.gz

`--config cifar10.py:quick` is a short job (one seed, 300 iterations) for a first look,
`--config cifar10.py:paper` the paper's own configuration (the SSIM split, a constant rate);
`--config.normal_class=3`, `--config.rho=0.2` and any other key override the defaults.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    return common.make("cifar10", arg)
