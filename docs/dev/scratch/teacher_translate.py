"""Scratch study (docs/teacher.md): translations as labels beside the turns (Hendrycks et al.,
2019: predict the rotation and the horizontal and vertical shift, each of -8, 0, +8 pixels,
reflect padding). The default teacher's network, budget and data (600 steps of 64 normal
images, each mirrored or not and shifted at random, under all 4 turns; cosine rate), with
three heads. From the repository root:

    python docs/dev/scratch/teacher_translate.py cifar10 3 ../shared/data/cifar10_jpeg.tar.gz

Prints the test AUC (%) of three scores of the one network, each averaged over the image and
its mirror: 'turns' (minus the turn's log-probability over the 4 turns, unshifted: the default
teacher's score), 'turns, shifts averaged' (the same over the 9 shifts) and 'turns + shifts'
(minus the sum of the three heads' log-probabilities over the 4 x 9 views).
"""

import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import evaluate, models
from ics_jax import step as step_lib
from ics_jax import teacher as teacher_lib

SHIFT = 8
OFFSETS = (-SHIFT, 0, SHIFT)


class TurnShiftNet(nn.Module):
    """The default teacher's backbone; returns `(turn [B, 4], dx [B, 3], dy [B, 3])` logits."""

    @nn.compact
    def __call__(self, x, train=False):
        z = models.AlexNet(conv_features=(16, 32, 48, 48, 32), dense_features=256,
                           batch_norm=True)(x, train)
        return nn.Dense(4)(z), nn.Dense(3)(z), nn.Dense(3)(z)


def shift(images, dx, dy):
    """`images` `[B, H, W, C]` moved by `OFFSETS[dx]`, `OFFSETS[dy]` pixels, reflect padded."""
    size = images.shape[1]
    padded = jnp.pad(images, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode="reflect")
    return jax.lax.dynamic_slice_in_dim(
        jax.lax.dynamic_slice_in_dim(padded, SHIFT - OFFSETS[dy], size, 1),
        SHIFT - OFFSETS[dx], size, 2)


def all_shifts(images):
    """`[9, B, H, W, C]`: `images` under shift `(dx, dy)` at index `3 * dy + dx`."""
    return jnp.stack([shift(images, dx, dy) for dy in range(3) for dx in range(3)])


def log_likelihoods(net, variables, images, dx, dy, train):
    """`(log p turn [4, B], log p dx + log p dy [4, B], batch_stats)` of `images` already shifted
    by `dx`, `dy` `[B]`, under each of the 4 turns."""
    inputs = jnp.concatenate([teacher_lib.transform(images, t) for t in range(4)])
    if train:
        (turn, lx, ly), state = net.apply(variables, inputs, train=True, mutable=["batch_stats"])
        batch_stats = state["batch_stats"]
    else:
        (turn, lx, ly), batch_stats = net.apply(variables, inputs), variables["batch_stats"]
    num = images.shape[0]
    pick = lambda logits, labels: jnp.take_along_axis(  # noqa: E731
        jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0].reshape(4, num)
    turns = jnp.repeat(jnp.arange(4), num)
    return (pick(turn, turns), pick(lx, jnp.tile(dx, 4)) + pick(ly, jnp.tile(dy, 4)),
            batch_stats)


dataset, normal_class, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = data_lib.load_one_class(dataset, normal_class, data_dir=root)
config = config_lib.default_config()
net, batch_size, num_steps = TurnShiftNet(), config.batch_size, config.teacher_num_steps
tx = optax.adam(optax.cosine_decay_schedule(config.teacher_learning_rate, num_steps))
init_key, batch_key = jax.random.split(jax.random.key(0))
state = step_lib.init_state(tx, net.init(init_key, jnp.asarray(data.x_train[:1])))


def loss_fn(params, batch_stats, images, key):
    keys = jax.random.split(key, 4)
    batch = images[jax.random.randint(keys[0], (batch_size,), 0, images.shape[0])]
    mirror = jax.random.bernoulli(keys[1], 0.5, (batch_size,))
    batch = jnp.where(mirror[:, None, None, None], jnp.flip(batch, axis=2), batch)
    index = jax.random.randint(keys[2], (batch_size,), 0, 9)
    batch = all_shifts(batch)[index, jnp.arange(batch_size)]
    turn, moved, batch_stats = log_likelihoods(
        net, {"params": params, "batch_stats": batch_stats}, batch, index % 3, index // 3, True)
    return -jnp.mean(turn + moved), batch_stats


t0 = time.time()
state, metrics = step_lib.fit(step_lib.make_step({"turn_shift": loss_fn}, tx), state,
                              jnp.asarray(data.x_train), batch_key, num_steps, progress_every=100,
                              progress=lambda t, m: print(t, round(m["loss/turn_shift"], 4),
                                                          flush=True))
print("trained", round(time.time() - t0), "s", flush=True)
variables = {"params": state.params, "batch_stats": state.batch_stats}


@jax.jit
def scores(batch):
    """`[3, B]`: the three scores of the module docstring."""
    views = jnp.concatenate([batch, jnp.flip(batch, axis=2)])
    turn, moved = [], []
    for index, moved_views in enumerate(all_shifts(views)):
        label = jnp.full((views.shape[0],), index)
        t, m, _ = log_likelihoods(net, variables, moved_views, label % 3, label // 3, False)
        turn.append(t)
        moved.append(m)
    turn, moved = jnp.stack(turn), jnp.stack(moved)  # [9, 4, 2B]
    per_image = lambda s: -s.mean((0, 1)).reshape(2, -1).mean(0)  # noqa: E731
    return jnp.stack([per_image(turn[4:5]), per_image(turn), per_image(turn + moved)])


result = evaluate.batched_apply(lambda b: scores(b).T, data.x_test, batch_size=250)
names = ("turns", "turns, shifts averaged", "turns + shifts")
for name, column in zip(names, result.T, strict=True):
    print(name, round(evaluate.auc(data.y_test, column) * 100, 2), flush=True)
print("total", round(time.time() - t0), "s", flush=True)
