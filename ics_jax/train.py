"""One ICS iteration: the method's phases in a fixed order, one optimizer step and state each.

An ICS iteration runs closeness on typical pairs, the intra-class binary loss on a
half-typical, half-atypical batch, then dispersion on atypical pairs (eqs. 2-4 of the paper).
The baselines reuse it with other cycles: `nn_w_ics` the binary phase alone, `naive_nn` the
`normal_only` phase (the binary loss with every training image labelled normal, no split); the
authors' released code summed closeness and dispersion into one step (`JOINT_PHASES`).

The order is fixed, so each phase is traced as plain code: there is no `lax.switch` on a step
index (XLA's CPU backend ran a convolution's gradient inside a conditional 9x slower, and on an
accelerator the branch buys nothing once a program holds whole iterations). Randomness is
`fold_in(fold_in(seed_key, iteration), phase)`: nothing random lives in the state.
"""

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ics_jax import losses

PHASES = ("closeness", "intra_class", "dispersion")
# The authors' released schedule: closeness and dispersion summed into one step, then the
# binary step.
JOINT_PHASES = ("pairs", "intra_class")
NORMAL_ONLY = "normal_only"
AUGMENTATIONS = ("none", "shift", "shift_flip")
SHIFT = 2  # pixels, at most, in each direction


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; `opt_states` holds one optax state per phase of
    the cycle, in its order."""

    params: Any
    batch_stats: Any
    opt_states: tuple


@flax.struct.dataclass
class SplitData:
    """Device-resident training images: `typical [Nt, H, W, C]`, `atypical [Na, H, W, C]`."""

    typical: jax.Array
    atypical: jax.Array


def make_optimizer(learning_rate: float, b1: float = 0.9) -> optax.GradientTransformation:
    """Adam; the paper does not give its optimizer, the authors' code uses Adam(3e-4, b1=0.5)."""
    return optax.adam(learning_rate, b1=b1)


def init_state(net: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, ...], phases: tuple[str, ...] = PHASES) -> TrainState:
    """Returns a fresh `TrainState` for one seed; `image_shape` is `(H, W, C)`."""
    variables = net.init(key, jnp.zeros((2,) + tuple(image_shape)), method=net.init_all)
    params = variables["params"]
    return TrainState(params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_states=tuple(tx.init(params) for _ in phases))


def distinct_pairs(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Returns two `[batch_size]` index vectors into `n` items with `i[k] != j[k]`."""
    key_i, key_j = jax.random.split(key)
    i = jax.random.randint(key_i, (batch_size,), 0, n)
    j = (i + jax.random.randint(key_j, (batch_size,), 1, n)) % n
    return i, j


def phase_batch(phase: str, data: SplitData, key: jax.Array,
                batch_size: int) -> tuple[jax.Array, jax.Array | None]:
    """Returns a phase's images and labels (1 = atypical; None for the pair phases, whose
    `[2 * batch_size]` images are the first and second members of `batch_size` pairs)."""
    if phase == NORMAL_ONLY:  # `typical` holds every training image here
        i = jax.random.randint(key, (batch_size,), 0, data.typical.shape[0])
        return data.typical[i], jnp.zeros(batch_size, bool)
    if phase == "intra_class":
        key_t, key_a = jax.random.split(key)
        half = batch_size // 2
        t = jax.random.randint(key_t, (half,), 0, data.typical.shape[0])
        a = jax.random.randint(key_a, (batch_size - half,), 0, data.atypical.shape[0])
        return (jnp.concatenate([data.typical[t], data.atypical[a]]),
                jnp.arange(batch_size) >= half)
    if phase == "pairs":  # typical pairs, then atypical pairs: [4 * batch_size]
        key_t, key_a = jax.random.split(key)
        return jnp.concatenate([phase_batch("closeness", data, key_t, batch_size)[0],
                                phase_batch("dispersion", data, key_a, batch_size)[0]]), None
    pool = data.typical if phase == "closeness" else data.atypical
    i, j = distinct_pairs(key, pool.shape[0], batch_size)
    return jnp.concatenate([pool[i], pool[j]]), None


def augment(images: jax.Array, key: jax.Array, kind: str) -> jax.Array:
    """Returns `images [B, H, W, C]` each shifted by up to `SHIFT` pixels in each direction
    (edge pixels repeated), and for `shift_flip` mirrored left-right with probability 1/2;
    `none` returns them as they are."""
    if kind == "none":
        return images
    b, h, w, _ = images.shape
    key_shift, key_flip = jax.random.split(key)
    padded = jnp.pad(images, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode="edge")
    offsets = jax.random.randint(key_shift, (b, 2), 0, 2 * SHIFT + 1)
    images = jax.vmap(lambda x, o: jax.lax.dynamic_slice(x, (o[0], o[1], 0),
                                                         (h, w, x.shape[-1])))(padded, offsets)
    if kind == "shift_flip":
        flip = jax.random.bernoulli(key_flip, 0.5, (b, 1, 1, 1))
        images = jnp.where(flip, images[:, :, ::-1], images)
    return images


def make_iteration(net: nn.Module, tx: optax.GradientTransformation, *, batch_size: int,
                   weight_decay: float, phases: tuple[str, ...] = PHASES,
                   dispersion_weight: float = 1.0, augmentation: str = "none") -> Callable:
    """Returns `iteration(state, data, seed_key, it) -> (state, metrics [P, 2])`, pure and
    jittable: one optimizer step per phase of `phases`, in order; each metrics row is the
    phase's loss and its gradient's global norm. The state must come from `init_state` with
    the same `phases`. `dispersion_weight` weighs dispersion against closeness in the joint
    `pairs` phase (a phase of its own has its own Adam state, which no constant weight
    changes); `augmentation` is applied to every phase's images (`augment`)."""

    def phase_loss(phase, params, batch_stats, images, labels, key):
        variables = {"params": params}
        if jax.tree.leaves(batch_stats):  # a static property of the state's structure
            variables["batch_stats"] = batch_stats
            (logits, z), updated = net.apply(variables, images, train=True,
                                             rngs={"dropout": key}, mutable=["batch_stats"])
            batch_stats = updated["batch_stats"]
        else:
            logits, z = net.apply(variables, images, train=True, rngs={"dropout": key})
        if labels is not None:
            return losses.intra_class_loss(logits, labels), batch_stats
        half = z.shape[0] // 2  # first members, then second members (per pair set)
        if phase == "pairs":
            typical, atypical = z[:half], z[half:]
            d_t = net.apply({"params": params}, typical[:batch_size], typical[batch_size:],
                            method=net.distance_logit)
            d_a = net.apply({"params": params}, atypical[:batch_size], atypical[batch_size:],
                            method=net.distance_logit)
            return (losses.closeness_loss(d_t) + dispersion_weight * losses.dispersion_loss(d_a),
                    batch_stats)
        d = net.apply({"params": params}, z[:half], z[half:], method=net.distance_logit)
        pair_loss = losses.closeness_loss if phase == "closeness" else losses.dispersion_loss
        return pair_loss(d), batch_stats

    def phase_step(index, phase, state, data, key):
        batch_key, dropout_key, augment_key = jax.random.split(key, 3)
        images, labels = phase_batch(phase, data, batch_key, batch_size)
        images = augment(images, augment_key, augmentation)

        def total(params):
            loss, stats = phase_loss(phase, params, state.batch_stats, images, labels,
                                     dropout_key)
            return loss + weight_decay * losses.conv_kernel_l2(params), (loss, stats)

        grads, (loss, batch_stats) = jax.grad(total, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_states[index], state.params)
        state = TrainState(params=optax.apply_updates(state.params, updates),
                           batch_stats=batch_stats,
                           opt_states=tuple(opt_state if k == index else s
                                            for k, s in enumerate(state.opt_states)))
        return state, jnp.stack([loss, optax.tree.norm(grads)])

    def iteration(state: TrainState, data: SplitData, seed_key: jax.Array, it: jax.Array):
        key = jax.random.fold_in(seed_key, it)
        metrics = []
        for index, phase in enumerate(phases):
            state, m = phase_step(index, phase, state, data, jax.random.fold_in(key, index))
            metrics.append(m)
        return state, jnp.stack(metrics)

    return iteration


def make_predict(net: nn.Module) -> Callable:
    """Returns `predict(state, images [B, H, W, C]) -> anomaly logits [B]` (eval mode)."""

    def predict(state: TrainState, images: jax.Array) -> jax.Array:
        variables = {"params": state.params}
        if jax.tree.leaves(state.batch_stats):
            variables["batch_stats"] = state.batch_stats
        return net.apply(variables, images, train=False)[0]

    return predict
