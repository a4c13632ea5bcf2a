"""One-class detectors for anyone's images: fit on normal images, score, predict, save, load.

    model = ics_jax.ICS(num_iterations=1000).fit(normal_images)
    scores = model.decision_function(new_images)  # [M], higher = more anomalous
    model.save("detector"); model = ics_jax.ICS.load("detector")

The PyOD convention: `decision_function` is higher for more anomalous images, `predict` is 1
for an anomaly, 0 for normal, cut at a threshold that flags `contamination` of the training
images (default: the split's `rho`), and `decision_scores_` holds the training images' scores.
`ICS`, `DeepSVDD` and `AutoencoderSSIM` (the split autoencoder's SSIM alone, the paper's SSIM
baseline) share this form, so swapping one for another is one line. Images are `[N, H, W, C]`
(or `[N, H, W]` for one channel), uint8 0-255 or float in [0, 1]. Any key of
`ics_jax.default_config()` is a keyword (the split autoencoder's code size is MNIST's, 16, unless
`ae_latent_channels=` or `dataset=` says otherwise); `fit` trains exactly as `run_experiment`
does (the same split, trainer and keys), without a workdir.
"""

import sys

import jax
import numpy as np

from ics_jax import autoencoder as ae_lib
from ics_jax import baselines, checkpoint, dsvdd, evaluate, trainer
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import split as split_lib

FORMAT_VERSION = 2


class _Detector:
    """What every detector shares: config, input checks, threshold, save and load."""

    method = ""

    def __init__(self, *, contamination: float | None = None, **overrides):
        config = config_lib.default_config()
        unknown = sorted(set(overrides) - set(config))
        if unknown:
            raise config_lib.ConfigError(f"unknown config key {unknown[0]!r}; the keys are "
                                         "those of ics_jax.default_config()")
        config.update(overrides, method=self.method)
        config_lib.validate(config)
        self.config = config_lib.resolved(config)
        self.contamination = config.rho if contamination is None else contamination
        if not 0.0 < self.contamination < 0.5:
            raise config_lib.ConfigError(f"contamination={self.contamination} must lie in "
                                         "(0, 0.5): the share of training images to flag")
        self.image_shape = None  # (H, W, C), set by fit
        self.threshold_ = None
        self.decision_scores_ = None

    # -- inputs -----------------------------------------------------------------------------

    def _inputs(self, images, fitting: bool = False) -> np.ndarray:
        x = data_lib.to_unit_images(images)
        if fitting:
            if x.shape[0] < self.config.batch_size:
                raise data_lib.DataError(
                    f"fit got {x.shape[0]} images, fewer than batch_size="
                    f"{self.config.batch_size}; give more normal images or a smaller batch_size")
            return x
        if self.image_shape is None:
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(images) "
                             "or load(path) first")
        if x.shape[1:] != self.image_shape:
            raise data_lib.DataError(f"images are {_shape(x.shape[1:])}, but the model was "
                                     f"fitted on {_shape(self.image_shape)}; resize them first")
        return x

    def _progress(self, verbose: bool):
        def show(event: dict) -> None:
            if verbose:
                print(_progress_line(event), file=sys.stderr, flush=True)
        return show

    # -- the PyOD form ------------------------------------------------------------------------

    def fit(self, images, verbose: bool = False):
        """Fits the detector on normal `images`; returns it. `verbose`: progress on stderr."""
        x = self._inputs(images, fitting=True)
        self._fit(x, self._progress(verbose))
        self.image_shape = tuple(x.shape[1:])
        self.decision_scores_ = self.decision_function(x)
        self.threshold_ = float(np.quantile(self.decision_scores_, 1.0 - self.contamination))
        return self

    def decision_function(self, images) -> np.ndarray:
        """Returns `[M]` anomaly scores, higher = more anomalous."""
        return np.asarray(self._scores(self._inputs(images)), np.float64)

    def predict(self, images) -> np.ndarray:
        """Returns `[M]` int labels: 1 = anomaly (score above `threshold_`), 0 = normal."""
        return (self.decision_function(images) > self.threshold_).astype(np.int64)

    # -- save and load -------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Saves the fitted detector in the folder `path` (Orbax); `load(path)` reads it."""
        if self.image_shape is None:
            raise ValueError(f"this {type(self).__name__} is not fitted yet; nothing to save")
        meta = {"format_version": FORMAT_VERSION, "kind": type(self).__name__,
                "config": self.config.to_dict(), "image_shape": list(self.image_shape),
                "contamination": self.contamination, "threshold": self.threshold_,
                "extra": self._extra()}
        checkpoint.save_model(path, {"arrays": self._arrays(),
                                     "decision_scores": self.decision_scores_}, meta)

    @classmethod
    def load(cls, path: str):
        """Returns the detector saved in the folder `path`; scores are bit-identical to the
        saved model's on the same machine."""
        meta = checkpoint.load_model_meta(path)
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != cls.__name__:
            raise checkpoint.ModelFileError(
                f"{path}: holds a {meta.get('kind')} saved in format "
                f"{meta.get('format_version')}; {cls.__name__}.load reads format "
                f"{FORMAT_VERSION} (load it with the class and version that saved it)")
        defaults = config_lib.default_config()
        overrides = {k: tuple(v) if isinstance(defaults[k], tuple) else v
                     for k, v in meta["config"].items() if k in defaults and k != "method"}
        model = cls(contamination=meta["contamination"], **overrides)
        model.image_shape = tuple(meta["image_shape"])
        model.threshold_ = meta["threshold"]
        like = {"arrays": model._arrays_like(meta["extra"]),
                "decision_scores": np.zeros(meta["extra"]["num_train"], np.float64)}
        arrays = checkpoint.load_model_arrays(path, like)
        model._restore(arrays["arrays"], meta["extra"])
        model.decision_scores_ = np.asarray(arrays["decision_scores"])
        return model


class ICS(_Detector):
    """Deep one-class classification by intra-class splitting: the split autoencoder's SSIM
    splits the normal images into typical and atypical, and `num_seeds` classifiers are
    trained on the split. `decision_function` is their mean anomaly logit; with
    `combine_ssim=True`, ICS + SSIM: the mean of an image's rank by that logit and by its SSIM
    anomaly score, each among the training images' (`evaluate.ics_ssim_scores`). With
    `validation_fraction`, each classifier is the one of the report with the lowest binary loss
    on that part of the split, held out; `stopped_at_` lists those iterations (else None)."""

    method = "ics"

    def __init__(self, *, combine_ssim: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.combine_ssim = combine_ssim

    def _fit(self, x, progress):
        split_key = split_lib.split_key(self.config)
        split, (self._ae, self._ae_params) = split_lib.compute_split(
            self.config, x, split_key,
            progress=lambda step, loss: progress({"stage": "split", "step": step,
                                                  "num_steps": self.config.ae_num_steps,
                                                  "loss": loss}))
        self._trainer = trainer.make_trainer(self.config)
        training_split, stop = trainer.stop_rule(self._trainer, self.config, x, split, split_key)
        self._states = jax.device_get(trainer.train_states(
            self._trainer, self.config, trainer.split_data(x, training_split), x.shape[1:],
            stop=stop, on_report=lambda it, metrics, _: progress(
                {"stage": "train", "iteration": it,
                 "num_iterations": self.config.num_iterations,
                 "losses": {k.removeprefix("loss/"): v for k, v in metrics.items()
                            if k.startswith("loss/")}})))
        self._num_train = x.shape[0]
        self.stopped_at_ = None if stop is None else stop.summary()["stopped_at"]
        self._reference = {"classifier": np.asarray(self._classifier_scores(x), np.float64),
                           "ssim": -np.asarray(split.scores, np.float64)}

    def _classifier_scores(self, x):
        return np.mean(trainer.test_scores(self._trainer, self._states, x), axis=0)

    def _scores(self, x):
        if not self.combine_ssim:
            return self._classifier_scores(x)
        return evaluate.ics_ssim_scores(
            self._classifier_scores(x), -split_lib.ssim_scores(
                self._ae, self._ae_params, x, self.config.ssim_max_val),
            self._reference["classifier"], self._reference["ssim"])

    def ssim_score(self, images) -> np.ndarray:
        """Returns `[M]` the split autoencoder's SSIM of each image against its reconstruction
        (higher = more typical): the score the split was cut by."""
        return split_lib.ssim_scores(self._ae, self._ae_params, self._inputs(images),
                                     self.config.ssim_max_val)

    def _extra(self):
        return {"num_train": self._num_train, "stopped_at": self.stopped_at_,
                "combine_ssim": self.combine_ssim}

    def _arrays(self):
        return {"classifier": self._states, "autoencoder": self._ae_params,
                "reference": self._reference}

    def _arrays_like(self, extra):
        self._trainer = trainer.make_trainer(self.config)
        self._ae = ae_lib.build_autoencoder(self.config)
        x = np.zeros((1, *self.image_shape), np.float32)
        return {"classifier": jax.device_get(self._trainer.init_states(
                    trainer.seed_ids(self.config), self.image_shape)),
                "autoencoder": jax.device_get(self._ae.init(jax.random.key(0), x)["params"]),
                "reference": {k: np.zeros(extra["num_train"], np.float64)
                              for k in ("classifier", "ssim")}}

    def _restore(self, arrays, extra):
        self._states, self._ae_params = arrays["classifier"], arrays["autoencoder"]
        self._reference = {k: np.asarray(v) for k, v in arrays["reference"].items()}
        self._num_train = extra["num_train"]
        self.stopped_at_ = extra.get("stopped_at")
        self.combine_ssim = extra["combine_ssim"]


class AutoencoderSSIM(_Detector):
    """The split autoencoder alone: an image is as anomalous as its reconstruction is unlike
    it (minus SSIM; the paper's SSIM baseline)."""

    method = "ssim"

    def _fit(self, x, progress):
        self._ae, self._ae_params = ae_lib.train_autoencoder(
            x, split_lib.split_key(self.config), num_steps=self.config.ae_num_steps,
            batch_size=self.config.batch_size, learning_rate=self.config.ae_learning_rate,
            autoencoder=ae_lib.build_autoencoder(self.config), loss=self.config.ae_loss,
            progress=lambda step, loss: progress({"stage": "split", "step": step,
                                                  "num_steps": self.config.ae_num_steps,
                                                  "loss": loss}))
        self._num_train = x.shape[0]

    def _scores(self, x):
        return -split_lib.ssim_scores(self._ae, self._ae_params, x, self.config.ssim_max_val)

    def _extra(self):
        return {"num_train": self._num_train}

    def _arrays(self):
        return {"autoencoder": self._ae_params}

    def _arrays_like(self, extra):
        self._ae = ae_lib.build_autoencoder(self.config)
        x = np.zeros((1, *self.image_shape), np.float32)
        return {"autoencoder": jax.device_get(self._ae.init(jax.random.key(0), x)["params"])}

    def _restore(self, arrays, extra):
        self._ae_params, self._num_train = arrays["autoencoder"], extra["num_train"]


class DeepSVDD(_Detector):
    """Deep SVDD (Ruff et al., 2018) on contrast-normalised, min-max scaled images: the
    squared distance of an image's features from the centre of the normal ones."""

    method = "dsvdd"

    def _fit(self, x, progress):
        self._low, self._scale = baselines.contrast_scaling(x)
        progress({"stage": "dsvdd", "steps": self.config.dsvdd_ae_num_steps
                  + self.config.dsvdd_num_steps})
        self._encoder, self._variables, self._center = dsvdd.train_dsvdd(
            baselines.scaled_inputs(x, self._low, self._scale), jax.random.key(self.config.seed),
            ae_num_steps=self.config.dsvdd_ae_num_steps, num_steps=self.config.dsvdd_num_steps,
            batch_size=self.config.batch_size, learning_rate=self.config.dsvdd_learning_rate)
        self._num_train = x.shape[0]

    def _scores(self, x):
        return dsvdd.dsvdd_scores(self._encoder, self._variables, self._center,
                                  baselines.scaled_inputs(x, self._low, self._scale))

    def _extra(self):
        return {"num_train": self._num_train, "low": self._low, "scale": self._scale}

    def _arrays(self):
        return {"variables": self._variables, "center": self._center}

    def _arrays_like(self, extra):
        self._encoder = dsvdd.encoder_for(self.image_shape)
        x = np.zeros((1, *self.image_shape), np.float32)
        variables = jax.device_get(self._encoder.init(jax.random.key(0), x, train=False))
        return {"variables": variables, "center": np.zeros(self._encoder.rep_dim, np.float32)}

    def _restore(self, arrays, extra):
        self._variables, self._center = arrays["variables"], arrays["center"]
        self._num_train, self._low, self._scale = extra["num_train"], extra["low"], extra["scale"]


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _progress_line(event: dict) -> str:
    if event["stage"] == "split":
        return (f"split autoencoder: step {event['step']}/{event['num_steps']}  "
                f"loss {event['loss']:.4f}")
    if event["stage"] == "dsvdd":
        return f"Deep SVDD: {event['steps']} steps"
    losses = "  ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
    return f"iteration {event['iteration']}/{event['num_iterations']}  {losses}"

