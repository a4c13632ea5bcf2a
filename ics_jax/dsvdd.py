"""One-class Deep SVDD (Ruff et al., ICML 2018), the baseline: a bias-free LeNet-style encoder,
pretrained as the encoder of an autoencoder, then trained to map the normal images close to a
fixed centre `c`. The anomaly score is `||phi(x) - c||^2` (higher = more anomalous).

Images are float32 `[N, H, W, C]`, already preprocessed by the caller. Batch norm has neither
scale nor offset and no layer has a bias, so the network cannot map every input onto `c` by a
constant (Ruff et al., section 3.3).
"""

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ics_jax import step as step_lib
from ics_jax import xla
from ics_jax.evaluate import batched_apply
from ics_jax.models import max_pool_2x2


def _kernel_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """PyTorch's default initialisation, as Ruff et al. use: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`
    with `fan_in` the product of all but the last kernel dimension.

    Drawn flat and reshaped: XLA's CPU backend takes seconds to compile a rank-4 threefry draw.
    """
    bound = 1 / math.sqrt(math.prod(shape[:-1]))
    return jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound).reshape(shape)


def _norm(x: jax.Array, train: bool) -> jax.Array:
    """PyTorch's `BatchNorm2d(eps=1e-4, affine=False)`: statistics only, no parameters."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-4,
                        use_bias=False, use_scale=False)(x)


def _activation(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.01)


class LeNetEncoder(nn.Module):
    """Bias-free LeNet: per width, a 5x5 convolution, batch norm, LeakyReLU 0.01 and 2x2 max
    pooling; then a dense layer. Returns `phi(x)`, `[B, rep_dim]`.

    The defaults are Ruff et al.'s MNIST network; `encoder_for` picks the CIFAR-10 one.
    """

    conv_features: Sequence[int] = (8, 4)
    rep_dim: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for features in self.conv_features:
            x = nn.Conv(features, (5, 5), padding=2, use_bias=False, kernel_init=_kernel_init)(x)
            x = max_pool_2x2(_activation(_norm(x, train)))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.rep_dim, use_bias=False, kernel_init=_kernel_init)(x)


def encoder_for(image_shape: Sequence[int]) -> LeNetEncoder:
    """Returns Ruff et al.'s encoder for `image_shape` `(H, W, C)`: the MNIST network for one
    channel, the CIFAR-10 network for three."""
    channels = image_shape[-1]
    if channels == 1:
        return LeNetEncoder(conv_features=(8, 4), rep_dim=32)
    if channels == 3:
        return LeNetEncoder(conv_features=(32, 64, 128), rep_dim=128)
    raise ValueError(f"no Deep SVDD encoder for {channels} channels; expected 1 or 3")


class LeNetDecoder(nn.Module):
    """Ruff et al.'s decoder: the code is read as a 4x4 map of `rep_dim / 16` channels; per
    encoder width, in reverse, LeakyReLU, nearest upsampling to the encoder's map size at that
    depth, a bias-free 5x5 transposed convolution and batch norm; then LeakyReLU, upsampling to
    `image_shape` and a transposed convolution onto its channels. Returns `[B, H, W, C]` in (0, 1).
    """

    conv_features: Sequence[int]
    image_shape: Sequence[int]

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        if z.shape[-1] % 16:
            raise ValueError(f"rep_dim={z.shape[-1]} is not a multiple of 16 (a 4x4 map)")
        height, width, channels = self.image_shape
        sizes = [(height, width)]  # the encoder's map size before each pooling, and after
        for _ in self.conv_features:
            sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        x = z.reshape(z.shape[0], 4, 4, -1)
        for features, size in zip(self.conv_features[::-1], sizes[:0:-1], strict=True):
            x = _upsample(_activation(x), size)
            x = nn.ConvTranspose(features, (5, 5), use_bias=False, kernel_init=_kernel_init)(x)
            x = _norm(x, train)
        x = _upsample(_activation(x), sizes[0])
        x = nn.ConvTranspose(channels, (5, 5), use_bias=False, kernel_init=_kernel_init)(x)
        return nn.sigmoid(x)


def _upsample(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), "nearest")


class LeNetAutoEncoder(nn.Module):
    """`encoder` followed by its `LeNetDecoder`. Returns the reconstruction, shaped like the input.

    The encoder's variables sit under the key `encoder`, so they can initialise Deep SVDD.
    """

    encoder: LeNetEncoder

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        z = self.encoder(x, train)
        return LeNetDecoder(self.encoder.conv_features, x.shape[1:], name="decoder")(z, train)


def init_center(features: np.ndarray | jax.Array, eps: float = 0.1) -> jax.Array:
    """Returns the centre `c`, `[D]`: the mean of `features` `[N, D]`, with every coordinate
    closer to zero than `eps` moved out to `eps` with its sign (`+eps` for an exact zero)."""
    c = jnp.mean(jnp.asarray(features, jnp.float32), axis=0)
    return jnp.where(jnp.abs(c) < eps, jnp.where(c < 0, -eps, eps), c)


@xla.jit(static_argnums=0)
def _init(module: nn.Module, key: jax.Array, x: jax.Array) -> dict:
    return module.init(key, x, train=False)


def _reconstruction_loss(autoencoder, variables, batch, target):
    """Squared error summed over pixels, averaged over the batch (`target` unused)."""
    del target
    recon, state = autoencoder.apply(variables, batch, train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.sum(jnp.square(recon - batch), axis=(1, 2, 3))), state["batch_stats"]


def _svdd_loss(encoder, variables, batch, center):
    """`||phi(x) - center||^2` averaged over the batch."""
    z, state = encoder.apply(variables, batch, train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.sum(jnp.square(z - center), axis=-1)), state["batch_stats"]


def _fit(name: str, loss_fn: Callable, module: nn.Module, variables: dict, target,
         images: np.ndarray, key: jax.Array, *, num_steps: int, batch_size: int,
         learning_rate: float, weight_decay: float):
    """Trains `module` from `variables` with Adam on `loss_fn(module, variables, batch, target)
    -> (loss, batch_stats)` over minibatches of `images`, every weight decayed by
    `weight_decay`; returns `(variables, losses [num_steps])` (the losses without the decay)."""
    tx = step_lib.with_weight_decay(optax.adam(learning_rate), weight_decay,
                                    step_lib.every_weight)

    def loss(params, batch_stats, data, key):
        batch = data[jax.random.randint(key, (batch_size,), 0, data.shape[0])]
        return loss_fn(module, {"params": params, "batch_stats": batch_stats}, batch, target)

    state, metrics = step_lib.fit(step_lib.make_step({name: loss}, tx),
                                  step_lib.init_state(tx, variables), jnp.asarray(images), key,
                                  num_steps, network=f"Deep SVDD {name}")
    losses = metrics[f"loss/{name}"] if num_steps else np.zeros(0, np.float32)
    return {"params": state.params, "batch_stats": state.batch_stats}, losses


def pretrain_autoencoder(images: np.ndarray, key: jax.Array, *, num_steps: int, batch_size: int,
                         learning_rate: float = 1e-4, weight_decay: float = 5e-4):
    """Trains the autoencoder of `encoder_for(images.shape[1:])` on `images` `[N, H, W, C]` to
    minimise the squared reconstruction error summed over pixels, averaged over the batch.

    Returns `(autoencoder, variables, losses [num_steps])`, the losses without the decay.
    """
    init_key, batch_key = jax.random.split(key)
    autoencoder = LeNetAutoEncoder(encoder_for(images.shape[1:]))
    variables = _init(autoencoder, init_key, jnp.asarray(images[:1]))
    variables, losses = _fit("reconstruction", _reconstruction_loss, autoencoder, variables,
                             None, images, batch_key, num_steps=num_steps,
                             batch_size=batch_size, learning_rate=learning_rate,
                             weight_decay=weight_decay)
    return autoencoder, variables, losses


@xla.jit(static_argnums=0)
def _features(encoder: LeNetEncoder, variables: dict, images: jax.Array) -> jax.Array:
    return encoder.apply(variables, images, train=False)


@xla.jit(static_argnums=0)
def _distances(encoder: LeNetEncoder, variables: dict, center: jax.Array,
               images: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(_features(encoder, variables, images) - center), axis=-1)


def encode(encoder: LeNetEncoder, variables: dict, images: np.ndarray) -> np.ndarray:
    """Returns `phi(images)`, `[N, rep_dim]`, in eval mode (batch norm's running averages)."""
    return batched_apply(lambda batch: _features(encoder, variables, batch), images)


def fit_svdd(encoder: LeNetEncoder, variables: dict, center: jax.Array, images: np.ndarray,
             key: jax.Array, *, num_steps: int, batch_size: int, learning_rate: float = 1e-4,
             weight_decay: float = 5e-7):
    """Trains `encoder` from `variables` to minimise the mean `||phi(x) - center||^2` over
    minibatches of `images` (batch norm in train mode), plus weight decay.

    Returns `(variables, losses [num_steps])`, the losses without the decay.
    """
    return _fit("svdd", _svdd_loss, encoder, variables, jnp.asarray(center), images, key,
                num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate,
                weight_decay=weight_decay)


def train_dsvdd(images: np.ndarray, key: jax.Array, *, ae_num_steps: int, num_steps: int,
                batch_size: int, learning_rate: float = 1e-4, weight_decay: float = 5e-7,
                ae_weight_decay: float = 5e-4):
    """Pretrains the autoencoder on `images` `[N, H, W, C]`, takes its encoder, fixes the centre
    from the encoder's eval-mode features of all `images`, and trains Deep SVDD.

    The autoencoder trains with `learning_rate` and `ae_weight_decay` (`ae_num_steps=0`: a
    randomly initialised encoder). Returns `(encoder, variables, center [rep_dim])`.
    """
    ae_key, svdd_key = jax.random.split(key)
    autoencoder, ae_variables, _ = pretrain_autoencoder(
        images, ae_key, num_steps=ae_num_steps, batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=ae_weight_decay)
    encoder = autoencoder.encoder
    variables = {name: tree["encoder"] for name, tree in ae_variables.items()}
    center = init_center(encode(encoder, variables, images))
    variables, _ = fit_svdd(encoder, variables, center, images, svdd_key, num_steps=num_steps,
                            batch_size=batch_size, learning_rate=learning_rate,
                            weight_decay=weight_decay)
    return encoder, variables, center


def dsvdd_scores(encoder: LeNetEncoder, variables: dict, center: jax.Array,
                 images: np.ndarray) -> np.ndarray:
    """Returns `[M]` anomaly scores `||phi(x) - center||^2` of `images` in eval mode."""
    return batched_apply(lambda batch: _distances(encoder, variables, center, batch), images)


def run_dsvdd(x_train: np.ndarray, x_test: np.ndarray, key: jax.Array,
              **train_kwargs) -> np.ndarray:
    """Trains Deep SVDD on `x_train` (`train_dsvdd`'s keywords) and returns `[M]` scores of
    `x_test`."""
    encoder, variables, center = train_dsvdd(x_train, key, **train_kwargs)
    return dsvdd_scores(encoder, variables, center, x_test)
