"""The throughput benchmark (`python -m experiments.speed.bench --config bench.py --workdir DIR`).

The library defaults (the model, batch and autoencoder a real run uses) plus what the
benchmark measures: seed counts, timed reports, the matmul size of the peak, the synthetic
images and the rounds against the PyTorch peer. `bench.py:quick` is a smoke run with tiny
networks, seconds on a CPU.
"""

from ics_jax.config import ConfigError, default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.split_by = "ssim"  # the split is only the training pool here: the cheap one
    config.num_seeds_list = (1, 2, 4)  # seed counts of the seeds table
    config.timed_reports = 4  # reports per timing; the first (compile) is not counted
    config.report_every = 10  # iterations per report, and per round against the peer
    config.peer_rounds = 5  # rounds of ours, then the PyTorch peer's, timed in turn
    config.matmul_size = 2048  # n of the n x n f32 matmul that measures the peak
    config.bench_images = 6000  # synthetic images: the SSIM split and the training pool
    config.image_shape = (28, 28, 1)
    if arg == "quick":
        config.update(num_seeds_list=(1, 2), timed_reports=3, report_every=2, peer_rounds=2,
                      matmul_size=256, bench_images=200, ae_num_steps=5, batch_size=8,
                      conv_features=(4, 4, 4, 4, 4), dense_features=8, latent_dim=4,
                      ae_conv_features=(4, 4, 4, 4, 4), ae_latent_channels=4)
    elif arg is not None:
        raise ConfigError(f"unknown config argument {arg!r}; the only one is 'quick'")
    return config
