"""The classifier of a config, trained for every seed at once: `make_trainer(config)` builds it,
`train` runs it (resuming from Orbax checkpoints), `test_scores` scores images with it.

ICS and its two network baselines differ only in the phases of an iteration
(`METHOD_PHASES`); everything else here is shared by `run_experiment`, the estimator and the
benchmark.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ics_jax import checkpoint, evaluate, models, seeds, stopping, train, xla
from ics_jax import split as split_lib

METHOD_PHASES = {"ics": train.PHASES, "nn_w_ics": ("intra_class",),
                 "naive_nn": (train.NORMAL_ONLY,)}


def phases(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Returns the phases of an iteration of `config.method` (ICS: by `config.schedule`)."""
    if config.method == "ics" and config.schedule == "joint":
        return train.JOINT_PHASES
    return METHOD_PHASES[config.method]


class NonFiniteError(FloatingPointError):
    """A loss became NaN or Inf; the message names the phase, iteration and seed."""


def build_network(config: ml_collections.ConfigDict) -> models.OneClassNet:
    """Returns the classifier network that `config` describes."""
    kwargs = {"latent_dim": config.latent_dim, "dense_features": config.dense_features}
    if config.dropout is not None:  # else the backbone's own: alexnet 0, icsnet 0.5
        kwargs["dropout"] = config.dropout
    if config.backbone == "alexnet":
        kwargs.update(batch_norm=config.batch_norm, conv_features=tuple(config.conv_features))
    return models.OneClassNet(models.make_backbone(config.backbone, **kwargs),
                              distance=config.distance)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A config's network, optimizer, phases and compiled-to-be iteration."""

    net: models.OneClassNet
    tx: optax.GradientTransformation
    phases: tuple[str, ...]
    iteration: Callable  # (state, data, seed_key, it) -> (state, metrics [P, 2])

    def init_states(self, key: jax.Array, num_seeds: int, image_shape: tuple):
        """Returns fresh stacked states `[S, ...]`, seed i initialised from `split(key)[i]`."""
        return seeds.stack([train.init_state(self.net, self.tx, k, image_shape, self.phases)
                            for k in jax.random.split(key, num_seeds)])


def make_trainer(config: ml_collections.ConfigDict) -> Trainer:
    """Returns the `Trainer` of `config.method` (one of `METHOD_PHASES`)."""
    net = build_network(config)
    tx = train.make_optimizer(config.learning_rate, config.adam_b1)
    cycle = phases(config)
    iteration = train.make_iteration(net, tx, batch_size=config.batch_size,
                                     weight_decay=config.weight_decay, phases=cycle,
                                     dispersion_weight=config.dispersion_weight,
                                     augmentation=config.augment)
    return Trainer(net, tx, cycle, iteration)


def split_data(images: np.ndarray, split: split_lib.Split | None) -> train.SplitData:
    """Returns the typical and atypical images on the device; without a split (`naive_nn`)
    both are every image."""
    if split is None:
        everything = jnp.asarray(images)
        return train.SplitData(typical=everything, atypical=everything)
    return train.SplitData(typical=jnp.asarray(images[split.typical]),
                           atypical=jnp.asarray(images[split.atypical]))


def stop_rule(trainer: Trainer, config: ml_collections.ConfigDict, images: np.ndarray,
              split: split_lib.Split, split_key: jax.Array, directory: str | None = None):
    """Returns `(training split, BestReport or None)`: with `config.validation_fraction`, the
    split less its held-out part (drawn by `fold_in(split_key, 1)`) and the stop that scores
    that part after each report; else `split` and None."""
    if not config.validation_fraction:
        return split, None
    training, held = stopping.hold_out(split, config.validation_fraction,
                                       jax.random.fold_in(split_key, 1))
    typical, atypical = images[held.typical], images[held.atypical]

    def score(states):
        return test_scores(trainer, states, typical), test_scores(trainer, states, atypical)

    return training, stopping.BestReport(score, directory)


def check_finite(metrics: np.ndarray, first: int, phases: tuple, seed_ids: list) -> None:
    """Raises NonFiniteError for the first non-finite loss or gradient norm in
    `metrics [iterations, S, P, 2]` of the iterations from `first`."""
    bad = np.argwhere(~np.isfinite(metrics))
    if bad.size:
        it, seed, phase, which = bad[0]
        raise NonFiniteError(
            f"non-finite {phases[phase]} {('loss', 'gradient norm')[which]} at iteration "
            f"{first + int(it) + 1} of seed {seed_ids[seed]}; the last good checkpoint is kept")


def train_states(trainer: Trainer, config: ml_collections.ConfigDict, data: train.SplitData,
                 image_shape: tuple, init_key: jax.Array, train_key: jax.Array, *,
                 checkpoint_dir: str | None = None,
                 on_report: Callable[[int, dict, object], None] | None = None,
                 stop: stopping.BestReport | None = None):
    """Trains `config.num_seeds` networks for `config.num_iterations` iterations; returns their
    stacked states (with `stop`, each seed's best by its held-out loss). With `checkpoint_dir`,
    resumes from its newest readable checkpoint and saves every `config.checkpoint_every`
    iterations and at the end. After each report (every `config.log_every` iterations) calls
    `on_report(iteration, losses, states)` with the mean loss of each phase since the last
    report (and the seeds' mean `held_out` loss with `stop`)."""
    seed_ids = [config.seed + i for i in range(config.num_seeds)]
    states = trainer.init_states(init_key, config.num_seeds, image_shape)
    mngr = None
    first = 0
    if checkpoint_dir is not None:
        mngr = checkpoint.manager(checkpoint_dir, save_every=config.checkpoint_every,
                                  keep=config.keep_checkpoints)
        first, states = checkpoint.restore_latest(mngr, states)
    if stop is not None:
        stop.resume(states)

    def report(end, states_now, metrics):
        metrics = np.asarray(metrics)  # [n, S, P, 2]: one copy per report
        check_finite(metrics, end - metrics.shape[0], trainer.phases, seed_ids)
        losses = {p: float(metrics[:, :, i, 0].mean()) for i, p in enumerate(trainer.phases)}
        if stop is not None:
            losses["held_out"] = float(stop.update(end, states_now).mean())
        if mngr is not None:
            checkpoint.save(mngr, end, states_now, force=end == config.num_iterations)
        if on_report is not None:
            on_report(end, losses, states_now)

    seed_keys = jax.random.split(train_key, config.num_seeds)
    if first < config.num_iterations:
        states = seeds.run(trainer.iteration, states, data, seed_keys, first,
                           config.num_iterations - first, report_every=config.log_every,
                           on_report=report)
    if mngr is not None:
        mngr.wait_until_finished()
    return states if stop is None else stop.finish()


def test_scores(trainer: Trainer, states, images: np.ndarray) -> list[np.ndarray]:
    """Returns one `[M]` array of anomaly logits of `images` per seed of stacked `states`
    (as `train_states` returns them; each seed's parameters go to the device once)."""
    predict = _predict_program(trainer.net)
    num_seeds = jax.tree.leaves(states)[0].shape[0]
    per_seed = [jax.device_put(s) for s in seeds.unstack(jax.device_get(states), num_seeds)]
    return [evaluate.batched_apply(lambda b, s=s: predict(s, b), images) for s in per_seed]


@functools.cache
def _predict_program(net: models.OneClassNet):
    return xla.jit(train.make_predict(net))
