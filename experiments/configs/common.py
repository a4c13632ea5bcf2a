"""What the per-dataset configs share: the library defaults (ICS on the self-checked split,
`ics_jax.default_config()`) for the dataset, plus the named variants `quick` (one seed, 300
iterations) and `paper` (the paper's own configuration)."""

from ics_jax.config import ConfigError, default_config


def make(dataset: str, arg: str | None):
    """Returns the default config for `dataset`; `arg='quick'` is one seed and 300 iterations;
    `arg='paper'` is the paper's configuration (`paper`)."""
    config = default_config()
    config.dataset = dataset
    if arg == "quick":
        quick(config)
    elif arg == "paper":
        paper(config)
    elif arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; give 'quick' or 'paper'")
    return config


def quick(config):
    """Sets `config` to the quick budget: one seed, 300 iterations. Returns it."""
    config.num_seeds = 1
    config.num_iterations = 300
    return config


def paper(config):
    """Sets `config` to the paper's method: ICS, the split by the autoencoder's SSIM, a
    constant learning rate. Returns it."""
    config.method = "ics"
    config.split_by = "ssim"
    config.lr_schedule = "constant"
    return config
