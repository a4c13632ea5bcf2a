"""The three ICS losses, equations (2)-(4) of the paper, written on logits.

`dist = sigmoid(d)` for a distance logit `d`, so `log(dist) = log_sigmoid(d)` and
`log(1 - dist) = log_sigmoid(-d)`: no `log(1 - sigmoid(d))`, which is -inf once `sigmoid(d)`
rounds to 1 in float32 (`d` above about 17).
"""

import jax
import jax.numpy as jnp


def closeness_loss(distance_logits: jax.Array) -> jax.Array:
    """Eq. (2): `-mean log(1 - dist)` over typical pairs; `[B]` logits -> scalar."""
    return -jnp.mean(jax.nn.log_sigmoid(-distance_logits))


def dispersion_loss(distance_logits: jax.Array) -> jax.Array:
    """Eq. (4): `-mean log(dist)` over atypical pairs; `[B]` logits -> scalar."""
    return -jnp.mean(jax.nn.log_sigmoid(distance_logits))


def intra_class_loss(logits: jax.Array, atypical: jax.Array) -> jax.Array:
    """Eq. (3): binary cross-entropy of `[B]` logits against `[B]` labels (1 = atypical)."""
    atypical = atypical.astype(logits.dtype)
    return -jnp.mean(atypical * jax.nn.log_sigmoid(logits)
                     + (1.0 - atypical) * jax.nn.log_sigmoid(-logits))


def ranking_loss(logits: jax.Array, ranks: jax.Array) -> jax.Array:
    """The pairwise logistic (RankNet) loss of `[2B]` anomaly logits against `[2B]` target
    ranks: the first `B` are paired with the last `B`, and each pair's logit difference should
    have the sign of its rank difference (pairs of equal rank count for nothing)."""
    first, second = jnp.split(logits, 2)
    order = jnp.sign(jnp.subtract(*jnp.split(ranks, 2)))
    return jnp.mean(jnp.abs(order) * jax.nn.softplus(-order * (first - second)))
