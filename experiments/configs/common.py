"""What the per-dataset configs share: the library defaults plus the `quick` job."""

from ics_jax.config import ConfigError, default_config


def make(dataset: str, arg: str | None):
    """Returns the default config for `dataset`; `arg='quick'` is one seed, 300 iterations."""
    config = default_config()
    config.dataset = dataset
    if arg == "quick":
        config.num_seeds = 1
        config.num_iterations = 300
    elif arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; the only one is 'quick'")
    return config
