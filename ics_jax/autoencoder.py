"""Training the split autoencoder (`models.AutoEncoder`) on the normal images."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ics_jax import config as config_lib
from ics_jax import step as step_lib
from ics_jax.models import AutoEncoder


def reconstruction_loss(autoencoder: AutoEncoder, params, batch: jax.Array,
                        loss: str = "bce") -> jax.Array:
    """Returns the mean per-pixel loss of reconstructing `batch` `[B, H, W, C]` in [0, 1].

    'bce' is binary cross-entropy on the output's logits: its gradient, sigmoid - x, never
    vanishes. 'mse' on the sigmoid output can stall for good once the sigmoid saturates: on
    MNIST the autoencoder then returns an all-black image whatever the input.
    """
    if loss == "bce":
        logits = autoencoder.apply({"params": params}, batch, logits=True)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch))
    if loss == "mse":
        return jnp.mean(jnp.square(autoencoder.apply({"params": params}, batch) - batch))
    raise ValueError(f"unknown autoencoder loss {loss!r}; choose 'bce' or 'mse'")


def train_autoencoder(images: np.ndarray, key: jax.Array, *, num_steps: int, batch_size: int,
                      learning_rate: float, autoencoder: AutoEncoder | None = None,
                      loss: str = "bce", progress: Callable[[int, float], None] | None = None,
                      progress_every: int = 50):
    """Trains `autoencoder` on `images` `[N, H, W, C]` with Adam to minimise
    `reconstruction_loss` on batches drawn with `fold_in(key, step)`; returns
    `(autoencoder, params)`. `progress(step, loss)` follows the first step (so that a run shows
    within seconds that it is alive), every `progress_every` steps and the last one."""
    autoencoder = autoencoder or AutoEncoder()
    init_key, batch_key = jax.random.split(key)
    tx = optax.adam(learning_rate)
    state = step_lib.init_state(tx, autoencoder.init(init_key, jnp.asarray(images[:1])))

    def reconstruction(params, batch_stats, data, key):
        batch = data[jax.random.randint(key, (batch_size,), 0, data.shape[0])]
        return reconstruction_loss(autoencoder, params, batch, loss), batch_stats

    state, _ = step_lib.fit(
        step_lib.make_step({"reconstruction": reconstruction}, tx), state, jnp.asarray(images),
        batch_key, num_steps, network="autoencoder", progress_every=progress_every,
        progress=None if progress is None else (
            lambda t, metrics: progress(t, metrics["loss/reconstruction"])))
    return autoencoder, state.params


def build_autoencoder(config) -> AutoEncoder:
    """Returns the split autoencoder that `config` (its `ae_*` keys) describes."""
    return AutoEncoder(conv_features=tuple(config.ae_conv_features),
                       latent_channels=config_lib.ae_latent_channels(config),
                       global_bottleneck=config.ae_global_bottleneck,
                       negative_slope=config.ae_negative_slope)
