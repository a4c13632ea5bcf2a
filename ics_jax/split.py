"""Intra-class splitting: by an autoencoder's SSIM, the least typical `rho` of the normal class."""

import dataclasses
import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ics_jax import loops, placement
from ics_jax.models import AutoEncoder


@dataclasses.dataclass(frozen=True)
class Split:
    """The split of the normal training images.

    `scores`: `[N]` SSIM(x, reconstruction); `atypical`: sorted `[round(rho * N)]` indices of the
    lowest scores; `typical`: sorted indices of the rest; `test_scores`: `[M]` the same SSIM of
    the test images, if computed (the paper's SSIM baseline scores with it).
    """

    scores: np.ndarray
    atypical: np.ndarray
    typical: np.ndarray
    test_scores: np.ndarray | None = None


def split_by_score(scores: np.ndarray, rho: float) -> Split:
    """Returns the split whose atypical part is the `round(rho * N)` lowest scores.

    Ties are broken by index (a stable sort), so the split is a function of the scores alone.
    """
    scores = np.asarray(scores)
    num_atypical = int(round(rho * scores.shape[0]))
    if not 2 <= num_atypical <= scores.shape[0] - 2:
        raise ValueError(f"rho={rho} splits {scores.shape[0]} images into {num_atypical} "
                         "atypical and the rest typical; pairs need at least 2 in each part")
    order = np.argsort(scores, kind="stable")
    return Split(scores=scores, atypical=np.sort(order[:num_atypical]),
                 typical=np.sort(order[num_atypical:]))


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
                      learning_rate: float, loop_form: str = "python", chunk_size: int = 50,
                      autoencoder: AutoEncoder | None = None, loss: str = "bce"):
    """Trains the autoencoder on `images` `[N, H, W, C]` to minimise `reconstruction_loss`,
    each batch split over the local devices; returns `(module, params)`, params on device 0."""
    autoencoder = autoencoder or AutoEncoder()
    params = autoencoder.init(key, jnp.asarray(images[:1]))["params"]
    tx = optax.adam(learning_rate)

    def step(carry, step_index, phase, data):
        del phase  # one phase only
        params, opt_state = carry
        batch_key = jax.random.fold_in(key, step_index)
        batch = placement.split_batch(
            data[jax.random.randint(batch_key, (batch_size,), 0, data.shape[0])])
        value, grads = jax.value_and_grad(
            lambda p: reconstruction_loss(autoencoder, p, batch, loss))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    mesh = placement.seed_meshes(1)[0]  # the batch split over every local device
    with jax.set_mesh(mesh):
        carry, _ = loops.run(step, placement.place((params, tx.init(params)), mesh), 0,
                             num_steps, loop_form=loop_form, chunk_size=chunk_size,
                             report_every=num_steps,
                             consts=(placement.place(jnp.asarray(images), mesh),))
    # On one device again: scoring with parameters on every device would run on all of them.
    return autoencoder, jax.device_put(carry[0], jax.local_devices()[0])


def batched_apply(fn, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Applies a jitted `fn` to `images` in fixed-size batches (the last one padded)."""
    n = images.shape[0]
    pad = (-n) % batch_size
    padded = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    out = [np.asarray(fn(padded[i:i + batch_size])) for i in range(0, n + pad, batch_size)]
    return np.concatenate(out)[:n]


@functools.partial(jax.jit, static_argnames=("autoencoder", "max_val"))
def _ssim_batch(autoencoder: AutoEncoder, params, batch: jax.Array, max_val: float) -> jax.Array:
    return dm_pix.ssim(batch, autoencoder.apply({"params": params}, batch), max_val=max_val)


def ssim_scores(autoencoder: AutoEncoder, params, images: np.ndarray,
                max_val: float = 1.0) -> np.ndarray:
    """Returns `[N]` SSIM between each image and its reconstruction (higher = more typical).

    One compiled program per autoencoder and batch shape, shared by every call."""
    return batched_apply(lambda b: _ssim_batch(autoencoder, params, b, max_val), images)
