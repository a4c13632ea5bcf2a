"""MNIST, Fashion-MNIST and CIFAR-10 as numpy arrays, and their one-class splits.

`load_arrays` reads a dataset from prepared TensorFlow Datasets files (`data_dir=None`) or from raw
files (`ics_jax.files`): a folder of MNIST IDX files, an image folder
`{train,test}/<class name>/*.png|jpg|jpeg`, a `.tar.gz`/`.tgz` of such a folder, or an `.npz`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import operator
import pathlib
import socket

import numpy as np

from ics_jax import files
from ics_jax.files import DataError

NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
# Other folder names seen for the same classes (compared after `files.norm_name`).
_ALIASES = {"fashion_mnist": {"tshirt": 0, "top": 0, "boot": 9},
            "cifar10": {"plane": 0, "aeroplane": 0, "car": 1}}
_OFFLINE_HINT = ("offline, give data_dir a folder with the raw files (--config.data_dir on the "
                 "command line)")
_TFDS_BATCH = 4096
TFDS_HOST = "storage.googleapis.com"  # where TFDS fetches datasets from first


@dataclasses.dataclass(frozen=True)
class Arrays:
    """A dataset's train and test splits: uint8 images [N, H, W, C] and int64 labels [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class OneClassData:
    """Normal-class train images and the labelled test split, images float32 in [0, 1]."""

    x_train: np.ndarray  # [N, H, W, C] float32, normal class of the train split only
    x_test: np.ndarray  # [M, H, W, C] float32, the whole test split
    y_test: np.ndarray  # [M] int32, 0 = normal class, 1 = anomaly
    test_classes: np.ndarray  # [M] int64 original class labels


def load_arrays(dataset: str, data_dir: str | None = None,
                tfds_data_dir: str | None = None) -> Arrays:
    """Returns `Arrays` of `dataset` from prepared TFDS data (`data_dir=None`) or `data_dir`."""
    if dataset not in NUM_CLASSES:
        raise DataError(f"unknown dataset {dataset!r}; known datasets: {', '.join(NUM_CLASSES)}")
    if data_dir is None:
        arrays = _load_tfds(dataset, tfds_data_dir)
        source = f"TFDS {dataset}"
    else:
        source = pathlib.Path(data_dir).expanduser()
        arrays = Arrays(*files.load_path(source, known_names(dataset)))
    return _checked(arrays, source, NUM_CLASSES[dataset])


def known_names(dataset: str) -> dict[str, int]:
    """Returns normalised class folder name -> label for `dataset` (`CLASS_NAMES` and aliases)."""
    known = {files.norm_name(n): i for i, n in enumerate(CLASS_NAMES.get(dataset, ()))}
    return {**known, **_ALIASES.get(dataset, {})}


def one_class(arrays: Arrays, normal_class: int, *, num_classes: int | None = None) -> OneClassData:
    """Returns the one-class split: train = `normal_class` train images, test = all test images.

    `num_classes` defaults to 1 + the largest label in `arrays`.
    """
    normal_class = operator.index(normal_class)
    y_train, test_classes = np.asarray(arrays.y_train), np.asarray(arrays.y_test).astype(np.int64)
    if num_classes is None:
        num_classes = 1 + int(max(y_train.max(initial=-1), test_classes.max(initial=-1)))
    if not 0 <= normal_class < num_classes:
        raise DataError(f"normal_class={normal_class} is outside [0, {num_classes}); "
                        f"pick a class index from 0 to {num_classes - 1}")
    x_normal = np.asarray(arrays.x_train)[y_train == normal_class]
    if len(x_normal) == 0:
        raise DataError(f"normal_class={normal_class} has no training images "
                        f"(train labels: {np.unique(y_train).tolist()}); pick another class")
    return OneClassData(
        x_train=_to_unit_float(x_normal),
        x_test=_to_unit_float(np.asarray(arrays.x_test)),
        y_test=(test_classes != normal_class).astype(np.int32),
        test_classes=test_classes,
    )


def load_one_class(dataset: str, normal_class: int, data_dir: str | None = None,
                   tfds_data_dir: str | None = None) -> OneClassData:
    """Returns `one_class(load_arrays(dataset, data_dir, tfds_data_dir), normal_class)`."""
    arrays = load_arrays(dataset, data_dir, tfds_data_dir)
    return one_class(arrays, normal_class, num_classes=NUM_CLASSES[dataset])


# ----------------------------------------------------------------------------- checks, conversions


def to_unit_images(images, what: str = "images", *, min_size: int = 1,
                   channels: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns `images` `[N, H, W, C]` (or `[N, H, W]`, one channel; an array or a list of
    equal-sized images), uint8 0-255 or float in [0, 1], as float32 `[N, H, W, C]` in [0, 1].
    Anything else raises DataError saying what would work: a list of images of different
    sizes, a wrong rank, H or W below `min_size`, a channel count not in `channels` (channels
    first named as such), another dtype, NaN or Inf, floats outside [0, 1]."""
    if isinstance(images, list | tuple):
        sizes = sorted({np.shape(image) for image in images})
        if len(sizes) > 1:
            raise DataError(f"{what} have different sizes ({', '.join(map(str, sizes[:3]))}"
                            "); resize them to one size first")
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or 0 in x.shape:
        raise DataError(f"{what} have shape {tuple(np.shape(images))}; expected a non-empty "
                        "[N, H, W, C] array, or [N, H, W] for one channel")
    if channels is not None and x.shape[3] not in channels:
        first = ("; they look channels-first: x.transpose(0, 2, 3, 1) gives [N, H, W, C]"
                 if x.shape[1] in channels else "")
        raise DataError(f"{what} have shape {x.shape}, {x.shape[3]} channels; expected "
                        f"[N, H, W, C] with C in {channels}{first}")
    if min(x.shape[1:3]) < min_size:
        raise DataError(f"{what} are {x.shape[1]}x{x.shape[2]}; the networks need at least "
                        f"{min_size}x{min_size} (upsample small images first)")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"float {what} contain NaN or Inf (first in image "
                            f"{int(np.argwhere(~np.isfinite(x))[0, 0])}); replace them")
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise DataError(f"float {what} must lie in [0, 1]; found [{low}, {high}] (divide "
                            "0-255 values by 255, or pass them as uint8)")
        return x.astype(np.float32)
    raise DataError(f"{what} have dtype {x.dtype}; expected uint8 (0-255) or float in [0, 1]")


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    """Returns uint8 images [N, H, W(, C)] as float32 [N, H, W, C] in [0, 1]."""
    x = x[..., None] if x.ndim == 3 else x
    return x.astype(np.float32) / np.float32(255.0)


def _as_images(x: np.ndarray, where: object, what: str) -> np.ndarray:
    """Returns images [N, H, W] or [N, H, W, C] as uint8 [N, H, W, C]; floats must lie in [0, 1]."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{where}: {what} has shape {x.shape}; expected [N, H, W] or [N, H, W, C]")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DataError(f"{where}: float {what} must lie in [0, 1]; "
                            f"found range [{x.min()}, {x.max()}]")
        return np.round(x * 255.0).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{where}: {what} values must lie in [0, 255]; "
                            f"found range [{x.min()}, {x.max()}]")
        return x.astype(np.uint8)
    raise DataError(f"{where}: {what} has dtype {x.dtype}; expected uint8 or float in [0, 1]")


def _as_labels(y: np.ndarray, where: object, what: str) -> np.ndarray:
    """Returns integer labels [N] (or [N, 1]) as int64 [N]."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {what} has shape {y.shape} and dtype {y.dtype}; "
                        "expected integer class labels [N]")
    return y.astype(np.int64)


def _checked(arrays: Arrays, where: object, num_classes: int) -> Arrays:
    """Returns `arrays` in canonical dtypes after checking counts, shapes and label range."""
    x_train = _as_images(np.asarray(arrays.x_train), where, "train images")
    x_test = _as_images(np.asarray(arrays.x_test), where, "test images")
    y_train = _as_labels(np.asarray(arrays.y_train), where, "train labels")
    y_test = _as_labels(np.asarray(arrays.y_test), where, "test labels")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{where}: {len(x)} {split} images but {len(y)} {split} labels")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"{where}: {split} labels span [{y.min()}, {y.max()}]; "
                            f"expected classes 0..{num_classes - 1}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: train images are {x_train.shape[1:]} but test images are "
                        f"{x_test.shape[1:]}; both splits need one image shape")
    return Arrays(x_train, y_train, x_test, y_test)


# ----------------------------------------------------------------------------- TFDS


def _tfds_patched(tfds) -> bool:
    """Returns whether `DatasetBuilder.as_dataset` is patched, as in `tfds.testing.mock_data`."""
    builder_cls = tfds.core.DatasetBuilder
    return getattr(builder_cls.as_dataset, "__module__", None) != builder_cls.__module__


def online(host: str = TFDS_HOST, timeout: float = 3.0) -> bool:
    """Returns whether a TCP connection to `host`:443 opens within `timeout` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_tfds(dataset: str, tfds_data_dir: str | None) -> Arrays:
    """Returns the train and test splits of a TFDS dataset, downloaded and prepared first if
    need be; offline, or without TensorFlow to prepare it, fails at once saying what to do."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"TFDS {dataset}: tensorflow_datasets is not installed ({e}); "
                        f"{_OFFLINE_HINT}") from e
    absl_log = logging.getLogger("absl")  # TFDS warns of an empty data dir before we say why
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        builder = tfds.builder(dataset, data_dir=tfds_data_dir)
        prepared = builder.is_prepared() or _tfds_patched(tfds)
    finally:
        absl_log.setLevel(level)
    has_tf = importlib.util.find_spec("tensorflow") is not None
    if not prepared:
        if not has_tf:
            raise DataError(f"{builder.data_dir}: TFDS needs TensorFlow to download and prepare "
                            f"{dataset}: pip install -e '.[tfds]', or give data_dir a folder "
                            "with the raw files (--config.data_dir on the command line)")
        if not online():
            raise DataError(f"{builder.data_dir}: TFDS dataset {dataset} is not prepared here "
                            f"and {TFDS_HOST} cannot be reached; {_OFFLINE_HINT}")
        builder.download_and_prepare()
    read = _tfds_split if has_tf else _tfds_split_source
    return Arrays(*read(builder, "train"), *read(builder, "test"))


def _tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns images [N, H, W, C] and labels [N] of a TFDS split, read with TF in batches."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, batch_size=_TFDS_BATCH, as_supervised=True,
                            shuffle_files=False)
    batches = list(tfds.as_numpy(ds))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _tfds_split_source(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns images [N, H, W, C] and labels [N] of a TFDS split read through `as_data_source`."""
    source = builder.as_data_source(split=split)
    records = [source[i] for i in range(len(source))]
    return (np.stack([r["image"] for r in records]),
            np.asarray([r["label"] for r in records], np.int64))
