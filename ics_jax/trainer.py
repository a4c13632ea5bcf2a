"""The network of a config, trained for every seed at once: `make_trainer(config)` builds it
(the ICS classifier, its two network baselines, or the transformation teacher),
`train_states` runs it (resuming from Orbax checkpoints, stopping on a non-finite loss),
`test_scores` scores images with it.

ICS and its two network baselines differ only in the phases of an iteration
(`methods.METHODS`); the teacher is one more network with one phase. Everything else here is
shared by `run_experiment`, the estimators and the benchmark.
"""

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ics_jax import checkpoint, evaluate, methods, models, seeds, stopping, train, xla
from ics_jax import split as split_lib
from ics_jax import step as step_lib
from ics_jax import teacher as teacher_lib
from ics_jax.step import NonFiniteError  # noqa: F401  (raised by `train_states`)


def phases(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Returns the phases of an iteration of `config.method` (ICS: by `config.schedule`)."""
    method = methods.METHODS[config.method]
    cycle = method.phases
    if method.scheduled and config.schedule == "joint":
        return train.JOINT_PHASES
    if method.scheduled and config.targets != "cut":
        cycle = train.RANK_PHASES if config.targets == "rank" else train.BOTH_PHASES
    # The student keeps the teacher's task as a last phase, on every normal image.
    return cycle + (("transformation",) if config.student else ())


def build_network(config: ml_collections.ConfigDict) -> models.OneClassNet:
    """Returns the classifier network that `config` describes; with `config.student`, the
    teacher's network (`teacher.TeacherNet`'s backbone and head) with the classifier's heads."""
    if config.student:
        backbone = models.AlexNet(conv_features=tuple(config.teacher_conv_features),
                                  dense_features=config.teacher_dense_features, batch_norm=True,
                                  dropout=config.dropout or 0.0)
        return models.OneClassNet(backbone, distance=config.distance, num_transformations=(
            teacher_lib.TRANSFORMATIONS[config.teacher_transformations]))
    kwargs = {"latent_dim": config.latent_dim, "dense_features": config.dense_features}
    if config.dropout is not None:  # else the backbone's own: alexnet 0, icsnet 0.5
        kwargs["dropout"] = config.dropout
    if config.backbone == "alexnet":
        kwargs.update(batch_norm=config.batch_norm, conv_features=tuple(config.conv_features))
    return models.OneClassNet(models.make_backbone(config.backbone, **kwargs),
                              distance=config.distance)


def seed_ids(config: ml_collections.ConfigDict) -> list[int]:
    """Returns the seeds of a run: `config.seed`, `config.seed + 1`, ... (`config.num_seeds`)."""
    return list(range(config.seed, config.seed + config.num_seeds))


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """Returns seed `seed`'s `(init, train)` keys: a function of the seed alone, so seed `s` of
    any run computes what a one-seed run with `seed=s` computes."""
    _, init_key, train_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A config's network, optimizer, phases and update step (`step.make_step`), how long it
    trains, how a seed's state starts and how it scores images."""

    name: str  # "classifier" or "teacher": what a message calls the network
    net: nn.Module
    tx: optax.GradientTransformation
    phases: tuple[str, ...]
    step: Callable  # (state, data, seed_key, iteration) -> (state, metrics)
    num_iterations: int
    init: Callable  # (key, image_shape) -> one seed's TrainState

    def init_states(self, ids: list[int], image_shape: tuple):
        """Returns fresh stacked states `[S, ...]`, one per seed of `ids`."""
        return seeds.stack([self.init(seed_keys(s)[0], image_shape) for s in ids])


def make_trainer(config: ml_collections.ConfigDict, teacher: dict | None = None) -> Trainer:
    """Returns the `Trainer` of `config.method` (one of `methods.TRAINED`); with
    `config.student`, every seed's network starts from `teacher`, the trained teacher's
    variables (`{params, batch_stats}`)."""
    if config.method == "teacher":
        net, tx = teacher_lib.build_teacher(config), teacher_lib.optimizer(config)
        return Trainer("teacher", net, tx, phases(config),
                       teacher_lib.make_step(net, tx, config.batch_size),
                       config.teacher_num_steps,
                       functools.partial(teacher_lib.init_state, net, tx))
    net = build_network(config)
    tx = train.make_optimizer(config.learning_rate, config.adam_b1, config.weight_decay,
                              schedule=config.lr_schedule,
                              num_iterations=config.num_iterations,
                              warmup_iterations=config.warmup_iterations)
    cycle = phases(config)
    step = train.make_iteration(net, tx, batch_size=config.batch_size, phases=cycle,
                                dispersion_weight=config.dispersion_weight,
                                augmentation=config.augment,
                                transformations=config.teacher_transformations)
    init = functools.partial(_classifier_state, net, tx, cycle, teacher)
    return Trainer("classifier", net, tx, cycle, step, config.num_iterations, init)


def _classifier_state(net, tx, cycle, teacher, key, image_shape):
    state = train.init_state(net, tx, key, image_shape, cycle)
    if teacher is None:
        return state
    return train.init_state(net, tx, key, image_shape, cycle, student_of(state, teacher))


def student_of(state, teacher: dict) -> dict:
    """Returns the variables of `state`'s student network with the backbone and transformation
    head of `teacher` (`teacher.TeacherNet`'s variables); the classifier's and distance heads
    keep their fresh values."""
    params = dict(state.params)
    params["backbone"] = teacher["params"]["AlexNet_0"]
    params["transformation_head"] = teacher["params"]["Dense_0"]
    return {"params": params, "batch_stats": {"backbone": teacher["batch_stats"]["AlexNet_0"]}}


def training_data(trainer: Trainer, images: np.ndarray, split: split_lib.Split | None):
    """Returns what `trainer.step` draws its batches from: the normal images for the teacher,
    else `split_data` (with the ranks where a phase reads them)."""
    if trainer.name == "teacher":
        return jnp.asarray(images)
    return split_data(images, split, ranked="rank" in trainer.phases)


def split_data(images: np.ndarray, split: split_lib.Split | None,
               ranked: bool = False) -> train.SplitData:
    """Returns the typical and atypical images on the device, with `ranked` each one's anomaly
    rank by `split.scores` in [0, 1]; without a split (`naive_nn`) both are every image."""
    if split is None:
        everything = jnp.asarray(images)
        return train.SplitData(typical=everything, atypical=everything)
    rank = None
    if ranked:
        order = np.concatenate([split.typical, split.atypical])
        rank = jnp.asarray(evaluate.rank_average(-split.scores)[order], jnp.float32)
    return train.SplitData(typical=jnp.asarray(images[split.typical]),
                           atypical=jnp.asarray(images[split.atypical]), rank=rank)


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


def train_states(trainer: Trainer, config: ml_collections.ConfigDict, data: train.SplitData,
                 image_shape: tuple, *, checkpoint_dir: str | None = None,
                 on_report: Callable[[int, dict, object], None] | None = None,
                 stop: stopping.BestReport | None = None):
    """Trains one network per seed of `seed_ids(config)` for `trainer.num_iterations`
    iterations; returns their stacked states (with `stop`, each seed's best by its held-out
    loss). With `checkpoint_dir`, resumes from its newest readable checkpoint and saves every
    `config.checkpoint_every` iterations and at the end. After each report (every
    `config.log_every` iterations) calls `on_report(iteration, metrics, states)`: each metric of
    the step (`loss/<phase>`, `grad_norm/<phase>`) averaged over the seeds and the iterations
    since the last report, and with `stop` the seeds' mean `loss/held_out`."""
    ids = seed_ids(config)
    states = trainer.init_states(ids, image_shape)
    mngr = None
    first = 0
    if checkpoint_dir is not None:
        mngr = checkpoint.manager(checkpoint_dir, save_every=config.checkpoint_every,
                                  keep=config.keep_checkpoints)
        first, states = checkpoint.restore_latest(mngr, states)
    if stop is not None:
        stop.resume(states)

    def report(end, states_now, metrics):
        metrics = jax.device_get(metrics)  # each [n, S]: one copy per report
        step_lib.check_finite(metrics, end - len(next(iter(metrics.values()))), ids, trainer.name,
                              checkpointed=mngr is not None)
        means = {f"{kind}/{phase}": float(np.mean(metrics[f"{kind}/{phase}"]))
                 for kind in ("loss", "grad_norm") for phase in trainer.phases}
        if stop is not None:
            means["loss/held_out"] = float(stop.update(end, states_now).mean())
        if mngr is not None:
            checkpoint.save(mngr, end, states_now, force=end == trainer.num_iterations)
        if on_report is not None:
            on_report(end, means, states_now)

    train_keys = jnp.stack([seed_keys(s)[1] for s in ids])
    if first < trainer.num_iterations:
        states = seeds.runner()(trainer.step, states, data, train_keys, first,
                                trainer.num_iterations - first, report_every=config.log_every,
                                on_report=report)
    if mngr is not None:
        mngr.wait_until_finished()
    return states if stop is None else stop.finish()


def test_scores(trainer: Trainer, states, images: np.ndarray) -> list[np.ndarray]:
    """Returns one `[M]` array of anomaly scores of `images` per seed of stacked `states`
    (as `train_states` returns them; each seed's parameters go to the device once): the
    classifier's anomaly logits, or the teacher's scores."""
    predict = _predict_program(trainer.net)
    num_seeds = jax.tree.leaves(states)[0].shape[0]
    per_seed = [jax.device_put(s) for s in seeds.unstack(jax.device_get(states), num_seeds)]
    return [evaluate.batched_apply(lambda b, s=s: predict(s, b), images) for s in per_seed]


@functools.cache
def _predict_program(net: nn.Module):
    if isinstance(net, teacher_lib.TeacherNet):
        program = teacher_lib.score_program(net)
        return lambda state, batch: program(
            {"params": state.params, "batch_stats": state.batch_stats}, batch)
    return xla.jit(train.make_predict(net))
