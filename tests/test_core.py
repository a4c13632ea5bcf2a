"""Losses, split, networks, the phase-switched step, loop forms and seed strategies."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ics_jax import checkpoint, evaluate, loops, losses, models, placement, seeds, train
from ics_jax import split as split_lib

BATCH = 8


def _tiny_net(distance="difference"):
    backbone = models.AlexNet(conv_features=(4, 4, 4, 4, 4), dense_features=8, latent_dim=4)
    return models.OneClassNet(backbone, distance=distance)


def _toy_data(key=0, n_typical=40, n_atypical=12, shape=(28, 28, 1)):
    """Typical: a bright centre square plus a little noise; atypical: uniform noise."""
    rng = np.random.default_rng(key)
    typical = 0.05 * rng.random((n_typical,) + shape)
    typical[:, 10:18, 10:18] += 0.9
    atypical = rng.random((n_atypical,) + shape)
    return train.SplitData(jnp.asarray(typical, jnp.float32), jnp.asarray(atypical, jnp.float32))


def _setup(distance="difference", lr=1e-3, tx=None):
    """Tiny net and step. Equivalence tests pass SGD: Adam's normalised update turns float
    reassociation in near-zero gradients into differences of order `lr`."""
    net = _tiny_net(distance)
    tx = tx or train.make_optimizer(lr)
    state = train.init_state(net, tx, jax.random.key(0), (28, 28, 1))
    step = train.make_train_step(net, tx, batch_size=BATCH, weight_decay=1e-6)
    return net, tx, state, step


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


def test_conv_kernel_l2_counts_convolution_kernels_only():
    params = {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones(2)},
              "Dense_0": {"kernel": jnp.ones((4, 5)), "bias": jnp.ones(5)}}
    assert losses.conv_kernel_l2(params) == pytest.approx(18.0)


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


def test_autoencoder_training_split_over_devices_equals_one_device(monkeypatch):
    images = np.asarray(_toy_data().typical)
    ae = models.AutoEncoder(conv_features=(4, 4, 4, 4, 4), latent_channels=3)
    train_ae = lambda: split_lib.train_autoencoder(  # noqa: E731
        images, jax.random.key(0), num_steps=3, batch_size=BATCH, learning_rate=1e-4,
        autoencoder=ae)[1]
    split = train_ae()  # the batch over all 8 host devices
    one_device = placement.seed_meshes(1, jax.local_devices()[:1])
    monkeypatch.setattr(placement, "seed_meshes", lambda n: one_device)
    single = train_ae()
    assert {len(leaf.devices()) for leaf in jax.tree.leaves(split)} == {1}
    chex.assert_trees_all_close(split, single, atol=1e-6)  # measured: 3e-8 apart


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
    grads = {loss: jax.grad(lambda p, loss=loss: split_lib.reconstruction_loss(ae, p, x, loss))(
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


# The phase-switched step -----------------------------------------------------------------------

def _opt_counts(state):
    return [int(s[0].count) for s in state.opt_states]  # adam's ScaleByAdamState.count


def test_switch_runs_the_phase_of_the_step_and_compiles_once():
    _, _, state, step = _setup()
    data, key = _toy_data(), jax.random.key(1)
    traced = chex.assert_max_traces(step, n=1)
    jitted = jax.jit(traced)
    for t in range(6):
        before = _opt_counts(state)
        state, metrics = jitted(state, data, key, jnp.int32(t))
        after = _opt_counts(state)
        changed = [a - b for a, b in zip(after, before, strict=True)]
        assert changed == [int(k == t % 3) for k in range(3)]
        assert metrics.shape == (2,) and np.isfinite(metrics).all()  # loss, gradient norm


def test_static_phase_equals_switched_phase():
    _, _, state, step = _setup(tx=optax.sgd(0.05))
    data, key = _toy_data(), jax.random.key(2)
    for t in range(3):
        switched, m_a = jax.jit(step)(state, data, key, jnp.int32(t))
        static, m_b = jax.jit(step, static_argnums=4)(state, data, key, jnp.int32(t), t)
        chex.assert_trees_all_close(switched, static, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(m_a, m_b, rtol=1e-5)


def test_intra_class_loss_falls_on_a_toy_set():
    _, _, state, step = _setup(lr=3e-3)
    data, key = _toy_data(), jax.random.key(3)
    chunk = loops.make_chunk(lambda s, t, phase, d: step(s, d, key, t, phase), "unrolled", 3, 3)
    history = []
    for start in range(0, 90, 3):
        state, m = chunk(state, jnp.int32(start), data)
        history.append(float(m[1, 0]))  # the intra-class phase's loss in each iteration
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])


@pytest.mark.parametrize("loop_form", ["python", "scan"])
def test_loop_forms_agree_with_unrolled(loop_form):
    _, _, state, step = _setup(tx=optax.sgd(0.05))
    data, key = _toy_data(), jax.random.key(4)
    fn = lambda s, t, phase, d: step(s, d, key, t, phase)  # noqa: E731
    kwargs = dict(chunk_size=3, report_every=6, cycle=3, consts=(data,))
    copy = lambda: jax.tree.map(jnp.copy, state)  # noqa: E731  (the loops donate their carry)
    ref, m_ref = loops.run(fn, copy(), 0, 6, loop_form="unrolled", **kwargs)
    out, m_out = loops.run(fn, copy(), 0, 6, loop_form=loop_form, **kwargs)
    chex.assert_trees_all_close(ref.params, out.params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m_ref, m_out, rtol=1e-4)


def test_every_strategy_equals_single_runs_with_a_seed_count_that_needs_padding():
    """3 seeds: `sharded` pads them to the 8 host devices (conftest) and drops the padding."""
    assert jax.device_count() == 8
    net, tx, _, step = _setup(tx=optax.sgd(0.05))
    data = _toy_data()
    init_keys = jax.random.split(jax.random.key(5), 3)
    seed_keys = jax.random.split(jax.random.key(6), 3)
    states = [train.init_state(net, tx, k, (28, 28, 1)) for k in init_keys]
    kwargs = dict(loop_form="unrolled", chunk_size=3, report_every=6, cycle=3)
    reported = {}
    results = {s: seeds.run_seeds(step, seeds.stack(states), data, seed_keys, 0, 6, strategy=s,
                                  on_report=lambda e, st, m, s=s: reported.setdefault(s, m.shape),
                                  **kwargs) for s in seeds.STRATEGIES}
    assert all(shape == (6, 3, 2) for shape in reported.values())  # no padding seeds reported
    for i in range(3):
        single = seeds.run_seeds(step, seeds.stack(states[i:i + 1]), data, seed_keys[i:i + 1],
                                 0, 6, strategy="loop", **kwargs)
        for strategy, stacked in results.items():
            assert jax.tree.leaves(stacked)[0].shape[0] == 3
            chex.assert_trees_all_close(seeds.unstack(stacked, 3)[i].params,
                                        seeds.unstack(single, 1)[0].params,
                                        rtol=1e-4, atol=1e-5, custom_message=strategy)


def test_seed_meshes_give_each_seed_its_own_devices_and_share_them_beyond_the_count():
    d = jax.local_devices()
    assert len(d) == 8
    (one,) = placement.seed_meshes(1)
    assert one.devices.tolist() == d
    assert [m.devices.tolist() for m in placement.seed_meshes(3)] == [d[0:2], d[2:4], d[4:6]]
    ten = placement.seed_meshes(10)
    assert [m.devices.tolist() for m in ten] == [[d[i % 8]] for i in range(10)]
    assert ten[0] is ten[8]  # the same devices, the same mesh: one compiled program


def test_a_step_on_a_device_group_splits_its_batch_and_equals_the_one_device_step():
    _, _, state, step = _setup(tx=optax.sgd(0.05))
    data, key = _toy_data(), jax.random.key(4)
    fn = jax.jit(lambda s, d, k: step(s, d, k, 0, 0))  # closeness: 2 x BATCH images
    plain, _ = fn(state, data, key)
    mesh = placement.seed_meshes(2)[0]
    assert mesh.size == 4
    with jax.set_mesh(mesh):
        args = placement.place((state, data, key), mesh)
        hlo = fn.lower(*args).compile().as_text()
        split, _ = fn(*args)
    assert "all-reduce" in hlo  # each device's share of the gradient, summed
    chex.assert_trees_all_close(split.params, plain.params, rtol=1e-4, atol=1e-6)


def test_candidate_strategies_never_let_processes_disagree_nor_vmap_convs_on_a_cpu():
    assert seeds.candidate_strategies("gpu", 1, 1) == ("vmap", "loop")
    assert seeds.candidate_strategies("tpu", 8, 1) == ("sharded", "loop", "sequential")
    assert seeds.candidate_strategies("tpu", 8, 2) == ("sharded",)
    assert seeds.candidate_strategies("cpu", 8, 2) == ("sharded",)
    assert seeds.candidate_strategies("cpu", 8, 1) == ("loop", "sequential")
    assert seeds.candidate_strategies("cpu", 1, 1) == ("loop",)


def test_auto_measures_each_candidate_and_leaves_the_states_untouched(monkeypatch):
    monkeypatch.setattr(seeds, "candidate_strategies", lambda: ("sharded", "loop"))
    _, _, state, step = _setup(tx=optax.sgd(0.05))
    states = seeds.stack([state, state])
    before = jax.tree.map(np.asarray, states)
    best, rates = seeds.choose_strategy(step, states, _toy_data(),
                                        jax.random.split(jax.random.key(0), 2),
                                        loop_form="unrolled", chunk_size=3, cycle=3)
    assert set(rates) == {"sharded", "loop"}
    assert best == max(rates, key=rates.get) and all(r > 0 for r in rates.values())
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, states), before)


def test_checkpoint_round_trips_state_and_optimizer_classes(tmp_path):
    _, tx, state, step = _setup()
    state, _ = jax.jit(step)(state, _toy_data(), jax.random.key(7), jnp.int32(0))
    stacked = seeds.stack([state, state])
    mngr = checkpoint.manager(str(tmp_path / "ckpt"))
    checkpoint.save(mngr, 3, stacked, force=True)
    mngr.wait_until_finished()
    assert checkpoint.latest_step(mngr) == 3
    like = jax.tree.map(jnp.zeros_like, stacked)
    restored = checkpoint.restore(mngr, 3, like)
    chex.assert_trees_all_equal(restored, stacked)
    assert isinstance(restored.opt_states[0][0], optax.ScaleByAdamState)
    del tx


# Evaluation ------------------------------------------------------------------------------------

def test_auc_equals_the_pairwise_ranking_probability():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert evaluate.auc(labels, scores) == pytest.approx(pairs, rel=1e-12)


def test_auc_refuses_non_finite_scores():
    with pytest.raises(ValueError, match="NaN"):
        evaluate.auc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_authors_protocol_takes_the_first_30_percent_of_each_label():
    labels = np.array([0] * 10 + [1] * 20)
    mask = evaluate.authors_protocol_split(labels)
    assert mask[:3].all() and not mask[3:10].any()
    assert mask[10:16].all() and not mask[16:].any()


def test_unreadable_checkpoint_is_reported_and_skipped_for_the_previous(tmp_path, caplog):
    _, _, state, _ = _setup()
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
