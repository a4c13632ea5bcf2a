"""The paper's baselines that are not the ICS network (section 3.1): OCSVM, Isolation Forest,
ImageNet features + OCSVM, the split's own score, and Deep SVDD. (The transformation teacher, a
detector of its own, trains with seeds in `ics_jax/trainer.py`.)

Every function returns anomaly scores, higher = more anomalous. By default OCSVM, IF and Deep
SVDD see the inputs of Ruff et al. (ICML 2018), whose settings the paper says they shared: global
contrast normalisation (l1) per image, then min-max scaling with the extremes of the normal
training class (`config.baseline_inputs='pixels'`: the [0, 1] pixels instead).
"""


import jax
import numpy as np
from sklearn import ensemble, svm

from ics_jax import dsvdd, vgg
from ics_jax import split as split_lib


def global_contrast_normalize(images: np.ndarray) -> np.ndarray:
    """Returns `[N, ...]` images minus their own mean, divided by their own mean absolute value
    (Ruff et al.'s l1 global contrast normalisation); a constant image becomes all zeros."""
    x = images.reshape(images.shape[0], -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    scale = np.abs(x).mean(axis=1, keepdims=True)
    return (x / np.where(scale > 0, scale, 1.0)).reshape(images.shape).astype(np.float32)


def contrast_scaling(x_train: np.ndarray) -> tuple[float, float]:
    """Returns `(low, scale)`: the minimum and range of the contrast-normalised normal training
    images, the min-max scaling that maps them onto [0, 1]."""
    train = global_contrast_normalize(x_train)
    low, high = float(train.min()), float(train.max())
    return low, (high - low if high > low else 1.0)


def scaled_inputs(images: np.ndarray, low: float, scale: float) -> np.ndarray:
    """Returns `images` contrast-normalised, then min-max scaled by `contrast_scaling`'s."""
    return (global_contrast_normalize(images) - low) / scale


def deep_svdd_inputs(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(train, test)` images, same shapes: contrast-normalised, then min-max scaled with
    the minimum and maximum of the normalised training (normal) images, so train lies in [0, 1]."""
    low, scale = contrast_scaling(x_train)
    return scaled_inputs(x_train, low, scale), scaled_inputs(x_test, low, scale)


def ocsvm_scores(train_features: np.ndarray, test_features: np.ndarray,
                 nu: float = 0.15) -> np.ndarray:
    """Returns `[M]` scores of a one-class SVM (RBF kernel, gamma = 1 / #features) fitted on
    `[N, D]` normal features: minus the signed distance to its boundary."""
    model = svm.OneClassSVM(kernel="rbf", nu=nu, gamma="auto").fit(_flat(train_features))
    return -model.decision_function(_flat(test_features))


def iforest_scores(train_features: np.ndarray, test_features: np.ndarray, seed: int,
                   num_estimators: int = 100) -> np.ndarray:
    """Returns `[M]` Isolation Forest scores (minus sklearn's `score_samples`)."""
    model = ensemble.IsolationForest(n_estimators=num_estimators, random_state=seed)
    return -model.fit(_flat(train_features)).score_samples(_flat(test_features))


def ssim_anomaly_scores(split: split_lib.Split) -> np.ndarray:
    """Returns `[M]` minus the test images' typicality the split was cut by: with the SSIM
    split, minus SSIM against their reconstruction (the paper's 'SSIM' column: low similarity
    = anomalous)."""
    if split.test_scores is None:
        raise ValueError("the split has no test SSIM scores; compute it with the test images")
    return -np.asarray(split.test_scores)


# A baseline's scores for `methods.METHODS`: `(config, data, split, seed_ids) -> [[M], ...]`
# (`data` a `data.OneClassData`, `split` a `split.Split` or None), one array per seed of
# `seed_ids` (one array for a method the registry marks unseeded).

def split_score(config, data, split, seed_ids) -> list[np.ndarray]:
    """The split's own score (with the SSIM split, the autoencoder's SSIM)."""
    return [ssim_anomaly_scores(split)]


def imagenet_ocsvm(config, data, split, seed_ids) -> list[np.ndarray]:
    """The OCSVM on VGG19 ImageNet features (`config.vgg19_weights`)."""
    params = vgg.load_params(config.vgg19_weights)
    features = [vgg.extract_features(params, x, image_size=config.vgg_image_size)
                for x in (data.x_train, data.x_test)]
    return [ocsvm_scores(*features, nu=config.ocsvm_nu)]


def ocsvm(config, data, split, seed_ids) -> list[np.ndarray]:
    """The OCSVM on `config.baseline_inputs`."""
    return [ocsvm_scores(*_inputs(config, data), nu=config.ocsvm_nu)]


def iforest(config, data, split, seed_ids) -> list[np.ndarray]:
    """The Isolation Forest on `config.baseline_inputs`, one per seed."""
    train, test = _inputs(config, data)
    return [iforest_scores(train, test, seed, config.iforest_num_estimators)
            for seed in seed_ids]


def deep_svdd(config, data, split, seed_ids) -> list[np.ndarray]:
    """Deep SVDD on `config.baseline_inputs`, one per seed."""
    train, test = _inputs(config, data)
    return [dsvdd.run_dsvdd(train, test, jax.random.key(seed),
                            ae_num_steps=config.dsvdd_ae_num_steps,
                            num_steps=config.dsvdd_num_steps, batch_size=config.batch_size,
                            learning_rate=config.dsvdd_learning_rate)
            for seed in seed_ids]


def _inputs(config, data) -> tuple[np.ndarray, np.ndarray]:
    if config.baseline_inputs == "gcn_minmax":
        return deep_svdd_inputs(data.x_train, data.x_test)
    return data.x_train, data.x_test


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1)
