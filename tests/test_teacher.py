"""The transformation teacher: its transformations, that training teaches it the normal images'
orientation, its scores as a detector and as the split's typicality, and its config keys."""

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest
from conftest import TINY, apply_tiny

from ics_jax import baselines, default_config, evaluate, pipeline, teacher, trainer
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib
from ics_jax import workdir as workdir_lib

NET = teacher.TeacherNet(conv_features=(4,) * 5, dense_features=16)


def _shapes(rng, n: int, kind: str, size: int = 16) -> np.ndarray:
    """`[n, size, size, 1]` images: noise plus an upright "L" or a "+" at a random place."""
    x = 0.1 * rng.random((n, size, size, 1), dtype=np.float32)
    for image, (r, c) in zip(x, rng.integers(1, size - 8, (n, 2)), strict=True):
        if kind == "L":
            image[r:r + 7, c:c + 2] = 1.0
            image[r + 5:r + 7, c:c + 6] = 1.0
        else:
            image[r:r + 7, c + 2:c + 4] = 1.0
            image[r + 2:r + 4, c:c + 6] = 1.0
    return x


def _data(seed: int = 0) -> data_lib.OneClassData:
    """Normal: upright L's (the same orientation); anomalies, the second half of the test
    images: +'s, the same in every orientation."""
    rng = np.random.default_rng(seed)
    y_test = np.repeat([0, 1], 40).astype(np.int32)
    x_test = np.concatenate([_shapes(rng, 40, "L"), _shapes(rng, 40, "+")])
    return data_lib.OneClassData(x_train=_shapes(rng, 200, "L"), x_test=x_test, y_test=y_test,
                                 test_classes=y_test.astype(np.int64))


def _config(**values):
    config = apply_tiny(default_config(), TINY)
    return apply_tiny(config, values)


# Transformations --------------------------------------------------------------------------------

def test_transformations_are_quarter_turns_then_flips_and_four_turns_are_the_identity():
    x = np.random.default_rng(0).random((2, 5, 5, 3), dtype=np.float32)
    for t in range(8):
        expected = np.rot90(x[:, :, ::-1] if t >= 4 else x, t % 4, axes=(1, 2))
        np.testing.assert_array_equal(teacher.transform(x, t), expected)
    turned = x
    for _ in range(4):
        turned = teacher.transform(turned, 1)
    np.testing.assert_array_equal(turned, x)
    # The eight are the eight symmetries of a square: all different on an asymmetric image.
    flat = {np.asarray(teacher.transform(x, t)).tobytes() for t in range(8)}
    assert len(flat) == 8


@pytest.mark.parametrize("name", ["rotate", "rotate_flip", "rotate_mirrored"])
def test_each_input_is_labelled_with_the_transformation_applied(name):
    x = np.random.default_rng(1).random((3, 4, 4, 1), dtype=np.float32)
    inputs, labels = teacher.transformed(x, name)
    num = teacher.TRANSFORMATIONS[name]
    assert inputs.shape == (num * 3, 4, 4, 1) and labels.shape == (num * 3,)
    for row in range(num * 3):
        np.testing.assert_array_equal(inputs[row], teacher.transform(x, int(labels[row]))[row % 3])


def test_non_square_images_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="square"):
        teacher.train_teacher(np.zeros((4, 8, 6, 1), np.float32), jax.random.key(0), num_steps=1,
                              batch_size=2, tx=optax.adam(1e-3), teacher=NET)


# The teacher as a detector ----------------------------------------------------------------------

def test_training_teaches_the_normal_orientation_and_an_untrained_teacher_knows_none():
    data = _data()
    aucs = {}
    for steps in (0, 30):
        net, variables = teacher.train_teacher(data.x_train, jax.random.key(0), num_steps=steps,
                                               batch_size=16, tx=optax.adam(1e-2), teacher=NET)
        scores = teacher.teacher_scores(net, variables, data.x_test)
        assert scores.shape == (80,) and scores.dtype == np.float32
        aucs[steps] = evaluate.auc(data.y_test, scores)
    assert aucs[30] > 0.9
    assert abs(aucs[0] - 0.5) < 0.2


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_scores_are_per_image_for_the_autoencoders_image_shapes(shape):
    images = np.random.default_rng(2).random((6,) + shape, dtype=np.float32)
    net, variables = teacher.train_teacher(images, jax.random.key(0), num_steps=1, batch_size=4,
                                           tx=optax.adam(1e-3), teacher=NET)
    scores = teacher.teacher_scores(net, variables, images)
    assert scores.shape == (6,) and np.isfinite(scores).all()
    # Minus a mean log-probability over the 4 turns: positive; an image's score is its own.
    assert (scores > 0).all()
    np.testing.assert_allclose(teacher.teacher_scores(net, variables, images[2:3]), scores[2:3],
                               rtol=1e-5)


def test_the_mirrored_teacher_scores_an_image_and_its_mirror_alike_and_learns_the_turns():
    data = _data()
    net = teacher.TeacherNet(conv_features=(4,) * 5, dense_features=16,
                             transformations="rotate_mirrored")
    net, variables = teacher.train_teacher(data.x_train, jax.random.key(0), num_steps=30,
                                           batch_size=16, tx=optax.adam(1e-2), teacher=net)
    scores = teacher.teacher_scores(net, variables, data.x_test)
    mirrored = teacher.teacher_scores(net, variables, data.x_test[:, :, ::-1])
    np.testing.assert_allclose(mirrored, scores, rtol=1e-5)
    # An L and its mirror are both upright: the turns are still learned, the +'s still stand out.
    assert evaluate.auc(data.y_test, scores) > 0.9


def test_the_step_and_the_scoring_compile_once(monkeypatch):
    traces = []
    original = teacher.transformed
    monkeypatch.setattr(teacher, "transformed",
                        lambda *args: traces.append(args[0].shape) or original(*args))
    net = teacher.TeacherNet(conv_features=(3,) * 5, dense_features=8)  # no program cached
    images = _data().x_train
    net, variables = teacher.train_teacher(images, jax.random.key(0), num_steps=4, batch_size=8,
                                           tx=optax.adam(1e-3), teacher=net)
    assert len(traces) == 1  # one step, traced once for all four
    teacher.teacher_scores(net, variables, images)  # 200 images: one batch of 256
    teacher.teacher_scores(net, variables, images[:130])  # the same batch shape
    assert len(traces) == 2


# The teacher's split and method -----------------------------------------------------------------

def test_the_teacher_split_cuts_the_least_typical_rho_by_the_teachers_score():
    data = _data()
    config = _config(split_by="teacher", rho=0.1)
    split, variables = split_lib.compute_split(config, data.x_train,
                                               split_lib.split_key(config), data.x_test)
    net = teacher.build_teacher(config)
    scores = teacher.teacher_scores(net, variables, data.x_train)
    np.testing.assert_array_equal(split.scores, -scores)  # higher = more typical
    np.testing.assert_array_equal(split.test_scores,
                                  -teacher.teacher_scores(net, variables, data.x_test))
    assert split.atypical.size == 20 and split.typical.size == 180
    assert scores[split.atypical].min() >= scores[split.typical].max()
    # The SSIM baseline's direction holds: high teacher score = anomalous.
    np.testing.assert_array_equal(baselines.ssim_anomaly_scores(split),
                                  teacher.teacher_scores(net, variables, data.x_test))


def test_the_teacher_method_trains_its_seeds_as_the_classifier_does_each_keyed_by_its_seed(
        tmp_path):
    data = _data()
    config = _config(method="teacher", num_seeds=2, seed=3, log_every=2)
    events = []
    results = pipeline.run_experiment(config, str(tmp_path), data=data, progress=events.append)
    assert results["seeds"] == [3, 4] and len(set(results["auc"])) == 2
    # Reports of the one loop: after the first step, every log_every and the last (TINY: 3).
    reports = [(e["iteration"], e["num_iterations"]) for e in events if e["stage"] == "train"]
    assert reports == [(1, 3), (2, 3), (3, 3)]
    assert {"transformation"} == set(events[-1]["losses"])
    alone = pipeline.run_experiment(_config(method="teacher", num_seeds=1, seed=4, log_every=2),
                                    str(tmp_path / "alone"), data=data)
    assert alone["auc"] == results["auc"][1:]  # seed 4 computes alone what it computes beside 3
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == config.teacher_num_steps  # checkpointed: a killed run resumes
    assert not (tmp_path / "split.npz").exists()
    # The teacher's keys are this method's own: another training length is another run.
    with pytest.raises(config_lib.ConfigError, match="teacher_num_steps"):
        pipeline.run_experiment(_config(method="teacher", num_seeds=2, seed=3,
                                        teacher_num_steps=4), str(tmp_path), data=data)


def test_a_non_finite_teacher_loss_stops_the_run_naming_the_teacher(tmp_path, monkeypatch):
    data = _data()
    broken = data.x_train.copy()
    broken[:] = np.nan  # every batch is NaN: the loss is NaN from the first step
    with pytest.raises(trainer.NonFiniteError, match=r"the teacher's transformation loss is "
                       r"non-finite at iteration 1 of seed 0"):
        pipeline.run_experiment(_config(method="teacher", num_seeds=1, log_every=1),
                                str(tmp_path), data=dataclasses.replace(data, x_train=broken))


# Config and workdir -----------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("split_by", "pixels"),
                                        ("teacher_transformations", "shift"),
                                        ("teacher_num_steps", 0),
                                        ("teacher_conv_features", (4, 4, 4))])
def test_bad_teacher_values_are_refused_by_name(key, value):
    with pytest.raises(config_lib.ConfigError, match=key):
        config_lib.validate(_config(**{key: value}))


def test_the_teachers_keys_count_only_where_a_teacher_trains(tmp_path):
    def keep(config, drop=()):
        kept = json.loads(config_lib.resolved(config).to_json())
        (tmp_path / "config.json").write_text(json.dumps(
            {k: v for k, v in kept.items() if not k.startswith(drop)}))

    keep(_config(split_by="ssim"), drop=("split_by", "teacher_"))  # kept from before the teacher
    workdir_lib.check_same_run(str(tmp_path), _config(split_by="ssim",  # an SSIM split
                                                      teacher_num_steps=9))
    with pytest.raises(config_lib.ConfigError, match="split_by"):
        workdir_lib.check_same_run(str(tmp_path), _config(split_by="teacher"))
    # A method without a split ignores the split's keys, the teacher's among them.
    keep(_config(method="iforest"))
    workdir_lib.check_same_run(str(tmp_path), _config(method="iforest", split_by="teacher",
                                                      teacher_num_steps=9))
    keep(_config(split_by="teacher"))
    with pytest.raises(config_lib.ConfigError, match="teacher_num_steps"):
        workdir_lib.check_same_run(str(tmp_path), _config(split_by="teacher",
                                                          teacher_num_steps=9))
