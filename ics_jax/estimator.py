"""The detectors: `SplitScore` (the self-checked split's own score: the teacher and SSIM, each
as far as it sees), `ICS` (by default on that split), `Teacher` (the transformation teacher
alone), `AutoencoderSSIM` (the split autoencoder's SSIM alone, the paper's SSIM baseline) and
`DeepSVDD`, each a `detector.Detector` (PyOD's methods and attributes, scikit-learn's
parameters, save and load).

    model = ics_jax.SplitScore().fit(normal_images)  # [N, H, W, C] or [N, H, W], uint8 or [0, 1]
    scores = model.decision_function(new_images)  # [M], higher = more anomalous
    model.save("detector"); model = ics_jax.SplitScore.load("detector")

The parameters are config keys (`ics_jax.default_config()`, the experiments' defaults) with
defaults of their own where a detector should fit about 6,000 small images in minutes on a
CPU: one seed, 300 split-autoencoder steps and at most 300 ICS iterations, not the paper's 5
seeds x 10,000 (docs/estimator.md has the measurements). With the same keys (`max_epochs=None`)
`fit` trains as `run_experiment` does (the same split, trainer and keys), without a workdir.
"""

import math

import jax
import numpy as np

from ics_jax import autoencoder as ae_lib
from ics_jax import baselines, detector, dsvdd, evaluate, methods, step, trainer
from ics_jax import config as config_lib
from ics_jax import data as data_lib
from ics_jax import sight as sight_lib
from ics_jax import split as split_lib
from ics_jax import teacher as teacher_lib

# The split autoencoder's keys, shared by ICS, SplitScore and AutoencoderSSIM (`rho` and
# `split_by` are ICS's alone; `ae_latent_channels` is set below).
_AE_KEYS = ("batch_size", *(k for k in methods.SPLIT_KEYS
                            if k not in ("rho", "split_by", "ae_latent_channels")))
# The transformation teacher's keys, shared by ICS, SplitScore and Teacher.
_TEACHER_KEYS = methods.TEACHER_KEYS
# The autoencoder's code size: MNIST's (a dataset's is a config matter; docs/results.md); half the
# experiments' steps, for time (docs/estimator.md).
_AE_DEFAULTS = {"ae_latent_channels": config_lib.AE_LATENT_CHANNELS["mnist"],
                "ae_num_steps": 300}


def config_defaults(*keys: str) -> dict:
    """Returns `{key: default}` of `ics_jax.default_config()` for `keys`."""
    config = config_lib.default_config()
    return {key: config[key] for key in keys}


class ICS(detector.Detector):
    """Deep one-class classification by intra-class splitting: a score splits the normal images
    into typical and the `rho` least typical (`split_by`: 'auto', `SplitScore`'s score; 'ssim',
    the split autoencoder's, the paper's; 'teacher', the transformation teacher's), and
    `num_seeds` classifiers are trained on the split. `decision_function` is their mean anomaly
    logit; with `combine_split=True`, ICS + the split's score: the mean of an image's rank by
    that logit and by the anomaly score the split was cut by, each among the training images'
    (`evaluate.ics_split_scores`).

    Training length: `num_iterations`, at most `max_epochs` passes of the binary phase's
    batches over the N images (`ceil(max_epochs * N / batch_size)`; None: no cap); `n_iter_`
    is the number trained. With `validation_fraction`, each classifier is the one of the
    report with the lowest binary loss on that part of the split, held out; `stopped_at_`
    lists those iterations (else None)."""

    method = "ics"
    PARAMS = {
        **config_defaults(
            "rho", "seed", "backbone", "conv_features", "dense_features", "latent_dim",
            "batch_norm", "dropout", "distance", "schedule", "dispersion_weight", "augment",
            "validation_fraction", "learning_rate", "lr_schedule", "warmup_iterations",
            "adam_b1", "weight_decay", "split_by", "student", "targets", *_AE_KEYS,
            *_TEACHER_KEYS),
        **_AE_DEFAULTS, "num_seeds": 1, "num_iterations": 300, "max_epochs": 100,
        "log_every": 50, "combine_split": False}
    META = ("n_iter_", "stopped_at_", "combine_split_", "checks_", "weights_")

    def _check_fit(self, x, config):
        super()._check_fit(x, config)
        if config.split_by == "teacher":
            _check_square(x, "or split by the autoencoder's SSIM (split_by='ssim')")
        atypical = int(round(config.rho * x.shape[0]))
        if not 2 <= atypical <= x.shape[0] - 2:
            raise data_lib.DataError(
                f"rho={config.rho} of {x.shape[0]} images makes {atypical} atypical; the split "
                f"needs at least 2 (give at least {math.ceil(1.5 / config.rho)} images)")
        for part in (atypical, x.shape[0] - atypical):
            held = int(round(config.validation_fraction * part))
            if config.validation_fraction and not 2 <= held <= part - 2:
                raise data_lib.DataError(
                    f"validation_fraction={config.validation_fraction} holds out {held} of "
                    f"{part} images of one part of the split; each side needs at least 2 (give "
                    "more images or a larger validation_fraction)")

    def _train(self, x, config, progress):
        if self.max_epochs is not None:
            config.num_iterations = min(config.num_iterations, max(1, math.ceil(
                self.max_epochs * x.shape[0] / config.batch_size)))
        self.n_iter_, self.combine_split_ = config.num_iterations, self.combine_split
        key = split_lib.split_key(config)
        split, split_model = _fit_split(self, config, x, progress)
        progress(f"split: {split.atypical.size} atypical, {split.typical.size} typical")
        classifier = trainer.make_trainer(
            config, split_lib.split_teacher(config, split_model) if config.student else None)
        training_split, stop = trainer.stop_rule(classifier, config, x, split, key)

        def report(iteration, metrics, _):
            progress(f"iteration {iteration}/{config.num_iterations}  " + "  ".join(
                f"{k.removeprefix('loss/')} {v:.4f}" for k, v in metrics.items()
                if k.startswith("loss/")))

        states = trainer.train_states(classifier, config, trainer.split_data(x, training_split),
                                      x.shape[1:], stop=stop, on_report=report)
        self.stopped_at_ = None if stop is None else stop.summary()["stopped_at"]
        model = {"classifier": {"params": states.params, "batch_stats": states.batch_stats},
                 "split": split_model}
        if self.combine_split:  # ranks among the training images' scores
            model["reference"] = {"classifier": _classifier_scores(config, model, x),
                                  "split": -np.asarray(split.scores, np.float64)}
        return model

    def _scores(self, x):
        classifier = _classifier_scores(self.config_, self.model_, x)
        if not self.combine_split_:
            return classifier
        reference = self.model_["reference"]
        return evaluate.ics_split_scores(classifier, -self._typicality(x),
                                         reference["classifier"], reference["split"])

    def split_score(self, images) -> np.ndarray:
        """Returns `[M]` the score the split was cut by, higher = more typical: the split
        autoencoder's SSIM of each image against its reconstruction, or minus the teacher's
        anomaly score."""
        return self._typicality(self._inputs(images))

    def _typicality(self, x):
        return _split_typicality(self, x)


class SplitScore(detector.Detector):
    """The score ICS's default split is cut by, alone (`split_by='auto'`, `ics_jax.sight`): the
    transformation teacher and the split autoencoder's SSIM, trained on all but a held-out
    tenth of the normal images, each weighted by how well it sees on that tenth, without labels;
    an image's score is the weighted mean of its rank by each among the training images'.
    `checks_` `{score: check}` (0 = chance, 1 = perfect) and `weights_` `{score: weight}` say
    what the fit found; where no score sees, a warning says so. Non-square images: SSIM alone."""

    method = "split"
    FIXED = {"split_by": "auto"}
    PARAMS = {**config_defaults("lr_schedule", *_AE_KEYS, *_TEACHER_KEYS), **_AE_DEFAULTS}
    META = ("checks_", "weights_")

    def _train(self, x, config, progress):
        _, split_model = _fit_split(self, config, x, progress)
        return {"split": split_model}

    def _scores(self, x):
        return -_split_typicality(self, x)


class AutoencoderSSIM(detector.Detector):
    """The split autoencoder alone: an image is as anomalous as its reconstruction is unlike
    it (minus SSIM; the paper's SSIM baseline)."""

    method = "ssim"
    FIXED = {"split_by": "ssim"}
    PARAMS = {**config_defaults(*_AE_KEYS), **_AE_DEFAULTS}

    def _train(self, x, config, progress):
        _, params = ae_lib.train_autoencoder(
            x, split_lib.split_key(config), num_steps=config.ae_num_steps,
            batch_size=config.batch_size, learning_rate=config.ae_learning_rate,
            autoencoder=ae_lib.build_autoencoder(config), loss=config.ae_loss,
            progress=lambda t, loss: progress(
                f"autoencoder step {t}/{config.ae_num_steps}  loss {loss:.4f}"))
        return {"autoencoder": params}

    def _scores(self, x):
        return -_ssim(self.config_, self.model_["autoencoder"], x)


class DeepSVDD(detector.Detector):
    """Deep SVDD (Ruff et al., 2018) on contrast-normalised, min-max scaled images: the
    squared distance of an image's features from the centre of the normal ones."""

    method = "dsvdd"
    PARAMS = config_defaults("seed", "batch_size", "dsvdd_ae_num_steps", "dsvdd_num_steps",
                             "dsvdd_learning_rate")
    META = ("contrast_low_", "contrast_scale_")

    def _train(self, x, config, progress):
        self.contrast_low_, self.contrast_scale_ = baselines.contrast_scaling(x)
        progress(f"Deep SVDD: {config.dsvdd_ae_num_steps} autoencoder steps, then "
                 f"{config.dsvdd_num_steps} steps")
        _, variables, center = dsvdd.train_dsvdd(
            self._scaled(x), jax.random.key(config.seed), ae_num_steps=config.dsvdd_ae_num_steps,
            num_steps=config.dsvdd_num_steps, batch_size=config.batch_size,
            learning_rate=config.dsvdd_learning_rate)
        return {"variables": variables, "center": center}

    def _scores(self, x):
        return dsvdd.dsvdd_scores(dsvdd.encoder_for(x.shape[1:]), self.model_["variables"],
                                  self.model_["center"], self._scaled(x))

    def _scaled(self, x):
        return baselines.scaled_inputs(x, self.contrast_low_, self.contrast_scale_)


class Teacher(detector.Detector):
    """The transformation teacher alone (`ics_jax.teacher`, after Golan and El-Yaniv, 2018): a
    network trained on the normal images to tell which quarter turn was applied to one; an
    image is as anomalous as the turns it cannot tell (minus the mean log-probability of the
    right one). Square images; seed `s` trains as `method='teacher'` does with seed `s`."""

    method = "teacher"
    FIXED = {"num_seeds": 1}
    PARAMS = config_defaults("seed", "batch_size", "lr_schedule", *_TEACHER_KEYS)

    def _check_fit(self, x, config):
        super()._check_fit(x, config)
        _check_square(x)

    def _train(self, x, config, progress):
        teacher = trainer.make_trainer(config)

        def report(iteration, metrics, _):
            progress(f"teacher step {iteration}/{teacher.num_iterations}  "
                     f"loss {metrics['loss/transformation']:.4f}")

        states = trainer.train_states(teacher, config, trainer.training_data(teacher, x, None),
                                      x.shape[1:], on_report=report)
        (state,) = trainer.seeds.unstack(states, 1)
        return {"variables": {"params": state.params, "batch_stats": state.batch_stats}}

    def _scores(self, x):
        return teacher_lib.teacher_scores(teacher_lib.build_teacher(self.config_),
                                          self.model_["variables"], x)


def _fit_split(detector_: detector.Detector, config, x: np.ndarray, progress):
    """Returns `compute_split`'s `(split, model)` for `config` on `x`; sets the detector's
    `checks_` and `weights_` (None unless `split_by='auto'`)."""
    split, model = split_lib.compute_split(
        config, x, split_lib.split_key(config), progress=lambda network, t, n, loss: progress(
            f"split {network} step {t}/{n}  loss {loss:.4f}"))
    sight = split.sight or {}
    detector_.checks_, detector_.weights_ = sight.get("checks"), sight.get("weights")
    if sight:
        progress("split checks " + ", ".join(f"{k} {v:.3f}" for k, v in sight["checks"].items())
                 + "; weights " + ", ".join(f"{k} {v:.2f}" for k, v in sight["weights"].items()))
    return split, model


def _split_typicality(detector_: detector.Detector, x: np.ndarray) -> np.ndarray:
    """Returns `[M]` the typicality the detector's split is cut by, higher = more typical."""
    config, model = detector_.config_, detector_.model_["split"]
    if config.split_by == "auto":
        sight = sight_lib.Sight(checks=detector_.checks_, weights=detector_.weights_)
        return -sight_lib.split_anomaly(config, model, sight, x)
    if config.split_by == "teacher":
        return -teacher_lib.teacher_scores(teacher_lib.build_teacher(config), model, x)
    return _ssim(config, model, x)


def _classifier_scores(config, model: dict, x: np.ndarray) -> np.ndarray:
    """Returns `[M]` the seeds' mean anomaly logit of `x` under `model["classifier"]`."""
    classifier = model["classifier"]
    states = step.TrainState(params=classifier["params"],
                             batch_stats=classifier.get("batch_stats", {}), opt_states=())
    return np.mean(trainer.test_scores(trainer.make_trainer(config), states, x), axis=0)


def _check_square(x: np.ndarray, alternative: str = "") -> None:
    try:
        teacher_lib.check_square(x.shape)
    except ValueError as e:
        raise data_lib.DataError(f"{e}; crop or resize them first {alternative}".rstrip()) \
            from None


def _ssim(config, params, x: np.ndarray) -> np.ndarray:
    return split_lib.ssim_scores(ae_lib.build_autoencoder(config), params, x,
                                 config.ssim_max_val)
