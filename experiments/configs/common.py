"""What the per-dataset configs share: the library defaults with the dataset's default detector,
plus the named variants `quick` (one seed, 300 iterations) and `paper` (the paper's own
configuration)."""

from ics_jax.config import ConfigError, default_config

# Each dataset's default detector, chosen on its development classes (docs/teacher.md): the
# score the split is cut by, alone. The transformation teacher's on natural images; on MNIST the
# split autoencoder's SSIM (its digits 0, 1 and 8 look alike turned). `--config.method=ics` is
# ICS on the same split.
DEFAULT_SCORE = {"mnist": "ssim", "fashion_mnist": "teacher", "cifar10": "teacher"}


def make(dataset: str, arg: str | None):
    """Returns the default config for `dataset`: its default detector (`DEFAULT_SCORE`);
    `arg='quick'` is one seed (and 300 iterations for a classifier); `arg='paper'` is the
    paper's configuration (`paper`)."""
    config = default_config()
    config.dataset = dataset
    config.method = config.split_by = DEFAULT_SCORE[dataset]
    if arg == "quick":
        config.num_seeds = 1
        config.num_iterations = 300
    elif arg == "paper":
        paper(config)
    elif arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; give 'quick' or 'paper'")
    return config


def paper(config):
    """Sets `config` to the paper's method: ICS, the split by the autoencoder's SSIM, a
    constant learning rate. Returns it."""
    config.method = "ics"
    config.split_by = "ssim"
    config.lr_schedule = "constant"
    return config
