"""What the per-dataset configs share: the library defaults with the default detector, plus the
named variants `quick` (one seed, 300 iterations) and `paper` (the paper's own configuration)."""

from ics_jax.config import ConfigError, default_config

# The default detector: the transformation teacher alone, the best on the development classes
# of all three datasets (docs/teacher.md); `--config.method=ics` is ICS on the teacher's split.
DEFAULT_METHOD = "teacher"


def make(dataset: str, arg: str | None):
    """Returns the default config for `dataset`: the default detector (`DEFAULT_METHOD`);
    `arg='quick'` is one seed (and 300 iterations for a classifier); `arg='paper'` is the
    paper's configuration (`paper`)."""
    config = default_config()
    config.dataset = dataset
    config.method = DEFAULT_METHOD
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
