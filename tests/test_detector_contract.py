"""Every detector keeps PyOD's detector contract (the assertions of PyOD's own detector tests, on
small synthetic images) and scikit-learn's parameter rules, and refuses each bad input with one
clear ValueError before any training."""

import pickle
import time

import jax
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import ics_jax
from ics_jax import checkpoint, dsvdd, evaluate, models
from ics_jax import config as config_lib
from ics_jax import data as data_lib

# Tiny networks and budgets: each detector fits in seconds. (At 4 channels the ICS classifier's
# ReLUs died on some seeds; at 8 it learns.)
TINY_TEACHER = {"teacher_num_steps": 40, "teacher_conv_features": (8,) * 5,
                "teacher_dense_features": 16, "teacher_learning_rate": 3e-3}
TINY = {
    ics_jax.ICS: {"num_iterations": 40, "log_every": 20, "learning_rate": 3e-3,
                  "ae_num_steps": 20, "batch_size": 8, "conv_features": (8,) * 5,
                  "dense_features": 16, "latent_dim": 8, "ae_conv_features": (4,) * 5,
                  "ae_latent_channels": 4, **TINY_TEACHER},
    ics_jax.AutoencoderSSIM: {"ae_num_steps": 60, "batch_size": 8, "ae_conv_features": (4,) * 5,
                              "ae_latent_channels": 4, "ae_learning_rate": 3e-3},
    ics_jax.DeepSVDD: {"dsvdd_ae_num_steps": 30, "dsvdd_num_steps": 30, "batch_size": 8,
                       "dsvdd_learning_rate": 1e-3},
    ics_jax.Teacher: {"batch_size": 8, **TINY_TEACHER},
    ics_jax.SplitScore: {"ae_num_steps": 60, "batch_size": 8, "ae_conv_features": (4,) * 5,
                         "ae_latent_channels": 4, "ae_learning_rate": 3e-3, **TINY_TEACHER},
}
DETECTORS = list(TINY)
SIZE = 16
N_TRAIN = 64
ROC_FLOOR = 0.8


def _images(kind: str, n: int, seed: int) -> np.ndarray:
    """uint8 `[n, SIZE, SIZE]`: a bright square with a bar on top (upright: no quarter turn
    maps it onto itself) under mild noise (normal) or heavy noise (anomaly)."""
    rng = np.random.default_rng(seed)
    base = np.full((n, SIZE, SIZE), 20.0)
    base[:, 4:12, 4:12] = 200
    base[:, 1:3, 2:14] = 200
    level = rng.uniform(0, 30, (n, 1, 1)) if kind == "normal" else np.full((n, 1, 1), 100.0)
    return np.clip(base + level * rng.standard_normal((n, SIZE, SIZE)), 0, 255).astype(np.uint8)


TRAIN = _images("normal", N_TRAIN, 0)
TEST = np.concatenate([_images("normal", 16, 1), _images("anomaly", 16, 2)])
LABELS = np.repeat([0, 1], 16)


@pytest.fixture(scope="module", params=DETECTORS, ids=lambda cls: cls.__name__)
def fitted(request):
    return request.param(**TINY[request.param]).fit(TRAIN)


def test_fitted_attributes_have_the_training_images_shapes(fitted):
    assert fitted.decision_scores_.shape == (N_TRAIN,)
    assert fitted.labels_.shape == (N_TRAIN,) and set(np.unique(fitted.labels_)) <= {0, 1}
    assert np.isfinite(fitted.threshold_) and fitted._mu is not None and fitted._sigma > 0
    assert fitted.model_ and fitted.image_shape_ == (SIZE, SIZE, 1)
    assert fitted.labels_.mean() == pytest.approx(fitted.contamination, abs=2 / N_TRAIN)


def test_scores_rank_anomalies_higher(fitted):
    scores = fitted.decision_function(TEST)
    assert scores.shape == (TEST.shape[0],) and scores.dtype == np.float64
    assert np.unique(scores).size > 1
    assert evaluate.auc(LABELS, scores) >= ROC_FLOOR


def test_predictions_have_the_shapes_and_ranges_of_pyod(fitted):
    labels = fitted.predict(TEST)
    assert labels.shape == LABELS.shape and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, fitted.decision_function(TEST) > fitted.threshold_)
    for method in ("linear", "unify"):
        proba = fitted.predict_proba(TEST, method=method)
        assert proba.shape == (TEST.shape[0], 2) and proba.min() >= 0 and proba.max() <= 1
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(fitted.predict_proba(TEST),
                                  fitted.predict_proba(TEST, method="linear"))
    with pytest.raises(ValueError, match="'linear' or 'unify'"):
        fitted.predict_proba(TEST, method="something")
    confidence = fitted.predict_confidence(TEST)
    assert confidence.shape == LABELS.shape and confidence.min() >= 0 and confidence.max() <= 1
    labels_too, confidence_too = fitted.predict(TEST, return_confidence=True)
    np.testing.assert_array_equal(labels_too, labels)
    np.testing.assert_array_equal(confidence_too, confidence)


def test_clone_is_unfitted_with_equal_parameters_and_refits_bit_for_bit(fitted):
    copy = clone(fitted)
    assert not hasattr(copy, "model_") and copy.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        copy.decision_function(TEST)
    labels = copy.fit_predict(TRAIN, np.zeros(N_TRAIN))  # a pipeline's y is ignored
    np.testing.assert_array_equal(labels, fitted.labels_)
    np.testing.assert_array_equal(copy.decision_function(TEST), fitted.decision_function(TEST))
    assert copy.set_params(contamination=0.2).contamination == 0.2
    with pytest.raises(ValueError, match="Invalid parameter"):
        copy.set_params(no_such_parameter=1)


def test_save_then_load_and_pickle_reproduce_scores_labels_and_threshold(fitted, tmp_path):
    fitted.save(str(tmp_path / "model"))
    loaded = type(fitted).load(str(tmp_path / "model"))
    unpickled = pickle.loads(pickle.dumps(fitted))
    for other in (loaded, unpickled):
        np.testing.assert_array_equal(other.decision_function(TEST), fitted.decision_function(TEST))
        np.testing.assert_array_equal(other.decision_scores_, fitted.decision_scores_)
        np.testing.assert_array_equal(other.labels_, fitted.labels_)
        assert other.threshold_ == fitted.threshold_ and other.get_params() == fitted.get_params()
        assert other.config_ == fitted.config_


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
def test_contamination_keeps_pyod_bounds(cls):
    assert cls().contamination == 0.1 and cls(contamination=0.5).contamination == 0.5
    for bad in (0, 0.51, -0.5, "0.1"):
        with pytest.raises(ValueError, match="contamination"):
            cls(contamination=bad)


def _bad_sizes():
    return [np.zeros((SIZE, SIZE), np.uint8)] * 3 + [np.zeros((SIZE + 1, SIZE), np.uint8)]


def _with(value, **where):
    x = TRAIN.astype(np.float32) / 255
    x[where["at"]] = value
    return x


BAD_INPUTS = {
    "channels first": (np.zeros((N_TRAIN, 1, SIZE, SIZE), np.uint8), "channels-first"),
    "4x4": (np.zeros((N_TRAIN, 4, 4), np.uint8), "at least 8x8"),
    "2x2": (np.zeros((N_TRAIN, 2, 2, 3), np.uint8), "at least 8x8"),
    "NaN": (_with(np.nan, at=(5, 3, 3)), "NaN or Inf \\(first in image 5\\)"),
    "Inf": (_with(np.inf, at=(0, 0, 0)), "NaN or Inf"),
    "different sizes": (_bad_sizes(), "different sizes"),
    "two channels": (np.zeros((N_TRAIN, SIZE, SIZE, 2), np.uint8), "C in \\(1, 3\\)"),
}


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_inputs_raise_one_clear_error_before_training(cls, name, monkeypatch):
    images, message = BAD_INPUTS[name]
    monkeypatch.setattr(cls, "_train", _never)
    start = time.perf_counter()
    with pytest.raises(data_lib.DataError, match=message) as error:
        cls(**TINY[cls]).fit(images)
    assert time.perf_counter() - start < 5 and "\n" not in str(error.value)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda cls: cls.__name__)
def test_bad_parameters_raise_one_clear_error(cls, monkeypatch):
    monkeypatch.setattr(cls, "_train", _never)
    with pytest.raises(config_lib.ConfigError, match="no parameter 'batchsize'.*'batch_size'"):
        cls(batchsize=8)
    with pytest.raises(config_lib.ConfigError, match="batch_size=3 must be even"):
        cls(batch_size=3).fit(TRAIN)
    with pytest.raises(config_lib.ConfigError, match="wrong type"):
        cls(batch_size="8").fit(TRAIN)
    with pytest.raises(data_lib.DataError, match="fewer than batch_size=64"):
        cls().fit(TRAIN[:10])


def test_unfitted_detectors_refuse_to_score_or_save(tmp_path):
    for model in (cls() for cls in DETECTORS):
        for method in ("decision_function", "predict", "predict_proba", "predict_confidence"):
            with pytest.raises(NotFittedError, match="call fit"):
                getattr(model, method)(TEST)
        with pytest.raises(NotFittedError):
            model.save(str(tmp_path / "model"))
    with pytest.raises(NotFittedError):
        ics_jax.ICS().split_score(TEST)


def test_save_to_a_file_raises_before_writing(fitted, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a folder")
    start = time.perf_counter()
    for target in (path, path / "model"):
        with pytest.raises(checkpoint.ModelFileError, match="is a file"):
            fitted.save(str(target))
    assert time.perf_counter() - start < 1 and path.read_bytes() == b"not a folder"


@pytest.mark.parametrize("shape", [(8, 8, 1), (9, 13, 3), (128, 128, 1), (128, 96, 3)])
def test_every_network_takes_8x8_to_128x128_with_one_or_three_channels(shape):
    x = jax.ShapeDtypeStruct((2, *shape), np.float32)
    for module, out in ((models.AlexNet(), (2, 128)), (models.AutoEncoder(), (2, *shape)),
                        (dsvdd.LeNetAutoEncoder(dsvdd.encoder_for(shape)), (2, *shape))):
        apply = lambda x, m=module: m.init_with_output(jax.random.key(0), x, train=False)[0]  # noqa: E731
        assert jax.eval_shape(apply, x).shape == out


def _never(*args, **kwargs):
    raise AssertionError("training started")


def test_the_teacher_refuses_images_that_are_not_square_before_training(monkeypatch):
    monkeypatch.setattr(ics_jax.Teacher, "_train", _never)
    with pytest.raises(data_lib.DataError, match="square images; these are 16x12"):
        ics_jax.Teacher(**TINY[ics_jax.Teacher]).fit(TRAIN[:, :, :12])
