"""The ICS training step: three phases, one compiled step, one optimizer state per phase.

Step `t` runs phase `t % 3`: closeness on typical pairs, the intra-class binary loss on a
half-typical, half-atypical batch, dispersion on atypical pairs. The baselines reuse the step with
other cycles: `nn_w_ics` the binary phase alone, `naive_nn` the `normal_only` phase (the binary
loss with every training image labelled normal, no split). `lax.switch` picks the phase from
the step index, which is never batched (under `vmap` over seeds only the state is), so the switch
stays a real branch. Randomness is `fold_in(seed_key, t)`: nothing random lives in the state.
"""

from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ics_jax import losses, placement

PHASES = ("closeness", "intra_class", "dispersion")
NORMAL_ONLY = "normal_only"


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


def _distinct_pairs(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Returns two `[batch_size]` index vectors into `n` items with `i[k] != j[k]`."""
    key_i, key_j = jax.random.split(key)
    i = jax.random.randint(key_i, (batch_size,), 0, n)
    j = (i + jax.random.randint(key_j, (batch_size,), 1, n)) % n
    return i, j


def make_train_step(net: nn.Module, tx: optax.GradientTransformation, *, batch_size: int,
                    weight_decay: float, phases: tuple[str, ...] = PHASES) -> Callable:
    """Returns `step(state, data, seed_key, t, phase=None) -> (state, metrics)`, pure and
    jittable; `metrics` is `[2]`: the phase's loss and its gradient's global norm.

    `phases` is the cycle of phases (`nn_w_ics` uses `('intra_class',)`, `naive_nn`
    `('normal_only',)`; the state must come from `init_state` with the same `phases`). With
    `phase=None` the step runs phase `t % len(phases)` through `lax.switch`; a static int
    `phase` (which must equal `t % len(phases)`) traces that phase alone.
    """
    def forward(params, batch_stats, images, key):
        images = placement.split_batch(images)  # over the seed's devices, if it has several
        variables = {"params": params}
        if jax.tree.leaves(batch_stats):  # a static property of the state's structure
            variables["batch_stats"] = batch_stats
            (logits, z), updated = net.apply(variables, images, train=True,
                                             rngs={"dropout": key}, mutable=["batch_stats"])
            return logits, z, updated["batch_stats"]
        logits, z = net.apply(variables, images, train=True, rngs={"dropout": key})
        return logits, z, batch_stats

    def pair_loss(loss_fn, images):
        def fn(params, batch_stats, key):
            half = images.shape[0] // 2
            _, z, batch_stats = forward(params, batch_stats, images, key)
            d = net.apply({"params": params}, z[:half], z[half:], method=net.distance_logit)
            return loss_fn(d), batch_stats
        return fn

    def phase_loss(phase, data, key):
        """Returns `loss(params, batch_stats, key) -> (loss, batch_stats)` for one phase."""
        key_a, key_b = jax.random.split(key)
        if phase == NORMAL_ONLY:  # `typical` holds every training image here
            images = data.typical[jax.random.randint(key_a, (batch_size,), 0,
                                                     data.typical.shape[0])]

            def fn(params, batch_stats, key):
                logits, _, batch_stats = forward(params, batch_stats, images, key)
                return losses.intra_class_loss(logits, jnp.zeros(batch_size, bool)), batch_stats
            return fn
        if phase == "intra_class":
            half = batch_size // 2
            t = jax.random.randint(key_a, (half,), 0, data.typical.shape[0])
            a = jax.random.randint(key_b, (batch_size - half,), 0, data.atypical.shape[0])
            images = jnp.concatenate([data.typical[t], data.atypical[a]])
            labels = jnp.arange(batch_size) >= half

            def fn(params, batch_stats, key):
                logits, _, batch_stats = forward(params, batch_stats, images, key)
                return losses.intra_class_loss(logits, labels), batch_stats
            return fn
        pool = data.typical if phase == "closeness" else data.atypical
        i, j = _distinct_pairs(key_a, pool.shape[0], batch_size)
        images = jnp.concatenate([pool[i], pool[j]])
        loss_fn = losses.closeness_loss if phase == "closeness" else losses.dispersion_loss
        return pair_loss(loss_fn, images)

    def make_branch(index, phase):
        def branch(state, data, key):
            loss_fn = phase_loss(phase, data, jax.random.fold_in(key, 0))

            def total(params):
                loss, batch_stats = loss_fn(params, state.batch_stats, jax.random.fold_in(key, 1))
                return loss + weight_decay * losses.conv_kernel_l2(params), (loss, batch_stats)

            grads, (loss, batch_stats) = jax.grad(total, has_aux=True)(state.params)
            updates, opt_state = tx.update(grads, state.opt_states[index], state.params)
            opt_states = tuple(opt_state if k == index else s
                               for k, s in enumerate(state.opt_states))
            metrics = jnp.stack([loss, optax.tree.norm(grads)])  # [loss, gradient norm]
            return TrainState(params=optax.apply_updates(state.params, updates),
                              batch_stats=batch_stats, opt_states=opt_states), metrics
        return branch

    def step(state: TrainState, data: SplitData, seed_key: jax.Array, t: jax.Array,
             phase: int | None = None):
        key = jax.random.fold_in(seed_key, t)
        branches = [make_branch(i, p) for i, p in enumerate(phases)]
        if phase is not None:
            return branches[phase](state, data, key)
        if len(branches) == 1:
            return branches[0](state, data, key)
        return jax.lax.switch(t % len(phases), branches, state, data, key)

    return step


def make_predict(net: nn.Module) -> Callable:
    """Returns `predict(state, images [B, H, W, C]) -> anomaly logits [B]` (eval mode)."""

    def predict(state: TrainState, images: jax.Array) -> jax.Array:
        variables = {"params": state.params}
        if jax.tree.leaves(state.batch_stats):
            variables["batch_stats"] = state.batch_stats
        return net.apply(variables, images, train=False)[0]

    return predict
