"""The estimators: fit on normal images, rank anomalies higher, flag `contamination`, save and
load bit for bit, and one clear error for each bad input."""

import pathlib
import shutil

import numpy as np
import pytest
from conftest import TINY

import ics_jax
from ics_jax import checkpoint, evaluate, pipeline
from ics_jax import data as data_lib

# Small networks, one seed, a few iterations: seconds on a CPU. (At TINY's 4 channels the
# ReLU classifier died, a constant score, on 2 of 3 seeds; at 8 it learned on 3 of 3.) The
# images' square looks the same in every quarter turn, so the split is the autoencoder's.
SETTINGS = {**{k: v for k, v in TINY.items() if k not in ("log_every", "checkpoint_every")},
            "split_by": "ssim", "lr_schedule": "constant",
            "num_seeds": 1, "num_iterations": 60, "log_every": 20, "learning_rate": 3e-3,
            "ae_num_steps": 30, "conv_features": (8,) * 5, "latent_dim": 8, "dense_features": 16}


def _images(kind: str, n: int, seed: int) -> np.ndarray:
    """uint8 `[n, 28, 28]`: a bright square under noise, of a random level up to 40 in normal
    images (the noisiest are the atypical ones), of 90 in anomalies."""
    rng = np.random.default_rng(seed)
    base = np.full((n, 28, 28), 20.0)
    base[:, 8:20, 8:20] = 200
    level = rng.uniform(0, 40, (n, 1, 1)) if kind == "normal" else np.full((n, 1, 1), 90.0)
    return np.clip(base + level * rng.standard_normal((n, 28, 28)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    """An ICS fitted on 96 normal images, and a test set of 20 normal and 20 anomalies."""
    model = ics_jax.ICS(**SETTINGS).fit(_images("normal", 96, 0))
    test = np.concatenate([_images("normal", 20, 1), _images("anomaly", 20, 2)])
    return model, test, np.repeat([0, 1], 20)


def test_anomalies_rank_higher_and_predict_flags_the_contamination(fitted):
    model, test, labels = fitted
    scores = model.decision_function(test)
    assert scores.shape == (40,) and evaluate.auc(labels, scores) > 0.9
    assert model.decision_scores_.shape == (96,)
    flagged = model.predict(_images("normal", 96, 0)).mean()
    assert flagged == pytest.approx(model.contamination, abs=0.03)  # 0.1 by default
    assert set(np.unique(model.predict(test))) <= {0, 1}
    ssim = model.split_score(test)  # the split's own score: normal images reconstruct better
    assert evaluate.auc(labels, -ssim) > 0.8


def test_ics_plus_ssim_averages_each_scores_share_of_training_images_below(fitted, tmp_path):
    model, test, labels = fitted
    train = _images("normal", 96, 0)
    classifier_train, ssim_train = model.decision_function(train), -model.split_score(train)
    classifier, ssim = model.decision_function(test), -model.split_score(test)
    combined = ics_jax.ICS(combine_split=True, **SETTINGS).fit(train)
    share = lambda s, r: ((r[None] < s[:, None]).mean(1)  # noqa: E731
                          + 0.5 * (r[None] == s[:, None]).mean(1))
    expected = (share(classifier, classifier_train) + share(ssim, ssim_train)) / 2
    np.testing.assert_allclose(combined.decision_function(test), expected)
    np.testing.assert_array_equal(combined.decision_function(test[:1]), expected[:1])
    combined.save(str(tmp_path / "model"))
    loaded = ics_jax.ICS.load(str(tmp_path / "model"))
    assert loaded.combine_split
    np.testing.assert_array_equal(loaded.decision_function(test), expected)


def test_ics_plus_ssim_scores_as_the_experiments_variant(fitted, tmp_path):
    _, test, labels = fitted
    train = _images("normal", 96, 0)
    data = data_lib.OneClassData(x_train=data_lib.to_unit_images(train),
                                 x_test=data_lib.to_unit_images(test), y_test=labels,
                                 test_classes=labels)
    config = ics_jax.default_config()
    config.update(SETTINGS)
    results = pipeline.run_experiment(config, str(tmp_path), data=data)
    model = ics_jax.ICS(combine_split=True, **SETTINGS).fit(train)
    assert evaluate.auc(labels, model.decision_function(test)) == results["ics_ssim_auc"]


def test_the_stop_returns_the_network_of_the_iteration_it_names(tmp_path):
    images, test = _images("normal", 96, 0), _images("anomaly", 10, 2)
    # A step size that overshoots: the held-out loss is lowest before the end.
    settings = {**SETTINGS, "learning_rate": 1e-1, "log_every": 10, "validation_fraction": 0.2}
    stopped = ics_jax.ICS(**settings).fit(images)
    (at,) = stopped.stopped_at_
    assert at in (1, 10, 20, 30, 40, 50)  # a report (the first iteration, then every 10)
    short = ics_jax.ICS(**{**settings, "num_iterations": at}).fit(images)
    np.testing.assert_array_equal(stopped.decision_function(test), short.decision_function(test))
    stopped.save(str(tmp_path / "model"))
    assert ics_jax.ICS.load(str(tmp_path / "model")).stopped_at_ == [at]


def test_float_and_channel_last_inputs_score_like_uint8(fitted):
    model, test, _ = fitted
    as_float = test[..., None].astype(np.float32) / 255
    np.testing.assert_array_equal(model.decision_function(as_float),
                                  model.decision_function(test))


def test_save_then_load_gives_bit_identical_scores(fitted, tmp_path):
    model, test, _ = fitted
    model.save(str(tmp_path / "model"))
    loaded = ics_jax.ICS.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.decision_function(test), model.decision_function(test))
    np.testing.assert_array_equal(loaded.split_score(test), model.split_score(test))
    np.testing.assert_array_equal(loaded.decision_scores_, model.decision_scores_)
    assert loaded.threshold_ == model.threshold_ and loaded.config_ == model.config_


def test_an_interrupted_save_leaves_the_previous_save_readable(fitted, tmp_path, monkeypatch):
    model, test, _ = fitted
    path = str(tmp_path / "model")
    model.save(path)

    def broken_save(*args, **kwargs):  # the process dies half way through the new save
        (tmp_path / "model" / "2.orbax-checkpoint-tmp-0").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(ics_jax.ICS.load(path).decision_function(test),
                                  model.decision_function(test))


def test_unreadable_saves_name_the_path(fitted, tmp_path):
    model, _, _ = fitted
    with pytest.raises(checkpoint.ModelFileError, match="no such folder"):
        ics_jax.ICS.load(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.ModelFileError, match="holds no saved model"):
        ics_jax.ICS.load(str(tmp_path / "empty"))
    path = tmp_path / "truncated"
    model.save(str(path))
    for f in pathlib.Path(path).rglob("*"):
        if f.is_file() and "arrays" in f.parts:
            f.write_bytes(f.read_bytes()[:7])
    with pytest.raises(checkpoint.ModelFileError, match="cannot be read") as error:
        ics_jax.ICS.load(str(path))
    assert str(path) in str(error.value)
    other = tmp_path / "other"
    model.save(str(other))
    with pytest.raises(checkpoint.ModelFileError, match="holds a ICS"):
        ics_jax.DeepSVDD.load(str(other))
    shutil.rmtree(other)


@pytest.mark.parametrize("images, message", [
    (np.zeros((4, 28, 28, 1, 1), np.uint8), "expected a non-empty"),
    (np.zeros((4, 28, 28), np.int64), "dtype int64"),
    (np.full((4, 28, 28), 2.0, np.float32), "must lie in \\[0, 1\\]"),
    (np.zeros((4, 32, 32, 3), np.uint8), "fitted on 28x28x1"),
])
def test_bad_inputs_raise_one_value_error_saying_what_works(fitted, images, message):
    model, _, _ = fitted
    with pytest.raises(ValueError, match=message):
        model.decision_function(images)


def test_fit_refuses_fewer_images_than_a_batch_and_unknown_keys():
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        ics_jax.ICS(**SETTINGS).fit(_images("normal", 5, 0))
    with pytest.raises(ValueError, match="no parameter 'num_seed' \\(did you mean 'num_seeds'"):
        ics_jax.ICS(num_seed=2)
    with pytest.raises(ValueError, match="not fitted yet"):
        ics_jax.ICS(**SETTINGS).decision_function(_images("normal", 5, 0))


@pytest.mark.parametrize("cls", [ics_jax.AutoencoderSSIM, ics_jax.DeepSVDD])
def test_the_baseline_detectors_have_the_same_form(cls, tmp_path):
    settings = {**SETTINGS, "dsvdd_ae_num_steps": 20, "dsvdd_num_steps": 20}
    model = cls(**{k: v for k, v in settings.items() if k in cls().get_params()})
    model.fit(_images("normal", 64, 0))
    test = np.concatenate([_images("normal", 10, 1), _images("anomaly", 10, 2)])
    scores = model.decision_function(test)
    assert scores.shape == (20,) and model.predict(test).shape == (20,)
    model.save(str(tmp_path / "model"))
    np.testing.assert_array_equal(cls.load(str(tmp_path / "model")).decision_function(test),
                                  scores)


def test_ics_on_the_teacher_split_scores_as_the_experiment_and_round_trips(tmp_path):
    train, test = _images("normal", 96, 0), np.concatenate([_images("normal", 20, 1),
                                                             _images("anomaly", 20, 2)])
    labels = np.repeat([0, 1], 20)
    settings = {**SETTINGS, "split_by": "teacher", "teacher_num_steps": 5}
    data = data_lib.OneClassData(x_train=data_lib.to_unit_images(train),
                                 x_test=data_lib.to_unit_images(test), y_test=labels,
                                 test_classes=labels)
    config = ics_jax.default_config()
    config.update(settings)
    results = pipeline.run_experiment(config, str(tmp_path / "run"), data=data)
    model = ics_jax.ICS(combine_split=True, **settings).fit(train)
    scores = model.decision_function(test)
    assert evaluate.auc(labels, scores) == results["ics_ssim_auc"]  # ICS + the teacher
    assert evaluate.auc(labels, -model.split_score(test)) == results["ssim_auc"]
    model.save(str(tmp_path / "model"))
    loaded = ics_jax.ICS.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.decision_function(test), scores)
    with pytest.raises(data_lib.DataError, match="square"):
        ics_jax.ICS(**settings).fit(np.zeros((96, 28, 24), np.uint8))
