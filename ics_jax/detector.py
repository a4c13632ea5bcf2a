"""What every detector shares: PyOD's detector contract, scikit-learn's parameter rules, input
checks, progress lines, and `save` / `load`.

PyOD's contract: `fit(X, y=None)` on normal images (`y` is ignored); `decision_function(X)` is
higher for more anomalous images; `predict(X)` is 1 for an outlier, 0 for an inlier, cut at
`threshold_`, the score above which `contamination` of the training images lie;
`predict_proba(X, method='linear' | 'unify')` and `predict_confidence(X)` as PyOD computes them;
`fit_predict(X)` returns `labels_`, the training images' 0/1. scikit-learn's rules: the
constructor's keywords are the parameters, stored unchanged as attributes, so `get_params`,
`set_params`, `sklearn.base.clone` and pickling work; values are checked by `fit` (and
`contamination` also by the constructor, as PyOD does).

A detector is a subclass that sets `method` (the config's), `PARAMS` (its keywords and their
defaults; config keys among them reach the config), where needed `FIXED` (other config keys its
method fixes) and implements `_train(x, config, progress)
-> model_` and `_scores(x) -> [M]`. Fitted state is `model_` (a dict of host arrays, what
`save` writes), `config_`, `image_shape_` and the JSON-able attributes named in `META`.
"""

import difflib
import inspect
import numbers
import sys
import time

import jax
import ml_collections
import numpy as np
from scipy import special, stats
from sklearn import base as sk_base
from sklearn.exceptions import NotFittedError

from ics_jax import checkpoint
from ics_jax import config as config_lib
from ics_jax import data as data_lib

FORMAT_VERSION = 5
MIN_SIZE = 8  # the smallest side: three 2x2 poolings leave a 1x1 map
CHANNELS = (1, 3)


class Detector(sk_base.BaseEstimator):
    """The base class: see the module's docstring. Not a detector itself."""

    method = ""
    PARAMS: dict = {}
    FIXED: dict = {}
    META: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "PARAMS" in cls.__dict__:
            cls.__init__ = _make_init({"contamination": 0.1, **cls.PARAMS, "verbose": False})

    # -- hooks ---------------------------------------------------------------------------------

    def _check_fit(self, x: np.ndarray, config: ml_collections.ConfigDict) -> None:
        """Raises DataError if `x` `[N, H, W, C]` cannot train this detector."""
        if x.shape[0] < config.batch_size:
            raise data_lib.DataError(
                f"fit got {x.shape[0]} images, fewer than batch_size={config.batch_size}; "
                "give more normal images or a smaller batch_size")

    def _train(self, x: np.ndarray, config: ml_collections.ConfigDict, progress) -> dict:
        """Trains on `x` `[N, H, W, C]` float32 in [0, 1]; returns `model_`, a dict of arrays.
        It may set in `config` (a fresh copy, kept as `config_`) what it trained with, and the
        attributes named in `META`. `progress(text)` shows a line when `verbose`."""
        raise NotImplementedError

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Returns `[M]` anomaly scores of `x` `[M, H, W, C]` from `model_` and `config_`."""
        raise NotImplementedError

    # -- the PyOD form -------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Fits the detector on the normal images `X` (`[N, H, W, C]` or `[N, H, W]`, uint8
        0-255 or float in [0, 1]); `y` is ignored. Returns the detector."""
        del y  # unsupervised: present for the pipeline API
        config = self._config()
        x = _images(X)
        self._check_fit(x, config)
        progress = self._progress()
        model = jax.device_get(self._train(x, config, progress))
        self.config_, self.image_shape_, self.model_ = config, tuple(x.shape[1:]), model
        self.decision_scores_ = self.decision_function(x)
        self._set_threshold(float(np.percentile(self.decision_scores_,
                                                100 * (1 - self.contamination))))
        progress(f"fitted on {x.shape[0]} images; threshold_ {self.threshold_:.4g}")
        return self

    def decision_function(self, X) -> np.ndarray:
        """Returns `[M]` float64 anomaly scores of `X`, higher = more anomalous."""
        return np.asarray(self._scores(self._inputs(X)), np.float64)

    def predict(self, X, return_confidence: bool = False):
        """Returns `[M]` int labels, 1 = outlier (score above `threshold_`), 0 = inlier; with
        `return_confidence`, `(labels, predict_confidence(X))`."""
        scores = self.decision_function(X)
        labels = (scores > self.threshold_).astype(int)
        return (labels, self._confidence(scores)) if return_confidence else labels

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """Returns `[M, 2]` probabilities (inlier, outlier) in [0, 1]: `linear`, the score
        min-max scaled by the training images' scores and clipped; `unify`, erf of the score
        standardised by their mean and deviation, clipped (Kriegel et al., 2011). With
        `return_confidence`, `(probabilities, predict_confidence(X))`."""
        if method not in ("linear", "unify"):
            raise ValueError(f"method={method!r} is not a probability conversion; choose "
                             "'linear' or 'unify'")
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            span = train.max() - train.min()
            outlier = (scores - train.min()) / (span if span > 0 else 1.0)
        else:
            outlier = special.erf((scores - self._mu) / (self._sigma * np.sqrt(2)))
        outlier = np.clip(outlier, 0.0, 1.0)
        probs = np.stack([1.0 - outlier, outlier], axis=1)
        return (probs, self._confidence(scores)) if return_confidence else probs

    def predict_confidence(self, X) -> np.ndarray:
        """Returns `[M]` confidence in [0, 1] that `predict` would say the same after a
        slightly different training set (Perini et al., 2020, as PyOD computes it)."""
        return self._confidence(self.decision_function(X))

    def _confidence(self, scores: np.ndarray) -> np.ndarray:
        n = self.decision_scores_.shape[0]
        below = np.searchsorted(np.sort(self.decision_scores_), scores, side="right")
        posterior = (1 + below) / (2 + n)
        confidence = 1 - stats.binom.cdf(n - int(n * self.contamination), n, posterior)
        return np.where(scores > self.threshold_, confidence, 1 - confidence)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fits on `X` and returns `labels_`, `[N]` 0/1 of the training images."""
        return self.fit(X, y).labels_

    # -- save and load -------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Saves the fitted detector in the folder `path` (Orbax); `load(path)` reads it."""
        self._check_fitted()
        meta = {"format_version": FORMAT_VERSION, "kind": type(self).__name__,
                "params": self.get_params(), "config": self.config_.to_dict(),
                "image_shape": list(self.image_shape_), "threshold": self.threshold_,
                "fitted": {name: getattr(self, name) for name in self.META}}
        checkpoint.save_model(path, {"model": self.model_,
                                     "decision_scores": self.decision_scores_}, meta)

    @classmethod
    def load(cls, path: str):
        """Returns the detector saved in the folder `path`: scores bit-identical to the saved
        detector's on the same machine. Builds no network state: the arrays are read as saved."""
        meta = checkpoint.load_model_meta(path)
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != cls.__name__:
            raise checkpoint.ModelFileError(
                f"{path}: holds a {meta.get('kind')} saved in format "
                f"{meta.get('format_version')}; {cls.__name__}.load reads format "
                f"{FORMAT_VERSION} (load it with the class and version that saved it)")
        model = cls(**{k: tuple(v) if isinstance(cls.PARAMS.get(k), tuple) else v
                       for k, v in meta["params"].items()})
        model.config_ = _config_from(meta["config"])
        model.image_shape_ = tuple(meta["image_shape"])
        for name, value in meta["fitted"].items():
            setattr(model, name, value)
        arrays = checkpoint.load_model_arrays(path)
        model.model_ = arrays["model"]
        model.decision_scores_ = np.asarray(arrays["decision_scores"])
        model._set_threshold(meta["threshold"])
        return model

    # -- shared parts --------------------------------------------------------------------------

    def _config(self) -> ml_collections.ConfigDict:
        """Returns the validated, resolved config of the parameters; ConfigError names the
        first bad value."""
        check_contamination(self.contamination)
        config = config_lib.default_config()
        params = self.get_params()
        for key in config:
            if key in params:
                try:
                    config[key] = params[key]
                except TypeError as e:
                    raise config_lib.ConfigError(
                        f"{key}={params[key]!r} has the wrong type; the default is "
                        f"{config[key]!r}") from e
        config.update(method=self.method, **self.FIXED)
        config_lib.validate(config)
        return config_lib.resolved(config)

    def _set_threshold(self, threshold: float) -> None:
        self.threshold_ = threshold
        self.labels_ = (self.decision_scores_ > threshold).astype(int)
        self._mu = float(np.mean(self.decision_scores_))
        self._sigma = float(np.std(self.decision_scores_)) or 1.0

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 f"fit(images) or {type(self).__name__}.load(path) first")

    def _inputs(self, images) -> np.ndarray:
        self._check_fitted()
        x = _images(images)
        if x.shape[1:] != self.image_shape_:
            raise data_lib.DataError(f"images are {_shape(x.shape[1:])}, but the model was "
                                     f"fitted on {_shape(self.image_shape_)}; resize them first")
        return x

    def _progress(self):
        start = time.perf_counter()

        def show(text: str) -> None:
            if self.verbose:
                print(f"{type(self).__name__} {time.perf_counter() - start:7.1f}s  {text}",
                      file=sys.stderr, flush=True)
        return show


def check_contamination(contamination) -> None:
    """Raises ConfigError unless `contamination` is a number in (0, 0.5], PyOD's bounds."""
    if (isinstance(contamination, bool) or not isinstance(contamination, numbers.Real)
            or not 0.0 < contamination <= 0.5):
        raise config_lib.ConfigError(f"contamination={contamination!r} must lie in (0, 0.5]: "
                                     "the share of training images predict flags")


def _make_init(defaults: dict):
    """Returns an `__init__` that takes `defaults`' names as keywords and stores them as given,
    with a signature that scikit-learn's `get_params` reads."""

    def __init__(self, **params):
        unknown = [name for name in params if name not in defaults]
        if unknown:
            close = difflib.get_close_matches(unknown[0], defaults, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise config_lib.ConfigError(
                f"{type(self).__name__} has no parameter {unknown[0]!r}{hint}; see "
                f"{type(self).__name__}().get_params() for its parameters")
        for name, default in defaults.items():
            setattr(self, name, params.get(name, default))
        check_contamination(self.contamination)

    keyword = inspect.Parameter.KEYWORD_ONLY
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, keyword, default=value) for name, value in defaults.items()])
    return __init__


def _images(images) -> np.ndarray:
    return data_lib.to_unit_images(images, min_size=MIN_SIZE, channels=CHANNELS)


def _config_from(values: dict) -> ml_collections.ConfigDict:
    """Returns the default config with the saved `values` (JSON lists back to tuples)."""
    config = config_lib.default_config()
    for key, value in values.items():
        if key in config:
            config[key] = value
    return config_lib.resolved(config)


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)
