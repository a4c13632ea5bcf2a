"""Intra-class splitting: the least typical `rho` of the normal class, by the score
`config.split_by` names: 'auto' (the teacher and SSIM, each as far as a label-free check says
it sees: `ics_jax.sight`), 'ssim' (the split autoencoder's, the paper's) or 'teacher'."""

import dataclasses
import functools
import json

import dm_pix
import jax
import numpy as np

from ics_jax import evaluate, outputs, xla
from ics_jax import teacher as teacher_lib
from ics_jax.models import AutoEncoder


@dataclasses.dataclass(frozen=True)
class Split:
    """The split of the normal training images.

    `scores`: `[N]` the typicality it was cut by, higher = more typical: SSIM(x,
    reconstruction), minus the teacher's score, or with `split_by='auto'` minus `sight`'s
    combined anomaly rank; `atypical`: sorted `[round(rho * N)]` indices of the lowest scores;
    `typical`: sorted indices of the rest; `test_scores`: `[M]` the same score of the test
    images, if computed (the split's score as a detector); `sight`: with 'auto', what each
    score's check found (`Sight.to_dict()`).
    """

    scores: np.ndarray
    atypical: np.ndarray
    typical: np.ndarray
    test_scores: np.ndarray | None = None
    sight: dict | None = None


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


@functools.cache
def _ssim_program(autoencoder: AutoEncoder, max_val: float):
    def ssim(params, batch):
        return dm_pix.ssim(batch, autoencoder.apply({"params": params}, batch), max_val=max_val)
    return xla.jit(ssim)


def ssim_scores(autoencoder: AutoEncoder, params, images: np.ndarray,
                max_val: float = 1.0) -> np.ndarray:
    """Returns `[N]` SSIM between each image and its reconstruction (higher = more typical).

    One compiled program per autoencoder and batch shape, shared by every call."""
    program = _ssim_program(autoencoder, max_val)
    return evaluate.batched_apply(lambda b: program(params, b), images)


def save(path: str, split: Split) -> None:
    """Writes `split` to an `.npz` at `path`, atomically."""
    extra = {} if split.test_scores is None else {"test_scores": split.test_scores}
    if split.sight is not None:
        extra["sight"] = np.array(json.dumps(split.sight))
    outputs.write_npz(path, scores=split.scores, atypical=split.atypical, typical=split.typical,
                      **extra)


def load(path: str) -> Split:
    """Reads a split written by `save`."""
    with np.load(path) as f:
        return Split(scores=f["scores"], atypical=f["atypical"], typical=f["typical"],
                     test_scores=f["test_scores"] if "test_scores" in f else None,
                     sight=json.loads(str(f["sight"])) if "sight" in f else None)


def recut(split: Split, rho: float) -> Split:
    """Returns the split of the same SSIM scores at another `rho`."""
    return dataclasses.replace(split_by_score(split.scores, rho), test_scores=split.test_scores,
                               sight=split.sight)


def compute_split(config, images: np.ndarray, key: jax.Array,
                  test_images: np.ndarray | None = None, progress=None):
    """Trains the networks of `config.split_by` on `images` with `key`; returns `(split,
    model)`: the split at `config.rho`, with the test scores of `test_images` if given, and
    `model`, the variables that score an image: 'ssim': the split autoencoder's params,
    'teacher': the teacher's variables, 'auto': `sight.fit`'s model. `progress(network, step,
    num_steps, loss)` follows the training."""
    from ics_jax import autoencoder as ae_lib
    from ics_jax import sight as sight_lib

    if config.split_by == "auto":
        model, sight, anomaly = sight_lib.fit(config, images, key, progress)
        split = dataclasses.replace(split_by_score(-anomaly, config.rho), sight=sight.to_dict())
        if test_images is not None:
            split = dataclasses.replace(split, test_scores=-sight_lib.split_anomaly(
                config, model, sight, test_images))
        return split, model
    follow = {net: None if progress is None else (
        lambda step, loss, net=net, n=n: progress(net, step, n, loss))
        for net, n in (("teacher", config.teacher_num_steps), ("autoencoder", config.ae_num_steps))}
    if config.split_by == "teacher":
        return _teacher_split(config, images, key, test_images, follow["teacher"])
    module, params = ae_lib.train_autoencoder(
        images, key, num_steps=config.ae_num_steps, batch_size=config.batch_size,
        learning_rate=config.ae_learning_rate, autoencoder=ae_lib.build_autoencoder(config),
        loss=config.ae_loss, progress=follow["autoencoder"])
    split = split_by_score(ssim_scores(module, params, images, config.ssim_max_val), config.rho)
    if test_images is not None:
        split = dataclasses.replace(
            split, test_scores=ssim_scores(module, params, test_images, config.ssim_max_val))
    return split, params


def _teacher_split(config, images, key, test_images, progress):
    module, variables = teacher_lib.fit_teacher(config, images, key, progress)
    split = split_by_score(-teacher_lib.teacher_scores(module, variables, images), config.rho)
    if test_images is not None:
        split = dataclasses.replace(
            split, test_scores=-teacher_lib.teacher_scores(module, variables, test_images))
    return split, variables


def split_teacher(config, model) -> dict:
    """Returns the variables of the teacher among `compute_split`'s `model` (`split_by`
    'teacher' or 'auto' on square images); raises ValueError where there is none."""
    if config.split_by == "teacher":
        return model
    if config.split_by == "auto" and "teacher" in model:
        return model["teacher"]
    raise ValueError("student=True starts the classifier from the split's teacher, which needs "
                     "split_by='auto' or 'teacher' and square images")


def split_key(config) -> jax.Array:
    """Returns the key the split autoencoder (or teacher) trains with: one per
    `config.split_seed`, shared by every seed of a run (the seeds are the classifier's
    initialisation)."""
    return jax.random.split(jax.random.key(config.split_seed), 3)[0]
