"""What each split score can see on the data at hand, without labels, and the split's score
that follows from it (`split_by='auto'`).

The two scores rest on different assumptions: the transformation teacher on images having an
upright orientation, the split autoencoder's SSIM on anomalies being harder to reconstruct than
normal images. Both networks train on all but a held-out tenth of the normal images; on that
tenth each score is checked:

- the teacher: how often it names the quarter turn applied to a held-out image (its accuracy
  above chance, rescaled so that chance is 0 and always right is 1);
- SSIM: how well it ranks held-out images below the same images with their four quadrants
  moved one place round (the AUC above chance, rescaled the same way), pseudo-anomalies with
  every pixel of a normal image kept.

A score whose check reaches its `SEES` sees; the split's anomaly score is the mean of each
seeing score's rank among the training images' scores. Where no score sees, the one nearest its
mark is used alone and a warning says so. Docs: docs/sight.md.
"""

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ics_jax import evaluate, xla
from ics_jax import teacher as teacher_lib

SCORES = ("teacher", "ssim")
# The check each score must reach to count as seeing, set in the middle of the gaps between the
# development classes where it sees and where it is blind (docs/sight.md): the teacher names
# the turn of 40% of held-out images (chance 25%); SSIM tells 75% of pairs of an image and its
# quadrants moved apart.
SEES = {"teacher": 0.2, "ssim": 0.5}


@dataclasses.dataclass(frozen=True)
class Sight:
    """What a fit found: `checks` `{score: value}` (0 = chance, 1 = perfect) and `weights`
    `{score: weight}` (summing to 1, alike for the scores that see, 0 for the others)."""

    checks: dict
    weights: dict

    def to_dict(self) -> dict:
        return {"checks": dict(self.checks), "weights": dict(self.weights)}


def holdout(num_images: int, seed: int, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(fit [N - H], held [H])`, sorted indices of `num_images`, `H = max(2,
    round(fraction * N))` held out at random by `seed`."""
    held_count = max(2, int(round(fraction * num_images)))
    order = np.random.default_rng(seed).permutation(num_images)
    return np.sort(order[held_count:]), np.sort(order[:held_count])


def turned(images: np.ndarray, seed: int) -> np.ndarray:
    """Returns `images` `[N, H, W, C]` (square), each turned by a random number of quarter
    turns drawn by `seed`: the same images with no upright orientation."""
    turns = np.random.default_rng(seed).integers(0, 4, images.shape[0])
    return np.stack([np.rot90(x, k, axes=(0, 1)) for x, k in zip(images, turns, strict=True)])


def quadrants_moved(images: np.ndarray) -> np.ndarray:
    """Returns `images` `[N, H, W, C]` with their four quadrants each moved one place
    counterclockwise (top right to top left, top left to bottom left, ...), the content of each
    unturned; with an odd side the last row or column stays."""
    h, w = images.shape[1] // 2, images.shape[2] // 2
    tl, tr = images[:, :h, :w], images[:, :h, w:2 * w]
    bl, br = images[:, h:2 * h, :w], images[:, h:2 * h, w:2 * w]
    out = images.copy()
    out[:, :2 * h, :2 * w] = np.concatenate([np.concatenate([tr, br], 2),
                                             np.concatenate([tl, bl], 2)], 1)
    return out


def transformation_accuracy(teacher: teacher_lib.TeacherNet, variables: dict,
                            images: np.ndarray) -> float:
    """Returns the fraction of `images` `[N, H, W, C]`, each under every transformation of the
    teacher's set, whose transformation the teacher names (chance: one over their number)."""
    inputs, labels = teacher_lib.transformed(jnp.asarray(images), teacher.transformations)
    program = _logits_program(teacher)
    logits = evaluate.batched_apply(lambda b: program(variables, b), np.asarray(inputs))
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


@functools.cache
def _logits_program(teacher: teacher_lib.TeacherNet):
    return xla.jit(teacher.apply)


def teacher_check(accuracy: float, num_transformations: int) -> float:
    """Returns the teacher's check: its held-out accuracy rescaled, chance 0, always right 1."""
    chance = 1.0 / num_transformations
    return (accuracy - chance) / (1.0 - chance)


def ssim_check(held_anomaly: np.ndarray, moved_anomaly: np.ndarray) -> float:
    """Returns SSIM's check: `2 AUC - 1` of the anomaly scores (minus SSIM) of held-out images
    `[H]` against those of the same images with their quadrants moved `[H]`."""
    labels = np.r_[np.zeros(held_anomaly.shape[0]), np.ones(moved_anomaly.shape[0])]
    return 2.0 * evaluate.auc(labels, np.r_[held_anomaly, moved_anomaly]) - 1.0


def weigh(checks: dict) -> Sight:
    """Returns the `Sight` of `checks` `{score: check}`: the scores whose check reaches their
    `SEES`, weighted alike; where none does, the one nearest its mark alone, with a warning."""
    seeing = [k for k, c in checks.items() if c >= SEES[k]]
    if not seeing:
        best = max(checks, key=lambda k: checks[k] / SEES[k])
        warnings.warn(
            "no split score sees these images (checks " + ", ".join(
                f"{k} {c:.2f} of {SEES[k]}" for k, c in checks.items()) + f"): the detector "
            f"uses {best} alone and may rank anomalies near chance", stacklevel=2)
        seeing = [best]
    return Sight(checks={k: float(c) for k, c in checks.items()},
                 weights={k: 1.0 / len(seeing) if k in seeing else 0.0 for k in checks})


def combined(anomaly: dict, reference: dict, weights: dict) -> np.ndarray:
    """Returns `[M]` the weighted mean over the scores of `anomaly` `{score: [M]}` of each
    image's mid-rank in [0, 1] among `reference` `{score: [N]}` (the training images'), higher
    = more anomalous."""
    used = [k for k in SCORES if weights.get(k, 0.0) > 0]
    ranks = [evaluate.rank_average(anomaly[k], references=[reference[k]]) for k in used]
    return np.sum([weights[k] * r for k, r in zip(used, ranks, strict=True)], axis=0)


def fit(config, images: np.ndarray, key: jax.Array,
        progress=None) -> tuple[dict, Sight, np.ndarray]:
    """Trains `config`'s teacher and split autoencoder on all but a held-out tenth of `images`
    `[N, H, W, C]` (drawn by `config.split_seed`), checks each score on that tenth; returns
    `(model, sight, anomaly)`: `model` = `{teacher, autoencoder, reference: {score: [N - H]}}`
    (the networks' variables, the anomaly scores of the images they trained on), `anomaly`
    `[N]` the split's anomaly score of `images` (`split_anomaly`'s). The teacher only for
    square images. `progress(network, step, num_steps, loss)` follows the training."""
    from ics_jax import autoencoder as ae_lib

    fit_idx, held_idx = holdout(images.shape[0], config.split_seed)
    train, held = images[fit_idx], images[held_idx]
    teacher_key, ae_key = jax.random.split(key)
    model, checks = {}, {}

    def follow(network, num_steps):
        return None if progress is None else (
            lambda step, loss: progress(network, step, num_steps, loss))

    if images.shape[1] == images.shape[2]:
        teacher, model["teacher"] = teacher_lib.fit_teacher(
            config, train, teacher_key, follow("teacher", config.teacher_num_steps))
        checks["teacher"] = teacher_check(
            transformation_accuracy(teacher, model["teacher"], held),
            teacher_lib.TRANSFORMATIONS[config.teacher_transformations])
    _, model["autoencoder"] = ae_lib.train_autoencoder(
        train, ae_key, num_steps=config.ae_num_steps, batch_size=config.batch_size,
        learning_rate=config.ae_learning_rate, autoencoder=ae_lib.build_autoencoder(config),
        loss=config.ae_loss, progress=follow("autoencoder", config.ae_num_steps))
    checks["ssim"] = ssim_check(*(anomaly_scores(config, model, x, ("ssim",))["ssim"]
                                  for x in (held, quadrants_moved(held))))
    everything = anomaly_scores(config, model, images, tuple(checks))  # each image once
    model["reference"] = {k: v[fit_idx] for k, v in everything.items()}
    sight = weigh(checks)
    return model, sight, combined(everything, model["reference"], sight.weights)


def anomaly_scores(config, model: dict, images: np.ndarray, scores=SCORES) -> dict:
    """Returns `{score: [M]}` the anomaly scores (higher = more anomalous) of `images` by the
    networks of `model` (`fit`'s) named in `scores`: the teacher's, minus SSIM."""
    from ics_jax import autoencoder as ae_lib
    from ics_jax import split as split_lib

    out = {}
    if "teacher" in scores:
        out["teacher"] = teacher_lib.teacher_scores(teacher_lib.build_teacher(config),
                                                    model["teacher"], images)
    if "ssim" in scores:
        out["ssim"] = -split_lib.ssim_scores(ae_lib.build_autoencoder(config),
                                             model["autoencoder"], images, config.ssim_max_val)
    return out


def split_anomaly(config, model: dict, sight: Sight, images: np.ndarray) -> np.ndarray:
    """Returns `[M]` the split's anomaly score of `images`: `combined` with `sight`'s weights."""
    used = tuple(k for k, w in sight.weights.items() if w > 0)
    return combined(anomaly_scores(config, model, images, used), model["reference"],
                    sight.weights)
