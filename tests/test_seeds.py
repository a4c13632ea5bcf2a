"""One ICS iteration and how the seeds run it: phases, compilation, placements, determinism."""

import inspect
import os

import chex
import jax
import numpy as np
import pytest
from conftest import toy_data

from ics_jax import models, seeds, train

BATCH = 8


def _iteration(tx=None, phases=train.PHASES):
    """A tiny network's iteration and a fresh state. Equivalence tests pass SGD: Adam's
    normalised update turns float reassociation in near-zero gradients into differences of
    order `lr`."""
    net = models.OneClassNet(models.AlexNet(conv_features=(4, 4, 4, 4, 4), dense_features=8,
                                            latent_dim=4))
    tx = tx or train.make_optimizer(1e-3)
    iteration = train.make_iteration(net, tx, batch_size=BATCH, phases=phases)
    return net, tx, iteration


def _states(net, tx, num_seeds, phases=train.PHASES):
    return seeds.stack([train.init_state(net, tx, k, (28, 28, 1), phases)
                        for k in jax.random.split(jax.random.key(5), num_seeds)])


def _adam_counts(state):
    return [int(np.asarray(s[0].count).max()) for s in state.opt_states]


def test_an_iteration_steps_every_phase_once_with_its_own_optimizer_state():
    net, tx, iteration = _iteration()
    state = train.init_state(net, tx, jax.random.key(0), (28, 28, 1))
    state, metrics = jax.jit(iteration)(state, toy_data(), jax.random.key(1), 0)
    assert _adam_counts(state) == [1, 1, 1]
    assert sorted(metrics) == sorted(f"{kind}/{phase}" for kind in ("loss", "grad_norm")
                                     for phase in train.PHASES)
    assert all(np.isfinite(v) and np.shape(v) == () for v in metrics.values())
    single = train.init_state(net, tx, jax.random.key(0), (28, 28, 1), ("intra_class",))
    _, _, binary_only = _iteration(phases=("intra_class",))
    single, metrics = jax.jit(binary_only)(single, toy_data(), jax.random.key(1), 0)
    assert _adam_counts(single) == [1]
    assert sorted(metrics) == ["grad_norm/intra_class", "loss/intra_class"]


def test_pair_phases_draw_distinct_members_and_the_binary_batch_is_half_atypical():
    data = toy_data()
    for phase, pool in (("closeness", data.typical), ("dispersion", data.atypical)):
        images, labels = train.phase_batch(phase, data, jax.random.key(3), BATCH)
        assert labels is None and images.shape == (2 * BATCH, 28, 28, 1)
        members = [[int(np.argmin(np.abs(pool - x).sum(axis=(1, 2, 3)))) for x in half]
                   for half in (images[:BATCH], images[BATCH:])]
        assert all(i != j for i, j in zip(*members, strict=True))
    images, labels = train.phase_batch("intra_class", data, jax.random.key(3), BATCH)
    assert labels.tolist() == [False] * (BATCH // 2) + [True] * (BATCH // 2)
    assert float(images[:BATCH // 2].mean()) < float(images[BATCH // 2:].mean())  # noise


def test_intra_class_loss_falls_on_a_toy_set():
    net, tx, iteration = _iteration(tx=train.make_optimizer(1e-2))
    state = seeds.stack([train.init_state(net, tx, jax.random.key(0), (28, 28, 1))])
    history = []
    seeds.runner()(iteration, state, toy_data(), jax.random.split(jax.random.key(3), 1), 0, 30,
                   report_every=1,
                   on_report=lambda end, s, m: history.append(float(m["loss/intra_class"][0, 0])))
    assert np.mean(history[-5:]) < 0.6 * np.mean(history[:5])  # measured: 0.59 -> 0.28


@pytest.mark.parametrize("where", seeds.PLACEMENTS)
def test_a_run_compiles_its_iteration_once_and_calls_it_from_the_runner_itself(where):
    chex.clear_trace_counter()  # the counter is keyed by the function's code, shared by params
    net, tx, iteration = _iteration()
    callers = []

    def step(*args):  # records the package's functions on the stack when the step is traced
        callers.append([f.function for f in inspect.stack() if f"{os.sep}ics_jax{os.sep}" in
                        f.filename])
        return iteration(*args)

    seeds.runner(where)(chex.assert_max_traces(step, n=1), _states(net, tx, 2), toy_data(),
                        jax.random.split(jax.random.key(0), 2), 0, 4, report_every=2)
    # At most the runner and one scan body: experiments/run.py reaches a loss in six calls
    # (main, run_experiment, train_states, the runner, [the body,] the step, the loss).
    assert callers == [{"loop": ["_run_loop"], "mesh": ["iteration", "_run_mesh"]}[where]]


def test_reports_come_at_multiples_and_a_fresh_cpu_run_reports_its_first_iteration():
    assert list(seeds._reports(0, 7, 3)) == [(0, 3), (3, 6), (6, 7)]
    assert list(seeds._reports(4, 5, 3)) == [(4, 6), (6, 9)]  # a resume realigns
    assert list(seeds._reports(0, 7, 3, lead=True)) == [(0, 1), (1, 3), (3, 6), (6, 7)]
    assert list(seeds._reports(3, 4, 3, lead=True)) == [(3, 6), (6, 7)]


def test_seed_i_of_a_stacked_run_equals_a_run_of_seed_i_alone_and_repeats_bit_for_bit():
    net, tx, iteration = _iteration()
    keys = jax.random.split(jax.random.key(6), 3)
    states = _states(net, tx, 3)
    run = seeds.runner()
    stacked = run(iteration, states, toy_data(), keys, 0, 3, report_every=3)
    again = run(iteration, _states(net, tx, 3), toy_data(), keys, 0, 3, report_every=3)
    chex.assert_trees_all_equal(stacked, again)
    alone = run(iteration, seeds.take(jax.tree.map(lambda x: x[1:], _states(net, tx, 3)), 1),
                toy_data(), keys[1:2], 0, 3, report_every=3)
    chex.assert_trees_all_equal(seeds.unstack(stacked, 3)[1], seeds.unstack(alone, 1)[0])


def test_placement_follows_the_backend_and_the_process_count_alone():
    assert seeds.placement("cpu", 1) == "loop"
    assert seeds.placement("cpu", 2) == "mesh"
    assert seeds.placement("gpu", 1) == "mesh" and seeds.placement("tpu", 4) == "mesh"
    assert seeds.iterations_per_call(100, "cpu") == 1
    assert seeds.iterations_per_call(100, "gpu") == 100


def test_augmentation_shifts_each_image_by_at_most_two_pixels_and_flips_some():
    images = jax.random.uniform(jax.random.key(0), (16, 10, 10, 1))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    for kind in ("shift", "shift_flip"):
        out = np.asarray(train.augment(images, jax.random.key(1), kind))
        flipped = 0
        for x, p in zip(out, padded, strict=True):
            views = {(dy, dx, f): (p[dy:dy + 10, dx:dx + 10, :][:, ::-1] if f else
                                   p[dy:dy + 10, dx:dx + 10, :])
                     for dy in range(5) for dx in range(5) for f in (0, 1)}
            match = [k for k, v in views.items() if np.array_equal(v, x)]
            assert match, kind  # some shift (and, for shift_flip, mirror) of the input
            flipped += all(k[2] for k in match)
        assert (flipped > 0) == (kind == "shift_flip")
    assert train.augment(images, jax.random.key(1), "none") is images


def test_the_joint_schedule_sums_closeness_and_weighted_dispersion_in_one_step():
    data = toy_data()
    images, labels = train.phase_batch("pairs", data, jax.random.key(2), BATCH)
    key_t, key_a = jax.random.split(jax.random.key(2))
    typical, _ = train.phase_batch("closeness", data, key_t, BATCH)
    atypical, _ = train.phase_batch("dispersion", data, key_a, BATCH)
    np.testing.assert_array_equal(images, np.concatenate([typical, atypical]))
    assert labels is None
    net, tx, iteration = _iteration(phases=train.JOINT_PHASES)
    state = train.init_state(net, tx, jax.random.key(0), (28, 28, 1), train.JOINT_PHASES)
    stepped, _ = jax.jit(iteration)(state, data, jax.random.key(1), 0)
    assert _adam_counts(stepped) == [1, 1]  # one update each: pairs, then the binary phase
    losses = {}
    for weight in (0.0, 1.0, 3.0):  # the same pairs and parameters each time
        pairs = train.make_phase_losses(net, batch_size=BATCH, phases=train.JOINT_PHASES,
                                        dispersion_weight=weight)["pairs"]
        losses[weight] = float(jax.jit(pairs)(state.params, state.batch_stats, data,
                                              jax.random.key(1))[0])
    dispersion = losses[1.0] - losses[0.0]
    assert losses[3.0] == pytest.approx(losses[0.0] + 3 * dispersion, rel=1e-5)
