"""The transformation teacher: a network trained on the normal images to tell which of a fixed
set of geometric transformations was applied to an image (Golan and El-Yaniv, NeurIPS 2018,
"GEOM"). It learns what an upright normal image looks like, so an image whose transformation it
cannot tell is anomalous. Its score is a detector of its own (method 'teacher') and a typicality
the split can be cut by (`split_by='teacher'`).

Images are float32 `[N, H, W, C]` in [0, 1], square (a quarter turn of a non-square image
changes its shape), any size and channel count the classifier's backbone takes.
"""

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ics_jax import evaluate, models, xla
from ics_jax import step as step_lib

# The transformation sets, by name: how many the teacher tells apart. Transformation `t` flips
# the image left-right if `t >= 4`, then turns it `t % 4` quarter turns counterclockwise.
# 'rotate_mirrored' is the 4 turns of an image and of its mirror, the mirror not a label: in
# training each image is mirrored or not at random, a score averages the image and its mirror.
TRANSFORMATIONS = {"rotate": 4, "rotate_flip": 8, "rotate_mirrored": 4}


def transform(images: jax.Array, t: int) -> jax.Array:
    """Returns `images` `[B, H, W, C]` under transformation `t` (see `TRANSFORMATIONS`), same
    shape."""
    if t >= 4:
        images = jnp.flip(images, axis=2)
    return jnp.rot90(images, t % 4, axes=(1, 2))


def transformed(images: jax.Array, transformations: str) -> tuple[jax.Array, jax.Array]:
    """Returns `(inputs [K * B, H, W, C], labels [K * B])`: every image of `images` `[B, H, W,
    C]` under each of the `K` transformations of the set named `transformations`, transformation
    major (rows `t * B` to `(t + 1) * B - 1` are `transform(images, t)`, labelled `t`)."""
    check_square(images.shape)
    num = TRANSFORMATIONS[transformations]
    inputs = jnp.concatenate([transform(images, t) for t in range(num)])
    return inputs, jnp.repeat(jnp.arange(num), images.shape[0])


class TeacherNet(nn.Module):
    """The classifier's AlexNet-like backbone with batch norm, then a dense head with one logit
    per transformation of the set `transformations`. Returns logits `[B, K]`."""

    conv_features: Sequence[int] = (16, 32, 48, 48, 32)
    dense_features: int = 256
    transformations: str = "rotate"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        z = models.AlexNet(conv_features=tuple(self.conv_features),
                           dense_features=self.dense_features, batch_norm=True)(x, train)
        return nn.Dense(TRANSFORMATIONS[self.transformations])(z)


def build_teacher(config) -> TeacherNet:
    """Returns the teacher that `config` (its `teacher_*` keys) describes."""
    return TeacherNet(conv_features=tuple(config.teacher_conv_features),
                      dense_features=config.teacher_dense_features,
                      transformations=config.teacher_transformations)


def _log_likelihoods(teacher: TeacherNet, variables, images: jax.Array, train: bool):
    """Returns `(log p [K', B], variables' batch_stats)`: the teacher's log-probability of the
    transformation applied, for each transformation and image of `images` `[B, ...]`; with
    'rotate_mirrored' and not `train`, of the image's and its mirror's (`K' = 2K`)."""
    num_images = images.shape[0]
    if teacher.transformations == "rotate_mirrored" and not train:
        images = jnp.concatenate([images, jnp.flip(images, axis=2)])
    inputs, labels = transformed(images, teacher.transformations)
    if train:
        logits, state = teacher.apply(variables, inputs, train=True, mutable=["batch_stats"])
        batch_stats = state["batch_stats"]
    else:
        logits, batch_stats = teacher.apply(variables, inputs), variables["batch_stats"]
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
    return log_p.reshape(-1, num_images), batch_stats


def mirror_at_random(images: jax.Array, key: jax.Array) -> jax.Array:
    """Returns `images` `[B, H, W, C]`, each mirrored left-right with probability 1/2."""
    mirror = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(mirror[:, None, None, None], jnp.flip(images, axis=2), images)


def make_step(teacher: TeacherNet, tx: optax.GradientTransformation,
              batch_size: int) -> Callable:
    """Returns the teacher's `step(state, images, key, t) -> (state, metrics)`
    (`step.make_step`, one loss named 'transformation'): it draws `batch_size` images of
    `images` `[N, H, W, C]` with `fold_in(key, t)` (with 'rotate_mirrored', mirrors each or
    not) and minimises the cross-entropy of the transformation applied, over all of them under
    every transformation (`K * batch_size` inputs, batch norm over them all)."""

    def transformation(params, batch_stats, data, key):
        batch = data[jax.random.randint(key, (batch_size,), 0, data.shape[0])]
        if teacher.transformations == "rotate_mirrored":
            batch = mirror_at_random(batch, jax.random.fold_in(key, 1))
        log_p, batch_stats = _log_likelihoods(
            teacher, {"params": params, "batch_stats": batch_stats}, batch, train=True)
        return -jnp.mean(log_p), batch_stats

    return step_lib.make_step({"transformation": transformation}, tx)


def init_state(teacher: TeacherNet, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple) -> step_lib.TrainState:
    """Returns the teacher's fresh `TrainState` for images of `image_shape` `(H, W, C)`."""
    return step_lib.init_state(tx, _init(teacher, key, jnp.zeros((1, *image_shape))))


def optimizer(config) -> optax.GradientTransformation:
    """Returns the teacher's Adam at `config.teacher_learning_rate`; with
    `lr_schedule='cosine'`, decayed to 0 over `config.teacher_num_steps` (no warm-up: the
    constant rate needs none)."""
    learning_rate = config.teacher_learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(learning_rate, config.teacher_num_steps)
    return optax.adam(learning_rate)


def train_teacher(images: np.ndarray, key: jax.Array, *, num_steps: int, batch_size: int,
                  tx: optax.GradientTransformation, teacher: TeacherNet | None = None,
                  progress: Callable[[int, float], None] | None = None,
                  progress_every: int = 50) -> tuple[TeacherNet, dict]:
    """Trains `teacher` on `images` `[N, H, W, C]` with `tx` for `num_steps` of `make_step`,
    keyed by `key`; returns `(teacher, variables)`, `variables` = `{params, batch_stats}`.
    `progress(step, loss)` follows the first step, every `progress_every` steps and the last."""
    check_square(images.shape)
    teacher = teacher or TeacherNet()
    init_key, batch_key = jax.random.split(key)
    state = init_state(teacher, tx, init_key, images.shape[1:])
    state, _ = step_lib.fit(
        make_step(teacher, tx, batch_size), state, jnp.asarray(images), batch_key, num_steps,
        network="teacher", progress_every=progress_every, progress=None if progress is None else (
            lambda t, metrics: progress(t, metrics["loss/transformation"])))
    return teacher, {"params": state.params, "batch_stats": state.batch_stats}


def fit_teacher(config, images: np.ndarray, key: jax.Array,
                progress: Callable[[int, float], None] | None = None) -> tuple[TeacherNet, dict]:
    """Returns `train_teacher`'s `(teacher, variables)` for `config`: its `teacher_*` keys,
    `batch_size` normal images a step, `optimizer(config)`."""
    return train_teacher(images, key, num_steps=config.teacher_num_steps,
                         batch_size=config.batch_size, tx=optimizer(config),
                         teacher=build_teacher(config), progress=progress)


@xla.jit(static_argnums=0)
def _init(teacher: TeacherNet, key: jax.Array, x: jax.Array) -> dict:
    return teacher.init(key, x)


@functools.cache
def score_program(teacher: TeacherNet):
    """Returns the compiled `(variables, images [B, ...]) -> [B]` of `teacher_scores`."""
    def scores(variables, batch):
        log_p, _ = _log_likelihoods(teacher, variables, batch, train=False)
        return -jnp.mean(log_p, axis=0)
    return xla.jit(scores)


def teacher_scores(teacher: TeacherNet, variables: dict, images: np.ndarray) -> np.ndarray:
    """Returns `[N]` float32 anomaly scores of `images` `[N, H, W, C]`, higher = more anomalous:
    minus the mean over the transformations of the teacher's log-probability (batch norm's
    running averages) of the transformation applied. Each image's score is its own: a pure
    function of it, computed by one compiled program per teacher and batch shape."""
    check_square(images.shape)
    program = score_program(teacher)
    return evaluate.batched_apply(lambda batch: program(variables, batch), images,
                                  batch_size=256)


def check_square(shape: Sequence[int]) -> None:
    """Raises ValueError unless images of `shape` `[N, H, W, C]` are square."""
    if shape[1] != shape[2]:
        raise ValueError(f"the transformation teacher turns images by quarter turns, which needs "
                         f"square images; these are {shape[1]}x{shape[2]}")
