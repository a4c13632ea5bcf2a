"""The default experiment configuration (`experiments/configs/*.py` start from it) and its
validation, run before any work."""

import os

import ml_collections

from ics_jax import methods

CHOICES = {
    "dataset": ("mnist", "fashion_mnist", "cifar10"),
    "method": tuple(methods.METHODS),
    "backbone": ("alexnet", "icsnet"),
    "distance": ("difference", "absolute", "squared"),
    "schedule": ("alternating", "joint"),
    "augment": ("none", "shift", "shift_flip"),
    "baseline_inputs": ("gcn_minmax", "pixels"),
    "ae_loss": ("bce", "mse"),
    "split_by": ("auto", "ssim", "teacher"),
    "targets": ("cut", "rank", "both"),
    "teacher_transformations": ("rotate", "rotate_flip", "rotate_mirrored"),
    "lr_schedule": ("constant", "cosine"),
}
POSITIVE = ("num_seeds", "num_iterations", "batch_size", "learning_rate", "log_every",
            "checkpoint_every", "keep_checkpoints", "ae_num_steps", "ae_learning_rate",
            "ssim_max_val", "latent_dim", "dense_features", "ae_latent_channels", "ocsvm_nu",
            "iforest_num_estimators", "dsvdd_ae_num_steps", "dsvdd_num_steps",
            "dsvdd_learning_rate", "vgg_image_size", "teacher_num_steps",
            "teacher_learning_rate", "teacher_dense_features")


# The split autoencoder's code size for each dataset: the one whose split scored the highest SSIM
# AUC on the dataset's development classes (MNIST 2, 5, 8; Fashion-MNIST 0, 2, 8; CIFAR-10 3, 5,
# 9), of 1, 2, 4, 8, 16 and 32 (docs/results.md). `ae_latent_channels=None` takes it.
AE_LATENT_CHANNELS = {"mnist": 16, "fashion_mnist": 1, "cifar10": 32}


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key and what would."""


def default_config() -> ml_collections.ConfigDict:
    """Returns every key the pipeline reads, with the defaults described in the README."""
    c = ml_collections.ConfigDict()
    # Data.
    c.dataset = "mnist"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)  # raw files; None = TFDS
    c.tfds_data_dir = ml_collections.FieldReference(None, field_type=str)
    c.normal_class = 0
    # Method.
    c.method = "ics"
    c.rho = 0.1
    c.num_seeds = 5
    c.seed = 0  # the first seed; a run's seeds are seed, seed + 1, ..., each computed alone
    c.split_seed = 0  # the split autoencoder's key, the same for every seed of a run
    # Classifier and its training.
    c.backbone = "alexnet"
    c.conv_features = (32, 64, 96, 96, 64)  # alexnet; icsnet uses its own (16, 32, 64, 128)
    c.dense_features = 256
    c.latent_dim = 128
    c.batch_norm = False
    c.dropout = ml_collections.FieldReference(None, field_type=float)  # None: the backbone's
    c.distance = "difference"
    # 'alternating': the paper's three phases, one step each; 'joint': the authors' released
    # schedule, closeness + dispersion_weight * dispersion in one step, then the binary step.
    c.schedule = "alternating"
    c.dispersion_weight = 1.0
    c.augment = "none"  # the classifier's inputs: 'shift' (up to 2 pixels), 'shift_flip'
    # The student of the transformation teacher: the classifier is the teacher's network, starts
    # from the split's trained teacher and keeps its task as a fourth phase (docs/students.md).
    c.student = False
    # What the binary phase learns: 'cut', the paper's typical / atypical labels; 'rank', pairs
    # of normal images ordered by the split's score (a ranking loss in its place); 'both', the
    # ranking as a phase after the binary one.
    c.targets = "cut"
    # A label-free stop (ics_jax/stopping.py): this fraction of the typical and of the atypical
    # images is held out of training, and each seed's network is the one of the report
    # (every log_every iterations) with the lowest binary loss on them. 0: the last one.
    c.validation_fraction = 0.0
    c.num_iterations = 10000
    c.batch_size = 64
    c.learning_rate = 3e-4
    # 'cosine': linear warm-up over warmup_iterations (at most a tenth of num_iterations), then
    # cosine decay to 0 at num_iterations,
    # so the last network does not depend on where training stopped (docs/teacher.md has the
    # report-to-report spread); 'constant': the paper's. The teacher's rate follows it: with
    # 'cosine', decayed to 0 over teacher_num_steps.
    c.lr_schedule = "cosine"
    c.warmup_iterations = 100
    c.adam_b1 = 0.5
    c.weight_decay = 1e-6
    # Split autoencoder.
    c.ae_num_steps = 600
    c.ae_learning_rate = 1e-3
    c.ae_conv_features = (16, 32, 48, 48, 32)
    c.ae_latent_channels = ml_collections.FieldReference(None, field_type=int)  # None: dataset's
    c.ae_global_bottleneck = True  # False: a 1x1 convolution, the code keeps the spatial map
    c.ae_negative_slope = 0.2  # leaky ReLUs in the split autoencoder (0.0: plain ReLUs)
    # Binary cross-entropy on the logits; 'mse' on the sigmoid output stalled at an all-black
    # reconstruction on MNIST digits 1, 4, 5, 7, 9 (see the README).
    c.ae_loss = "bce"
    c.ssim_max_val = 1.0
    # What the split is cut by: 'auto', the teacher and the split autoencoder's SSIM, each
    # weighted by a label-free check of what it sees on a held-out tenth of the normal images
    # (ics_jax/sight.py, docs/sight.md); 'ssim', the autoencoder's alone (the paper's; on natural
    # images near chance); 'teacher', the transformation teacher's alone (blind on images with
    # no upright orientation). method='split' is the split's own score as a detector.
    c.split_by = "auto"
    # Transformation teacher (ics_jax/teacher.py): the split's with split_by='teacher', and the
    # detector of method='teacher'. 'rotate': the 4 quarter turns; 'rotate_flip': times a flip,
    # as 8 labels; 'rotate_mirrored': the 4 turns of an image and of its mirror (the mirror not
    # a label). On CIFAR-10's development classes, one seed, the teacher alone: 'rotate' 77.1,
    # 'rotate_mirrored' with the cosine rate 78.3, 600 steps (docs/teacher.md).
    c.teacher_num_steps = 600
    c.teacher_learning_rate = 1e-3
    c.teacher_transformations = "rotate_mirrored"
    c.teacher_conv_features = (16, 32, 48, 48, 32)
    c.teacher_dense_features = 256
    # Baselines (section 3.1 of the paper); see the README for what each one sees.
    # What OCSVM, IF and Deep SVDD see: Ruff et al.'s contrast normalisation and min-max scaling
    # ('gcn_minmax'), or the [0, 1] pixels ('pixels').
    c.baseline_inputs = "gcn_minmax"
    c.ocsvm_nu = 0.15
    c.iforest_num_estimators = 100
    c.dsvdd_ae_num_steps = 1000  # Ruff et al.: 250 epochs; a budget that fits a CPU
    c.dsvdd_num_steps = 1000  # Ruff et al.: 150 epochs
    c.dsvdd_learning_rate = 1e-4
    c.vgg19_weights = ml_collections.FieldReference(None, field_type=str)  # .npz, see ics_jax/vgg
    c.vgg_image_size = 32  # VGG19 input side; images are resized to it
    # Execution: where the seeds run follows from the backend and process count
    # (ics_jax/seeds.py); nothing here changes it.
    # Multi-host (ics_jax/distributed.py): unset = one process, or what the cluster's environment
    # says (cloud TPU, SLURM); set all three to name the coordinator and this process.
    c.coordinator_address = ml_collections.FieldReference(None, field_type=str)  # "host:port"
    c.num_processes = ml_collections.FieldReference(None, field_type=int)
    c.process_id = ml_collections.FieldReference(None, field_type=int)
    c.initialization_timeout = 300  # seconds to wait for every process before giving up
    c.log_every = 100  # iterations between progress lines and metrics
    c.checkpoint_every = 1000  # iterations between checkpoints (and at the end)
    c.keep_checkpoints = 2
    # Diagnostics that read test labels during training, never to choose anything: the test AUC
    # of every seed at each report (`test_curve` in results.json), and the authors' released
    # protocol, best report by AUC on 30% of the labelled test set.
    c.test_curve = False
    c.authors_protocol = False
    return c


def ae_latent_channels(config: ml_collections.ConfigDict) -> int:
    """Returns the split autoencoder's code size: `config.ae_latent_channels`, or if it is None
    `config.dataset`'s (`AE_LATENT_CHANNELS`)."""
    return config.ae_latent_channels or AE_LATENT_CHANNELS[config.dataset]


def resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Returns a copy of `config` with its dataset-dependent keys filled in, as a run's
    `config.json` records them."""
    config = config.copy_and_resolve_references()
    config.ae_latent_channels = ae_latent_channels(config)
    return config


def validate(config: ml_collections.ConfigDict, num_classes: int = 10) -> None:
    """Raises ConfigError naming the first key whose value cannot work."""
    for key, allowed in CHOICES.items():
        if config[key] not in allowed:
            raise ConfigError(f"{key}={config[key]!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        if config[key] is not None and not config[key] > 0:  # None: a dataset's default
            raise ConfigError(f"{key}={config[key]!r} must be positive")
    if not 0 <= config.normal_class < num_classes:
        raise ConfigError(f"normal_class={config.normal_class} is outside the dataset's classes "
                          f"0..{num_classes - 1}")
    if not 0.0 < config.rho < 0.5:
        raise ConfigError(f"rho={config.rho} must lie in (0, 0.5): the atypical part is the "
                          "smaller one (the paper uses 0.1)")
    if config.batch_size < 2 or config.batch_size % 2:
        raise ConfigError(f"batch_size={config.batch_size} must be even and at least 2 (the "
                          "binary phase takes half typical, half atypical)")
    if not 0.0 <= (config.dropout or 0.0) < 1.0:
        raise ConfigError(f"dropout={config.dropout} must lie in [0, 1)")
    if not 0.0 <= config.validation_fraction < 0.5:
        raise ConfigError(f"validation_fraction={config.validation_fraction} must lie in "
                          "[0, 0.5): the part of the split held out for the stop")
    if config.validation_fraction and not (config.method in methods.CLASSIFIERS
                                           and methods.METHODS[config.method].split):
        raise ConfigError(f"validation_fraction holds out part of the split, which "
                          f"method={config.method} does not train on; leave it 0")
    if config.dispersion_weight < 0:
        raise ConfigError(f"dispersion_weight={config.dispersion_weight} must not be negative")
    if config.warmup_iterations < 0:
        raise ConfigError(f"warmup_iterations={config.warmup_iterations} must not be negative")
    if len(config.teacher_conv_features) != 5 or min(config.teacher_conv_features) < 1:
        raise ConfigError(f"teacher_conv_features={tuple(config.teacher_conv_features)} must be "
                          "five positive widths (the backbone's five convolutions)")
    if config.student and not (config.method in methods.CLASSIFIERS
                               and methods.METHODS[config.method].split
                               and config.split_by in ("auto", "teacher")):
        raise ConfigError(f"student=True starts the classifier from the split's teacher: it "
                          f"needs a classifier on a split by 'auto' or 'teacher', not "
                          f"method={config.method}, split_by={config.split_by}")
    if config.targets != "cut" and not methods.METHODS[config.method].scheduled:
        raise ConfigError(f"targets={config.targets!r} is a target of ICS's binary phase; "
                          f"method={config.method} has none")
    if config.method == "ssim" and config.split_by != "ssim":
        raise ConfigError("method=ssim is the split autoencoder's SSIM: it needs split_by=ssim")
    if config.weight_decay < 0:
        raise ConfigError(f"weight_decay={config.weight_decay} must not be negative")
    if config.method == "imagenet_ocsvm" and not (
            config.vgg19_weights and os.path.exists(os.path.expanduser(config.vgg19_weights))):
        raise ConfigError(f"method=imagenet_ocsvm needs VGG19 ImageNet weights: "
                          f"vgg19_weights={config.vgg19_weights} is not a file (make one with "
                          "`python -m ics_jax.vgg --out vgg19_imagenet.npz` on a machine online)")
    if config.data_dir is not None and not os.path.exists(os.path.expanduser(config.data_dir)):
        raise ConfigError(f"data_dir={config.data_dir} does not exist; give a folder or file "
                          "with the raw data, or leave it unset for TFDS")
