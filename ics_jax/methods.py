"""Every method a config can name (`config.method`), in one place: which network trains with
seeds, the classifier's phases, whether it needs the split, whether it has seeds, and which
config keys it does not read (`unread_keys`: the workdir's resume rules and the estimators'
parameters read them here), and what a baseline scores (its function in `ics_jax/baselines.py`)."""

import dataclasses
from collections.abc import Callable

import ml_collections

from ics_jax import baselines, train


@dataclasses.dataclass(frozen=True)
class Method:
    """`network`: what trains with seeds through `trainer.train_states` ('classifier',
    'teacher' or None: a baseline); `phases`: its iteration; `split`: whether it needs the
    typical / atypical split; `seeded`: whether its scores depend on the seed (else it runs
    once, whatever `num_seeds` says); `scores`: a baseline's `(config, data, split, seed_ids)
    -> [[M], ...]`; `scheduled`: whether `config.schedule` and `config.targets` change its
    phases (ICS's)."""

    network: str | None
    phases: tuple[str, ...] = ()
    split: bool = False
    seeded: bool = True
    scores: Callable | None = None
    scheduled: bool = False


METHODS = {
    "ics": Method("classifier", train.PHASES, split=True, scheduled=True),  # the paper's
    "nn_w_ics": Method("classifier", ("intra_class",), split=True),  # its binary phase alone
    "naive_nn": Method("classifier", (train.NORMAL_ONLY,)),  # every image typical
    "teacher": Method("teacher", ("transformation",)),  # the transformation teacher alone
    # The split's own score; 'ssim': the split autoencoder's SSIM.
    "split": Method(None, split=True, seeded=False, scores=baselines.split_score),
    "ssim": Method(None, split=True, seeded=False, scores=baselines.split_score),
    "ocsvm": Method(None, seeded=False, scores=baselines.ocsvm),
    "iforest": Method(None, scores=baselines.iforest),
    "dsvdd": Method(None, scores=baselines.deep_svdd),
    "imagenet_ocsvm": Method(None, seeded=False, scores=baselines.imagenet_ocsvm),
}
# The methods whose network trains with seeds (`trainer.make_trainer`), and the classifiers.
TRAINED = tuple(name for name, m in METHODS.items() if m.network)
CLASSIFIERS = tuple(name for name, m in METHODS.items() if m.network == "classifier")
SPLIT = tuple(name for name, m in METHODS.items() if m.split)


# The split's keys (its autoencoder's, and how it is cut): read by the methods with `split`.
SPLIT_KEYS = ("rho", "split_seed", "split_by", "ssim_max_val", "ae_num_steps", "ae_learning_rate",
              "ae_conv_features", "ae_latent_channels", "ae_global_bottleneck",
              "ae_negative_slope", "ae_loss")
# The transformation teacher's keys: read where a teacher trains (`reads_teacher`).
TEACHER_KEYS = ("teacher_num_steps", "teacher_learning_rate", "teacher_transformations",
                "teacher_conv_features", "teacher_dense_features")


def unread_keys(config: ml_collections.ConfigDict) -> set[str]:
    """Returns the config keys that `config`'s run does not read: the split's without a split,
    the teacher's where no teacher trains."""
    unread = set() if METHODS[config.method].split else set(SPLIT_KEYS)
    return unread if reads_teacher(config) else unread | set(TEACHER_KEYS)


def reads_teacher(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` trains the transformation teacher: as its network, for its split, or
    as the classifier's start (`student`)."""
    method = METHODS[config.method]
    return (method.network == "teacher" or config.student
            or (method.split and config.split_by in ("teacher", "auto")))
