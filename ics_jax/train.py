"""The losses of an ICS iteration: the method's phases in a fixed order, each one update with an
optimizer state of its own (`step.make_step` runs them).

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

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ics_jax import losses
from ics_jax import step as step_lib
from ics_jax import teacher as teacher_lib

PHASES = ("closeness", "intra_class", "dispersion")
# Targets that keep the split's order: the binary phase replaced by a ranking of pairs of normal
# images by the split's score (`config.targets='rank'`).
RANK_PHASES = ("closeness", "rank", "dispersion")
BOTH_PHASES = ("closeness", "intra_class", "rank", "dispersion")  # `targets='both'`
# The authors' released schedule: closeness and dispersion summed into one step, then the
# binary step.
JOINT_PHASES = ("pairs", "intra_class")
NORMAL_ONLY = "normal_only"
AUGMENTATIONS = ("none", "shift", "shift_flip")
SHIFT = 2  # pixels, at most, in each direction


@flax.struct.dataclass
class SplitData:
    """Device-resident training images: `typical [Nt, H, W, C]`, `atypical [Na, H, W, C]`, and
    where the 'rank' phase reads it `rank [Nt + Na]`, each image's anomaly rank by the split's
    score in [0, 1] (the typical images first)."""

    typical: jax.Array
    atypical: jax.Array
    rank: jax.Array | None = None


def make_optimizer(learning_rate: float, b1: float = 0.9, weight_decay: float = 0.0, *,
                   schedule: str = "constant", num_iterations: int = 0,
                   warmup_iterations: int = 0) -> optax.GradientTransformation:
    """Adam, with the paper's L2 term on the convolution kernels; the paper does not give its
    optimizer, the authors' code uses Adam(3e-4, b1=0.5). `schedule='cosine'` warms the rate up
    linearly from 0 over `warmup_iterations`, at most a tenth of `num_iterations`, and decays it
    to 0 at `num_iterations` (each phase steps once an iteration, so its optimizer's count is
    the iteration)."""
    if schedule == "cosine":
        learning_rate = optax.warmup_cosine_decay_schedule(
            0.0, learning_rate, min(warmup_iterations, num_iterations // 10), num_iterations,
            end_value=0.0)
    return step_lib.with_weight_decay(optax.adam(learning_rate, b1=b1), weight_decay)


def init_state(net: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, ...], phases: tuple[str, ...] = PHASES,
               variables: dict | None = None):
    """Returns a fresh `step_lib.TrainState` for one seed, from `variables` if given, else
    `net`'s initialisation with `key`; `image_shape` is `(H, W, C)`."""
    if variables is None:
        variables = net.init(key, jnp.zeros((2,) + tuple(image_shape)), method=net.init_all)
    return step_lib.init_state(tx, variables, len(phases))


def distinct_pairs(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Returns two `[batch_size]` index vectors into `n` items with `i[k] != j[k]`."""
    key_i, key_j = jax.random.split(key)
    i = jax.random.randint(key_i, (batch_size,), 0, n)
    j = (i + jax.random.randint(key_j, (batch_size,), 1, n)) % n
    return i, j


def draw_normal(data: SplitData, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Returns `(images [n, H, W, C], index [n])`: `n` training images drawn uniformly from the
    typical and atypical ones together, and their index into `data.rank`."""
    num_typical, num_atypical = data.typical.shape[0], data.atypical.shape[0]
    k = jax.random.randint(key, (n,), 0, num_typical + num_atypical)
    typical = data.typical[jnp.minimum(k, num_typical - 1)]
    atypical = data.atypical[jnp.clip(k - num_typical, 0, num_atypical - 1)]
    return jnp.where((k < num_typical)[:, None, None, None], typical, atypical), k


def phase_batch(phase: str, data: SplitData, key: jax.Array,
                batch_size: int) -> tuple[jax.Array, jax.Array | None]:
    """Returns a phase's images and labels (1 = atypical; None for the pair phases, whose
    `[2 * batch_size]` images are the first and second members of `batch_size` pairs)."""
    if phase == "rank":  # [2 * batch_size] images, their ranks as labels
        images, k = draw_normal(data, key, 2 * batch_size)
        return images, data.rank[k]
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


def make_phase_losses(net: nn.Module, *, batch_size: int, phases: tuple[str, ...] = PHASES,
                      dispersion_weight: float = 1.0, augmentation: str = "none",
                      transformations: str = "rotate_mirrored") -> dict[str, step_lib.LossFn]:
    """Returns `{phase: loss_fn(params, batch_stats, data, key) -> (loss, batch_stats)}` for the
    phases of an iteration, in order (`step_lib.make_step` runs them). Each draws its batch from
    `data` (`SplitData`) with `key` (`phase_batch`), applies `augmentation` (`augment`) and
    computes its loss (eqs. 2-4); `dispersion_weight` weighs dispersion against closeness in the
    joint `pairs` phase (a phase of its own has its own Adam state, which no constant weight
    changes). The 'transformation' phase is the teacher's loss (`teacher.TRANSFORMATIONS`'s
    set `transformations`) on `batch_size` normal images through the transformation head; the
    'rank' phase, `losses.ranking_loss` of pairs of normal images against `data.rank`."""

    def apply(params, batch_stats, images, key, method=None):
        variables = {"params": params}
        kwargs = {"rngs": {"dropout": key}, "method": method}
        if not jax.tree.leaves(batch_stats):  # a static property of the state's structure
            return net.apply(variables, images, train=True, **kwargs), batch_stats
        variables["batch_stats"] = batch_stats
        outputs, updated = net.apply(variables, images, train=True, mutable=["batch_stats"],
                                     **kwargs)
        return outputs, updated["batch_stats"]

    def transformation(params, batch_stats, data, key):
        batch_key, mirror_key, dropout_key = jax.random.split(key, 3)
        batch = draw_normal(data, batch_key, batch_size)[0]
        if transformations == "rotate_mirrored":
            batch = teacher_lib.mirror_at_random(batch, mirror_key)
        inputs, labels = teacher_lib.transformed(batch, transformations)
        logits, batch_stats = apply(params, batch_stats, inputs, dropout_key,
                                    net.transformation_logits)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), batch_stats

    def distance(params, z):  # [2 * B, D]: first members, then second members
        half = z.shape[0] // 2
        return net.apply({"params": params}, z[:half], z[half:], method=net.distance_logit)

    def phase_loss(phase):
        if phase == "transformation":
            return transformation

        def loss_fn(params, batch_stats, data, key):
            batch_key, dropout_key, augment_key = jax.random.split(key, 3)
            images, labels = phase_batch(phase, data, batch_key, batch_size)
            images = augment(images, augment_key, augmentation)
            (logits, z), batch_stats = apply(params, batch_stats, images, dropout_key)
            if phase == "rank":
                return losses.ranking_loss(logits, labels), batch_stats
            if labels is not None:
                return losses.intra_class_loss(logits, labels), batch_stats
            if phase == "pairs":  # typical pairs, then atypical pairs
                typical, atypical = jnp.split(z, 2)
                return (losses.closeness_loss(distance(params, typical))
                        + dispersion_weight * losses.dispersion_loss(distance(params, atypical)),
                        batch_stats)
            pair_loss = losses.closeness_loss if phase == "closeness" else losses.dispersion_loss
            return pair_loss(distance(params, z)), batch_stats
        return loss_fn

    return {phase: phase_loss(phase) for phase in phases}


def make_iteration(net: nn.Module, tx: optax.GradientTransformation, *, batch_size: int,
                   phases: tuple[str, ...] = PHASES, dispersion_weight: float = 1.0,
                   augmentation: str = "none", transformations: str = "rotate_mirrored"
                   ) -> Callable:
    """Returns the ICS iteration, `step(state, data, seed_key, it) -> (state, metrics)`: the
    step builder over `make_phase_losses` (same keywords); the state comes from `init_state`
    with the same `phases`."""
    return step_lib.make_step(make_phase_losses(net, batch_size=batch_size, phases=phases,
                                                dispersion_weight=dispersion_weight,
                                                augmentation=augmentation,
                                                transformations=transformations), tx)


def make_predict(net: nn.Module) -> Callable:
    """Returns `predict(state, images [B, H, W, C]) -> anomaly logits [B]` (eval mode)."""

    def predict(state: step_lib.TrainState, images: jax.Array) -> jax.Array:
        variables = {"params": state.params}
        if jax.tree.leaves(state.batch_stats):
            variables["batch_stats"] = state.batch_stats
        return net.apply(variables, images, train=False)[0]

    return predict
