"""The one step builder: weight decay, named metrics, phases that change only their own part,
and every trainer of the project going through it."""

import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import apply_tiny, toy_data

from ics_jax import autoencoder, default_config, dsvdd, models, teacher, train, trainer
from ics_jax import step as step_lib


def _quadratic(params, batch_stats, data, key):
    del key
    return sum(jnp.sum(jnp.square(p - data)) for p in jax.tree.leaves(params)), batch_stats


def test_weight_decay_is_the_gradient_of_an_l2_term_on_the_masked_weights_only():
    params = {"Conv_0": {"kernel": jnp.full((3, 3, 1, 2), 2.0), "bias": jnp.ones(2)},
              "Dense_0": {"kernel": jnp.full((4, 5), 3.0), "bias": jnp.ones(5)}}
    mask = step_lib.conv_kernels(params)
    assert mask == {"Conv_0": {"kernel": True, "bias": False},
                    "Dense_0": {"kernel": False, "bias": False}}
    tx = step_lib.with_weight_decay(optax.sgd(1.0), 0.25)
    step = step_lib.make_step({"fit": _quadratic}, tx)
    state = step_lib.init_state(tx, {"params": params})
    after, _ = step(state, 0.0, jax.random.key(0), 0)
    # d/dp of sum (p - 0)^2 is 2p; the decay adds 2 * 0.25 * p on the convolution kernel only.
    np.testing.assert_allclose(after.params["Conv_0"]["kernel"], 2.0 - (4.0 + 1.0))
    np.testing.assert_allclose(after.params["Dense_0"]["kernel"], 3.0 - 6.0)
    np.testing.assert_allclose(after.params["Conv_0"]["bias"], 1.0 - 2.0)


def test_a_step_names_its_metrics_and_keys_each_loss_apart():
    seen = {}

    def record(name):
        def loss_fn(params, batch_stats, data, key):
            seen[name] = key
            return jnp.sum(params["w"] ** 2), batch_stats
        return loss_fn

    tx = optax.sgd(0.1)
    step = step_lib.make_step({"a": record("a"), "b": record("b")}, tx)
    state = step_lib.init_state(tx, {"params": {"w": jnp.ones(3)}}, num_losses=2)
    state, metrics = step(state, None, jax.random.key(0), 5)
    assert sorted(metrics) == ["grad_norm/a", "grad_norm/b", "loss/a", "loss/b"]
    assert float(metrics["loss/a"]) == pytest.approx(3.0)
    assert float(metrics["loss/b"]) == pytest.approx(3.0 * 0.8 ** 2)  # after a's update
    assert float(metrics["grad_norm/a"]) == pytest.approx(2.0 * np.sqrt(3.0))
    step_key = jax.random.fold_in(jax.random.key(0), 5)
    for index, name in enumerate("ab"):
        np.testing.assert_array_equal(jax.random.key_data(seen[name]), jax.random.key_data(
            jax.random.fold_in(step_key, index)))


def _ics_state(phases):
    net = models.OneClassNet(models.AlexNet(conv_features=(4,) * 5, dense_features=8,
                                            latent_dim=4))
    tx = train.make_optimizer(1e-2, weight_decay=1e-3)
    iteration = train.make_iteration(net, tx, batch_size=8, phases=phases)
    return train.init_state(net, tx, jax.random.key(0), (28, 28, 1), phases), iteration


@pytest.mark.parametrize("phase,unchanged,changed", [
    ("intra_class", "distance_head", "classifier"),
    ("closeness", "classifier", "distance_head"),
    ("dispersion", "classifier", "distance_head"),
])
def test_each_phase_changes_only_the_head_it_trains(phase, unchanged, changed):
    state, iteration = _ics_state((phase,))
    after, _ = jax.jit(iteration)(state, toy_data(), jax.random.key(1), 0)
    chex.assert_trees_all_equal(after.params[unchanged], state.params[unchanged])
    assert not np.allclose(after.params[changed]["kernel"], state.params[changed]["kernel"])
    assert not np.allclose(after.params["backbone"]["Conv_0"]["kernel"],
                           state.params["backbone"]["Conv_0"]["kernel"])  # both reach it


def test_every_trainer_of_the_project_builds_its_step_with_make_step(monkeypatch):
    built = []

    def make_step(losses, tx):  # records the losses; the step it returns changes nothing
        built.append(tuple(losses))
        return lambda state, data, key, t: (state, {f"loss/{name}": 0.0 for name in losses})

    monkeypatch.setattr(step_lib, "make_step", make_step)
    images = np.asarray(toy_data().typical)
    autoencoder.train_autoencoder(images, jax.random.key(0), num_steps=1, batch_size=8,
                                  learning_rate=1e-3,
                                  autoencoder=models.AutoEncoder(conv_features=(4,) * 5,
                                                                 latent_channels=2))
    dsvdd.train_dsvdd(images, jax.random.key(0), ae_num_steps=1, num_steps=1, batch_size=8)
    teacher.train_teacher(images, jax.random.key(0), num_steps=1, batch_size=8,
                          tx=optax.adam(1e-3), teacher=teacher.TeacherNet(conv_features=(4,) * 5,
                                                                         dense_features=8))
    trainer.make_trainer(apply_tiny(default_config()))
    assert built == [("reconstruction",), ("reconstruction",), ("svdd",), ("transformation",),
                     train.PHASES]


def test_the_step_builder_holds_the_only_optimizer_update_of_the_library():
    library = pathlib.Path(step_lib.__file__).parent
    calls = {path.name for path in library.glob("*.py")
             if re.search(r"\.update\(\s*grads", path.read_text())}
    assert calls == {"step.py"}


def test_fit_compiles_its_step_once_and_returns_each_metric_per_step():
    chex.clear_trace_counter()
    tx = optax.sgd(0.1)
    step = chex.assert_max_traces(step_lib.make_step({"fit": _quadratic}, tx), n=1)
    state = step_lib.init_state(tx, {"params": {"w": jnp.ones(2)}})
    state, metrics = step_lib.fit(step, state, 0.0, jax.random.key(0), 4, network="toy")
    assert metrics["loss/fit"].shape == (4,)
    assert np.all(np.diff(metrics["loss/fit"]) < 0)


def test_fit_stops_at_the_first_non_finite_loss_naming_the_network():
    tx = optax.sgd(1e20)  # the quadratic's first step overflows: its second loss is inf
    state = step_lib.init_state(tx, {"params": {"w": jnp.ones(2)}})
    with pytest.raises(step_lib.NonFiniteError, match=r"^the autoencoder's fit loss is "
                       r"non-finite at iteration 2 of seed 0$"):
        step_lib.fit(step_lib.make_step({"fit": _quadratic}, tx), state, 0.0,
                     jax.random.key(0), 5, network="autoencoder", progress_every=1)


def test_the_cosine_schedule_warms_up_from_zero_for_a_tenth_at_most_and_ends_at_zero():
    tx = train.make_optimizer(1.0, schedule="cosine", num_iterations=20, warmup_iterations=100)
    params = {"w": jnp.zeros(3)}
    state, moves = tx.init(params), []
    for _ in range(21):  # counts 0..20: warm-up over 2 (a tenth of 20), decay to the end
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        moves.append(float(jnp.abs(updates["w"]).max()))
    # Adam's step is the rate here: 0, 0.5, 1, then decaying to 0.
    np.testing.assert_allclose(moves[:3], [0.0, 0.5, 1.0], atol=1e-4)  # Adam's epsilon
    assert all(a > b for a, b in zip(moves[2:20], moves[3:21], strict=True))
    assert moves[20] == 0.0


def test_a_cosine_run_may_not_grow_its_length_on_resume(tmp_path):
    from ics_jax import config as config_lib
    from ics_jax import outputs
    from ics_jax import workdir as workdir_lib

    config = apply_tiny(default_config())
    config.update(lr_schedule="cosine", warmup_iterations=1)
    outputs.write_json(str(tmp_path / "config.json"), config_lib.resolved(config).to_dict())
    config.num_iterations += 2
    with pytest.raises(config_lib.ConfigError, match="num_iterations"):
        workdir_lib.check_same_run(str(tmp_path), config)
