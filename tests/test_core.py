"""Losses, split, networks, checkpoints and evaluation."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import toy_data

from ics_jax import autoencoder, checkpoint, evaluate, losses, models, seeds, train
from ics_jax import split as split_lib

BATCH = 8


def _tiny_net(distance="difference"):
    backbone = models.AlexNet(conv_features=(4, 4, 4, 4, 4), dense_features=8, latent_dim=4)
    return models.OneClassNet(backbone, distance=distance)


def _trained_state():
    """A tiny network's state after one ICS iteration on toy images."""
    net, tx = _tiny_net(), train.make_optimizer(1e-3)
    iteration = train.make_iteration(net, tx, batch_size=BATCH)
    state = train.init_state(net, tx, jax.random.key(0), (28, 28, 1))
    return jax.jit(iteration)(state, toy_data(), jax.random.key(7), 0)[0]


# Losses -----------------------------------------------------------------------------------------

def test_losses_match_hand_computed_values():
    logits = jnp.array([0.0, math.log(3.0)])  # dist = 0.5 and 0.75
    assert losses.closeness_loss(logits) == pytest.approx(
        -(math.log(0.5) + math.log(0.25)) / 2, rel=1e-6)
    assert losses.dispersion_loss(logits) == pytest.approx(
        -(math.log(0.5) + math.log(0.75)) / 2, rel=1e-6)
    labels = jnp.array([0, 1])  # BCE: -(log(1 - 0.5) + log(0.75)) / 2
    assert losses.intra_class_loss(logits, labels) == pytest.approx(
        -(math.log(0.5) + math.log(0.75)) / 2, rel=1e-6)


def test_losses_are_finite_where_naive_forms_overflow():
    big = jnp.array([200.0])  # sigmoid rounds to 1: log(1 - sigmoid) would be -inf
    assert losses.closeness_loss(big) == pytest.approx(200.0)
    assert losses.dispersion_loss(-big) == pytest.approx(200.0)
    assert losses.intra_class_loss(big, jnp.array([0])) == pytest.approx(200.0)
    grad = jax.grad(lambda x: losses.closeness_loss(x))(big)
    assert np.isfinite(grad).all()


# Split -----------------------------------------------------------------------------------------

def test_split_marks_exactly_the_lowest_rho_fraction():
    scores = np.random.default_rng(0).permutation(np.linspace(0.0, 1.0, 200))
    split = split_lib.split_by_score(scores, 0.1)
    assert split.atypical.size == 20 and split.typical.size == 180
    assert scores[split.atypical].max() < scores[split.typical].min()
    assert np.array_equal(np.union1d(split.atypical, split.typical), np.arange(200))


def test_split_breaks_ties_by_index():
    scores = np.array([0.5, 0.1, 0.5, 0.5, 0.9])  # two of the three 0.5s are atypical
    split = split_lib.split_by_score(scores, 0.6)
    np.testing.assert_array_equal(split.atypical, [0, 1, 2])


def test_split_rejects_rho_that_empties_a_part():
    with pytest.raises(ValueError, match="rho"):
        split_lib.split_by_score(np.arange(10.0), 0.01)


# Networks -------------------------------------------------------------------------------------

def test_alexnet_parameter_count_matches_its_layer_table():
    net = models.OneClassNet(models.AlexNet())
    params = net.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
    count = sum(x.size for x in jax.tree.leaves(params))
    conv = [(5, 1, 32), (5, 32, 64), (3, 64, 96), (3, 96, 96), (3, 96, 64)]
    expected = sum(k * k * i * o + o for k, i, o in conv)
    flat = 3 * 3 * 64  # 28 -> 14 -> 7 -> 3 after three 2x2 poolings
    expected += flat * 256 + 256 + 256 * 128 + 128 + 2 * (128 + 1)  # dense, latent, two heads
    assert count == expected


@pytest.mark.parametrize("size", [7, 8])
def test_max_pool_2x2_and_its_gradient_equal_flax_max_pool(size):
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))  # no ties
    ours = lambda v: models.max_pool_2x2(v)  # noqa: E731
    flax_pool = lambda v: models.nn.max_pool(v, (2, 2), (2, 2))  # noqa: E731
    np.testing.assert_array_equal(ours(x), flax_pool(x))
    weights = jax.random.normal(jax.random.key(1), ours(x).shape)
    grad = lambda pool: jax.grad(lambda v: jnp.sum(pool(v) * weights))(x)  # noqa: E731
    np.testing.assert_array_equal(grad(ours), grad(flax_pool))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_autoencoder_reconstructs_the_input_shape_in_unit_range(shape):
    ae = models.AutoEncoder(conv_features=(4, 4, 4, 4, 4), latent_channels=3)
    x = jnp.ones((2,) + shape) * 0.5
    y, _ = ae.init_with_output(jax.random.key(0), x)
    assert y.shape == x.shape
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0


def test_bce_keeps_a_gradient_where_a_saturated_sigmoid_stalls_mse():
    """An autoencoder whose output bias sits far negative returns all black: MSE's gradient on
    that bias vanishes (sigmoid saturated), cross-entropy's is minus the mean pixel."""
    ae = models.AutoEncoder(conv_features=(4, 4, 4, 4, 4), latent_channels=3)
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    params = ae.init(jax.random.key(0), x)["params"]
    last = sorted(k for k in params if k.startswith("Conv_"))[-1]  # the output convolution
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.full_like(v, -60.0) if path[0].key == last
        and path[-1].key == "bias" else v, params)
    grads = {loss: jax.grad(lambda p, loss=loss: autoencoder.reconstruction_loss(ae, p, x, loss))(
        params)[last]["bias"] for loss in ("mse", "bce")}
    assert float(jnp.abs(grads["mse"]).max()) < 1e-12
    np.testing.assert_allclose(grads["bce"], -x.mean(), rtol=1e-3)


def test_symmetric_distance_heads_ignore_argument_order():
    z_i, z_j = jax.random.normal(jax.random.key(1), (2, 5, 4))
    for distance in ("absolute", "squared"):
        net = _tiny_net(distance)
        params = net.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), method=net.init_all)
        d_ij = net.apply(params, z_i, z_j, method=net.distance_logit)
        d_ji = net.apply(params, z_j, z_i, method=net.distance_logit)
        np.testing.assert_allclose(d_ij, d_ji, rtol=1e-6)


# Checkpoints -----------------------------------------------------------------------------------

def test_checkpoint_round_trips_state_and_optimizer_classes(tmp_path):
    state = _trained_state()
    stacked = seeds.stack([state, state])
    mngr = checkpoint.manager(str(tmp_path / "ckpt"))
    checkpoint.save(mngr, 3, stacked, force=True)
    mngr.wait_until_finished()
    assert checkpoint.latest_step(mngr) == 3
    like = jax.tree.map(jnp.zeros_like, stacked)
    restored = checkpoint.restore(mngr, 3, like)
    chex.assert_trees_all_equal(restored, stacked)
    assert isinstance(restored.opt_states[0][0], optax.ScaleByAdamState)


# Evaluation ------------------------------------------------------------------------------------

def test_auc_equals_the_pairwise_ranking_probability():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert evaluate.auc(labels, scores) == pytest.approx(pairs, rel=1e-12)


def test_rank_average_ignores_each_scores_scale_and_weighs_them_equally():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    combined = evaluate.rank_average(a, b)
    np.testing.assert_allclose(evaluate.rank_average(np.exp(a), 1e6 * b), combined)
    ranks = lambda s: np.argsort(np.argsort(s)) + 1  # noqa: E731  (no ties here)
    np.testing.assert_allclose(combined, (ranks(a) - 0.5 + ranks(b) - 0.5) / 100)


def test_rank_average_among_references_scores_each_image_on_its_own():
    rng = np.random.default_rng(2)
    ref_a, ref_b = rng.normal(size=40), rng.normal(size=30)
    a, b = rng.normal(size=9), rng.normal(size=9)
    combined = evaluate.rank_average(a, b, references=[ref_a, ref_b])
    share_below = lambda s, r: (r[None, :] < s[:, None]).mean(1)  # noqa: E731  (no ties)
    np.testing.assert_allclose(combined, (share_below(a, ref_a) + share_below(b, ref_b)) / 2)
    alone = [evaluate.rank_average(a[i:i + 1], b[i:i + 1], references=[ref_a, ref_b])[0]
             for i in range(9)]
    np.testing.assert_allclose(alone, combined)
    tie = evaluate.rank_average(np.array([0.0]), references=[np.array([-1.0, 0.0, 0.0, 1.0])])
    assert tie[0] == 0.5  # one below, two equal (counted half), one above


def test_auc_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="NaN"):
        evaluate.auc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_authors_protocol_takes_the_first_30_percent_of_each_label():
    labels = np.array([0] * 10 + [1] * 20)
    mask = evaluate.authors_protocol_split(labels)
    assert mask[:3].all() and not mask[3:10].any()
    assert mask[10:16].all() and not mask[16:].any()


def test_unreadable_checkpoint_is_reported_and_skipped_for_the_previous(tmp_path, caplog):
    state = _trained_state()
    mngr = checkpoint.manager(str(tmp_path / "ckpt"), keep=3)
    older = jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x, state)
    checkpoint.save(mngr, 3, older, force=True)
    checkpoint.save(mngr, 6, state, force=True)
    mngr.wait_until_finished()
    for path in (tmp_path / "ckpt" / "6").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:10])  # truncate every file of step 6
    with caplog.at_level("WARNING", logger="ics_jax"):
        step, restored = checkpoint.restore_latest(mngr, jax.tree.map(jnp.zeros_like, state))
    assert step == 3
    chex.assert_trees_all_equal(restored, older)
    assert str(tmp_path / "ckpt" / "6") in caplog.text
    assert (tmp_path / "ckpt" / "6.unreadable").exists()
