"""Networks: the one-class classifier backbones, its two heads, and the split autoencoder.

Images are float32 `[B, H, W, C]` in [0, 1]. Every module takes `train` so that batch norm and
dropout switch between batch statistics and running averages; a module without either ignores it.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _activation(x: jax.Array, negative_slope: float) -> jax.Array:
    return nn.leaky_relu(x, negative_slope) if negative_slope else nn.relu(x)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Returns the 2x2, stride-2 max pool of `x [B, H, W, C]` as `[B, H//2, W//2, C]` (an odd
    last row or column is dropped, as `nn.max_pool` with VALID padding does).

    A reshape and a max rather than `nn.max_pool`: XLA's CPU backend runs the latter's gradient
    (select-and-scatter) 7-10x slower than this one's (elementwise compare and select), about a
    quarter of a training step's time. On ties the gradient is shared where `nn.max_pool` gives it
    to the first maximum; after a ReLU a tie is a zero, whose gradient is zero either way.
    """
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
    """Zero-pads H and W symmetrically up to a multiple (28 -> 32 for multiple 8)."""
    h, w = x.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


class AlexNet(nn.Module):
    """The paper's backbone: AlexNet-like convolutions, then dense layers down to the latent `z`.

    Returns `z`, `[B, latent_dim]`: the output of the second-last layer of the classifier.
    """

    conv_features: Sequence[int] = (32, 64, 96, 96, 64)
    dense_features: int = 256
    latent_dim: int = 128
    batch_norm: bool = False
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        act = nn.relu
        norm = lambda y: (  # noqa: E731
            nn.BatchNorm(use_running_average=not train, momentum=0.99)(y) if self.batch_norm else y
        )
        c1, c2, c3, c4, c5 = self.conv_features
        x = max_pool_2x2(act(norm(nn.Conv(c1, (5, 5))(x))))
        x = max_pool_2x2(act(norm(nn.Conv(c2, (5, 5))(x))))
        x = act(norm(nn.Conv(c3, (3, 3))(x)))
        x = act(norm(nn.Conv(c4, (3, 3))(x)))
        x = max_pool_2x2(act(norm(nn.Conv(c5, (3, 3))(x))))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout, deterministic=not train)(act(nn.Dense(self.dense_features)(x)))
        return act(nn.Dense(self.latent_dim)(x))


class ICSNet(nn.Module):
    """The authors' released network: blocks of two stacked 3x3 convolutions whose outputs are
    concatenated, LeakyReLU 0.2, average pooling, batch norm; dense 256, latent 128, dropout.

    Returns `z`, `[B, latent_dim]`.
    """

    conv_features: Sequence[int] = (16, 32, 64, 128)
    dense_features: int = 256
    latent_dim: int = 128
    dropout: float = 0.5
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        init = nn.initializers.truncated_normal(0.01)
        norm = lambda y: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=0.99, epsilon=1e-3)(y)
        x = _pad_to_multiple(x, 16)
        for features in self.conv_features:
            a = nn.Conv(features, (3, 3), use_bias=False, kernel_init=init)(x)
            b = nn.Conv(features, (3, 3), use_bias=False, kernel_init=init)(a)
            x = _activation(jnp.concatenate([a, b], axis=-1), self.negative_slope)
            x = norm(nn.avg_pool(x, (2, 2), (2, 2)))
        a = nn.Conv(2 * self.conv_features[-1], (1, 1), use_bias=False, kernel_init=init)(x)
        b = nn.Conv(2 * self.conv_features[-1], (1, 1), use_bias=False, kernel_init=init)(x)
        x = norm(_activation(jnp.concatenate([a, b], axis=-1), self.negative_slope))
        x = x.reshape(x.shape[0], -1)
        x = _activation(nn.Dense(self.dense_features, kernel_init=init)(x), self.negative_slope)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return _activation(nn.Dense(self.latent_dim, kernel_init=init)(x), self.negative_slope)


class OneClassNet(nn.Module):
    """Backbone + classification head (one logit) + distance head (used only in training).

    `__call__` returns `(logit [B], z [B, latent])`; the logit's sigmoid is the probability of
    "atypical", our anomaly score. `distance_logit(z_i, z_j)` returns `[B]`, whose sigmoid is
    `dist(z_i, z_j)` in (0, 1).

    `distance` picks the distance head's input: `difference` is the paper's `z_i - z_j`;
    `absolute` is `|z_i - z_j|`, symmetric in its arguments; `squared` is `(z_i - z_j)**2`.
    `num_transformations` > 0 adds the teacher's head (`transformation_logits`, `[B, K]`): the
    student of the transformation teacher keeps its task as a phase of the iteration.
    """

    backbone: nn.Module
    distance: str = "difference"
    num_transformations: int = 0

    def setup(self):
        self.classifier = nn.Dense(1)
        self.distance_head = nn.Dense(1)
        if self.num_transformations:
            self.transformation_head = nn.Dense(self.num_transformations)

    def transformation_logits(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.transformation_head(self.backbone(x, train))

    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        z = self.backbone(x, train)
        logit = self.classifier(z)[:, 0]
        return logit, z

    def distance_logit(self, z_i: jax.Array, z_j: jax.Array) -> jax.Array:
        delta = z_i - z_j
        if self.distance == "absolute":
            delta = jnp.abs(delta)
        elif self.distance == "squared":
            delta = jnp.square(delta)
        return self.distance_head(delta)[:, 0]

    def init_all(self, x: jax.Array) -> jax.Array:
        """Touches every submodule so that `init` creates all parameters."""
        logit, z = self(x, train=False)
        if self.num_transformations:
            logit = logit + self.transformation_head(z)[:, 0]
        return logit + self.distance_logit(z, z)


class AutoEncoder(nn.Module):
    """The split autoencoder: an AlexNet-like encoder whose dense layers are replaced by one
    convolution onto a `latent_channels` bottleneck, and a mirrored decoder of transposed
    convolutions. Returns the reconstruction, same shape as the input, in (0, 1) (with
    `logits=True`, before its sigmoid).

    `global_bottleneck`: the convolution covers the whole final `H/8 x W/8` map, so the code is
    `1 x 1 x latent_channels`; with False it is a 1x1 convolution and the code keeps the map.
    `negative_slope`: of the leaky ReLUs (0 = ReLU, which can die and leave a constant output).
    """

    conv_features: Sequence[int] = (16, 32, 48, 48, 32)
    latent_channels: int = 32
    global_bottleneck: bool = True
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, logits: bool = False) -> jax.Array:
        h, w, c = x.shape[1:]
        act = lambda v: _activation(v, self.negative_slope)  # noqa: E731
        y = _pad_to_multiple(x, 8)
        c1, c2, c3, c4, c5 = self.conv_features
        y = max_pool_2x2(act(nn.Conv(c1, (5, 5))(y)))
        y = max_pool_2x2(act(nn.Conv(c2, (5, 5))(y)))
        y = act(nn.Conv(c3, (3, 3))(y))
        y = act(nn.Conv(c4, (3, 3))(y))
        y = max_pool_2x2(act(nn.Conv(c5, (3, 3))(y)))
        grid = y.shape[1:3] if self.global_bottleneck else (1, 1)  # [H/8, W/8] or 1x1
        # A linear code: a ReLU here can switch every code unit off for good, and the decoder
        # then returns one constant image whatever the input (seen on MNIST digits 2-9).
        y = nn.Conv(self.latent_channels, grid, padding="VALID")(y)
        y = act(nn.ConvTranspose(c5, grid, padding="VALID")(y))
        for features in (c3, c2, c1):
            y = act(nn.ConvTranspose(features, (3, 3), strides=(2, 2))(y))
        y = nn.Conv(c, (3, 3))(y)
        top, left = (y.shape[1] - h) // 2, (y.shape[2] - w) // 2
        y = y[:, top:top + h, left:left + w]
        return y if logits else nn.sigmoid(y)


def make_backbone(name: str, **kwargs) -> nn.Module:
    """Returns the backbone called `name` ('alexnet' or 'icsnet')."""
    backbones = {"alexnet": AlexNet, "icsnet": ICSNet}
    if name not in backbones:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(backbones)}")
    return backbones[name](**kwargs)
