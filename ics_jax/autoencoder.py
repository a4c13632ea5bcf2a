"""Training the split autoencoder (`models.AutoEncoder`) on the normal images."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ics_jax import config as config_lib
from ics_jax import xla
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
    params = autoencoder.init(init_key, jnp.asarray(images[:1]))["params"]
    tx = optax.adam(learning_rate)

    def step(carry, data, t):
        params, opt_state = carry
        batch = data[jax.random.randint(jax.random.fold_in(batch_key, t), (batch_size,), 0,
                                        data.shape[0])]
        value, grads = jax.value_and_grad(
            lambda p: reconstruction_loss(autoencoder, p, batch, loss))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    step = xla.jit(step, donate_argnums=0)
    carry, data = (params, tx.init(params)), jnp.asarray(images)
    for t in range(num_steps):
        carry, value = step(carry, data, np.int32(t))
        if progress is not None and (t == 0 or (t + 1) % progress_every == 0
                                     or t + 1 == num_steps):
            progress(t + 1, float(value))
    return autoencoder, carry[0]


def build_autoencoder(config) -> AutoEncoder:
    """Returns the split autoencoder that `config` (its `ae_*` keys) describes."""
    return AutoEncoder(conv_features=tuple(config.ae_conv_features),
                       latent_channels=config_lib.ae_latent_channels(config),
                       global_bottleneck=config.ae_global_bottleneck,
                       negative_slope=config.ae_negative_slope)
