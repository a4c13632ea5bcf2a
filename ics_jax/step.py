"""One way to train a network: `make_step` turns named losses and an optax transformation into
a pure update step, and `fit` runs one network's (the seeded ones run through
`trainer.train_states`; both in `seeds.runner`'s loop).

Every network here trains through it: the split autoencoder, Deep SVDD, the transformation
teacher and the ICS classifier (whose step runs its three phases in order). A loss is
`loss_fn(params, batch_stats, data, key) -> (loss, batch_stats)`: it draws its own batch from
`data` with `key`, so the step holds no Python state and compiles once. Weight decay is part of
the optax transformation (`with_weight_decay`, over a mask), never of the loss, so `loss` in the
metrics is the objective alone.
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import numpy as np
import optax

from ics_jax import seeds

LossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, Any]]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; `opt_states` holds one optax state per loss of
    the step, in its order."""

    params: Any
    batch_stats: Any
    opt_states: tuple


def init_state(tx: optax.GradientTransformation, variables: Mapping,
               num_losses: int = 1) -> TrainState:
    """Returns a fresh `TrainState` from a module's `variables` (`params`, and `batch_stats`
    where it has batch norm), with one optimizer state per loss."""
    params = variables["params"]
    return TrainState(params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_states=tuple(tx.init(params) for _ in range(num_losses)))


def conv_kernels(params) -> Any:
    """The weight-decay mask of the paper's L2 term: True for convolution kernels (rank 4)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf.ndim == 4 and getattr(path[-1], "key", None) == "kernel", params)


def every_weight(params) -> Any:
    """The weight-decay mask that decays every parameter."""
    return jax.tree.map(lambda _: True, params)


def with_weight_decay(tx: optax.GradientTransformation, weight_decay: float,
                      mask: Callable = conv_kernels) -> optax.GradientTransformation:
    """Returns `tx` fed the gradient of `loss + weight_decay * sum(w ** 2)` over the `mask`ed
    parameters (the decay's gradient `2 * weight_decay * w` is added before `tx`); `tx` itself
    when `weight_decay` is 0."""
    if not weight_decay:
        return tx
    return optax.chain(optax.add_decayed_weights(2.0 * weight_decay, mask), tx)


def make_step(losses: Mapping[str, LossFn], tx: optax.GradientTransformation) -> Callable:
    """Returns `step(state, data, key, t) -> (state, metrics)`, pure and jittable: one update per
    loss of `losses`, in order, each with its own optimizer state.

    Step `t` is keyed `fold_in(key, t)` (nothing random lives in the state); with several
    losses, loss `i` gets `fold_in` of that and `i`. `metrics` maps `loss/<name>` and
    `grad_norm/<name>` to scalars (the gradient of the loss alone, before decay).
    """
    names = tuple(losses)

    def step(state: TrainState, data, key: jax.Array, t: jax.Array):
        key = jax.random.fold_in(key, t)
        metrics = {}
        for index, name in enumerate(names):
            phase_key = key if len(names) == 1 else jax.random.fold_in(key, index)
            (loss, batch_stats), grads = jax.value_and_grad(losses[name], has_aux=True)(
                state.params, state.batch_stats, data, phase_key)
            updates, opt_state = tx.update(grads, state.opt_states[index], state.params)
            state = TrainState(params=optax.apply_updates(state.params, updates),
                               batch_stats=batch_stats,
                               opt_states=tuple(opt_state if k == index else s
                                                for k, s in enumerate(state.opt_states)))
            metrics[f"loss/{name}"] = loss
            metrics[f"grad_norm/{name}"] = optax.tree.norm(grads)
        return state, metrics

    return step


class NonFiniteError(FloatingPointError):
    """A loss became NaN or Inf; the message names the network, phase, iteration and seed."""


def check_finite(metrics: dict, first: int, ids: list[int], network: str, *,
                 checkpointed: bool = False) -> None:
    """Raises NonFiniteError for the earliest non-finite value in `metrics` (each `[n, S]`) of
    the `n` iterations from `first` of `network` (a loss before a gradient norm)."""
    bad = [(*np.argwhere(~np.isfinite(values))[0], not name.startswith("loss/"), name)
           for name, values in metrics.items() if not np.isfinite(values).all()]
    if bad:
        it, seed, _, name = min(bad)
        kind, phase = name.split("/")
        raise NonFiniteError(
            f"the {network}'s {phase} {kind.replace('grad_norm', 'gradient norm')} is "
            f"non-finite at iteration {first + int(it) + 1} of seed {ids[seed]}"
            + ("; the last good checkpoint is kept" if checkpointed else ""))


def fit(step: Callable, state: TrainState, data, key: jax.Array, num_steps: int, *,
        network: str, progress: Callable[[int, dict], None] | None = None,
        progress_every: int = 50):
    """Runs `num_steps` of `step` from step 0 for one network keyed `key` (the split's
    networks, Deep SVDD's) in the loop every network trains in (`seeds.runner`'s, the seeded
    ones through `trainer.train_states`); returns `(state, metrics)`, each metric
    `[num_steps]` on the host. A non-finite loss stops it with NonFiniteError naming `network`.

    `progress(t, metrics)` follows the first step (a run shows within seconds that it is
    alive), every `progress_every` steps and the last, with that step's metrics as floats."""
    history = []

    def report(end, _, metrics):
        metrics = jax.device_get(metrics)  # each [n, 1]
        check_finite(metrics, end - len(next(iter(metrics.values()))), [0], network)
        history.append(metrics)
        if progress is not None:
            progress(end, {k: float(v[-1, 0]) for k, v in metrics.items()})

    states = seeds.runner("loop")(step, seeds.stack([state]), data, key[None], 0, num_steps,
                                  report_every=progress_every, on_report=report)
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs)[:, 0], *history) if history else {}
    return seeds.unstack(states, 1)[0], stacked
