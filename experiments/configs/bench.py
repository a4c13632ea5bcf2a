"""The throughput benchmark (`python -m experiments.bench --config bench.py --workdir DIR`).

The library defaults (the model, batch and autoencoder a real run uses) plus what the
benchmark measures: seed counts, timed chunks, the matmul size of the peak, and the number of
synthetic images. `bench.py:quick` is a smoke run with tiny networks, seconds on a CPU.
"""

from ics_jax.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.num_seeds_list = (1, 2, 4, 8)  # seed counts of the seeds table
    config.timed_chunks = 10  # compiled calls timed per measurement, after one to compile
    config.matmul_size = 2048  # n of the n x n f32 matmul that measures the peak
    # vmap/sharded on a CPU (not offered there, 0.15x at 8 seeds) timed up to this many seeds
    config.other_strategies_up_to = 2
    config.bench_images = 6000  # synthetic 28x28x1 images: the SSIM split and the training pool
    if arg == "quick":
        config.update(num_seeds_list=(1, 2), timed_chunks=2, matmul_size=256, bench_images=200,
                      ae_num_steps=5, batch_size=8, conv_features=(4, 4, 4, 4, 4),
                      dense_features=8, latent_dim=4, ae_conv_features=(4, 4, 4, 4, 4),
                      ae_latent_channels=4)
    elif arg is not None:
        raise ValueError(f"unknown config argument {arg!r}; the only one is 'quick'")
    return config
