"""MNIST, Fashion-MNIST and CIFAR-10 as numpy arrays, and their one-class splits.

`load_arrays` reads a dataset from prepared TensorFlow Datasets files (`data_dir=None`) or from raw
files: a folder of MNIST IDX files, an image folder `{train,test}/<class name>/*.png|jpg|jpeg`, a
`.tar.gz`/`.tgz` of such a folder (extracted once into a cache), or an `.npz` file.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import operator
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import zipfile

import numpy as np

NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
# Other folder names seen for the same classes (compared after `_norm_name`).
_ALIASES = {"fashion_mnist": {"tshirt": 0, "top": 0, "boot": 9},
            "cifar10": {"plane": 0, "aeroplane": 0, "car": 1}}
_OFFLINE_HINT = "offline, pass --config.data_dir=<folder with the raw files>"
_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_TFDS_BATCH = 4096


class DataError(ValueError):
    """Bad or missing data; its message is one line naming the file and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


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
        arrays = _load_path(source, dataset)
    return _checked(arrays, source, NUM_CLASSES[dataset])


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


def to_unit_images(images, what: str = "images") -> np.ndarray:
    """Returns `images` `[N, H, W, C]` (or `[N, H, W]`, one channel), uint8 0-255 or float in
    [0, 1], as float32 `[N, H, W, C]` in [0, 1]; anything else raises DataError saying what
    would work."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or 0 in x.shape:
        raise DataError(f"{what} have shape {tuple(np.shape(images))}; expected a non-empty "
                        "[N, H, W, C] array, or [N, H, W] for one channel")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(x.dtype, np.floating):
        low, high = float(x.min()), float(x.max())
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high <= 1.0):
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


# ----------------------------------------------------------------------------- raw files


def _load_path(path: pathlib.Path, dataset: str) -> Arrays:
    """Returns the (unchecked) arrays stored at `path`: IDX folder, image folder, archive or npz."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; pass --config.data_dir=<an existing "
                        "IDX folder, image folder, .tar.gz or .npz>")
    name = path.name.lower()
    if path.is_file() and name.endswith(".npz"):
        return _load_npz(path)
    if path.is_file() and name.endswith((".tar.gz", ".tgz")):
        path = _extract_cached(path)
    elif path.is_file():
        raise DataError(f"{path}: unsupported file type; expected a folder, .tar.gz/.tgz or .npz")
    idx = _idx_files(path)
    if idx is not None:
        return Arrays(*(_read_idx(f, ndim) for f, ndim in zip(idx, (3, 1, 3, 1), strict=False)))
    root = _image_root(path)
    if root is None:
        raise DataError(f"{path}: holds neither MNIST IDX files (train-images-idx3-ubyte.gz, ...) "
                        "nor train/ and test/ image folders")
    return _load_image_folder(root, dataset)


def _idx_files(folder: pathlib.Path) -> list[pathlib.Path] | None:
    """Returns [train images, train labels, test images, test labels] paths, or None if no IDX."""
    found = [next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None)
             for s in _IDX_STEMS]
    if all(p is None for p in found):
        return None
    missing = [f"{s}[.gz]" for s, p in zip(_IDX_STEMS, found, strict=False) if p is None]
    if missing:
        raise DataError(f"{folder}: incomplete IDX set, missing {', '.join(missing)}")
    return found


def _parse_idx(data: bytes, where: object = "IDX data") -> np.ndarray:
    """Returns the array stored in IDX bytes (big-endian header: 0, 0, type code, ndim, dims)."""
    if (len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES
            or len(data) < 4 + 4 * data[3]):
        raise DataError(f"{where}: not an IDX file (bad magic number 0x{data[:4].hex()} or "
                        "truncated header); replace it with an original MNIST-format file")
    ndim, header = data[3], 4 + 4 * data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{where}: IDX dims {dims} need {expected} bytes but the file has "
                        f"{len(data)}; the file is truncated or corrupt, replace it")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """Returns the uint8 array with `ndim` axes stored in the IDX file at `path` (gzip or plain)."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); replace the file") from e
    array = _parse_idx(data, path)
    if array.ndim != ndim or array.dtype != np.uint8:
        raise DataError(f"{path}: IDX array is {array.dtype} with shape {array.shape}; "
                        f"expected uint8 with {ndim} axes")
    return array


def _load_npz(path: pathlib.Path) -> Arrays:
    """Returns the arrays `x_train, y_train, x_test, y_test` stored in the npz file at `path`."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an npz (zip) archive; write it with np.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = {k: npz[k] for k in keys if k in npz.files}
            names = list(npz.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as npz ({e}); write it with np.savez") from e
    missing = [k for k in keys if k not in found]
    if missing:
        raise DataError(f"{path}: npz lacks {', '.join(missing)}; it needs {', '.join(keys)} "
                        f"(has {', '.join(names) or 'nothing'})")
    return Arrays(*(found[k] for k in keys))


# ----------------------------------------------------------------------------- image folders


def _image_root(path: pathlib.Path) -> pathlib.Path | None:
    """Returns the folder holding train/ and test/: `path` or its only subfolder; else None."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir() and (subs[0] / "test").is_dir():
        return subs[0]
    return None


def _norm_name(name: str) -> str:
    """Returns `name` lower-cased, letters and digits only ("T-shirt/top" -> "tshirttop")."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _class_index(folders: list[str], dataset: str) -> dict[str, int]:
    """Returns folder name -> label: CLASS_NAMES order when all names match, else sorted order."""
    known = {_norm_name(n): i for i, n in enumerate(CLASS_NAMES.get(dataset, ()))}
    known.update(_ALIASES.get(dataset, {}))
    labels = [known.get(_norm_name(f)) for f in folders]
    if None not in labels and len(set(labels)) == len(labels):
        return dict(zip(folders, labels, strict=False))
    return {f: i for i, f in enumerate(sorted(folders, key=_natural_key))}


def _natural_key(name: str) -> list:
    """Returns a sort key ordering "9.png" before "10.png"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_image(path: pathlib.Path) -> np.ndarray:
    """Returns the image at `path` as uint8 [H, W, C]: 1 channel for grayscale, 3 for colour."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in ("1", "LA", "I;16", "I", "F") else "RGB")
            array = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e}); delete or replace the file") from e
    return array[..., None] if array.ndim == 2 else array


def _read_split(folder: pathlib.Path, labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns images [N, H, W, C] uint8 and labels [N] of the class folders in `folder`."""
    images, targets, shape = [], [], None
    for name in sorted(labels, key=lambda n: (labels[n], _natural_key(n))):
        files = [p for p in (folder / name).iterdir()
                 if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")]
        files.sort(key=lambda p: _natural_key(p.name))
        for file in files:
            image = _read_image(file)
            if shape is None:
                shape = image.shape
            elif image.shape != shape:
                raise DataError(f"{file}: image shape {image.shape} differs from {shape} of the "
                                "other images; all images must share one shape")
            images.append(image)
        targets += [labels[name]] * len(files)
    if not images:
        raise DataError(f"{folder}: no .png/.jpg/.jpeg images in its class folders")
    return np.stack(images), np.asarray(targets, np.int64)


def _load_image_folder(root: pathlib.Path, dataset: str) -> Arrays:
    """Returns the arrays of `root/{train,test}/<class name>/*.png|jpg|jpeg`."""
    classes = {split: sorted(p.name for p in (root / split).iterdir()
                             if p.is_dir() and not p.name.startswith("."))
               for split in ("train", "test")}
    if not classes["train"] or set(classes["test"]) - set(classes["train"]):
        raise DataError(f"{root}: test/ class folders {classes['test']} must be a subset of the "
                        f"non-empty train/ class folders {classes['train']}")
    labels = _class_index(classes["train"], dataset)
    x_train, y_train = _read_split(root / "train", labels)
    x_test, y_test = _read_split(root / "test", {k: labels[k] for k in classes["test"]})
    return Arrays(x_train, y_train, x_test, y_test)


def _extract_cached(archive: pathlib.Path) -> pathlib.Path:
    """Returns the folder `archive` is extracted into, extracting it (atomically) on first use.

    The folder is `<cache>/<stem>-<hash of path, size, mtime>`, cache = $ICS_JAX_CACHE or
    ~/.cache/ics_jax.
    """
    cache = pathlib.Path(os.environ.get("ICS_JAX_CACHE") or "~/.cache/ics_jax").expanduser()
    stat = archive.stat()
    key = f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    stem = re.sub(r"\.(tar\.gz|tgz)$", "", archive.name, flags=re.IGNORECASE)
    dest = cache / f"{stem}-{hashlib.sha256(key).hexdigest()[:12]}"
    if dest.is_dir():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        raise DataError(f"{dest.parent}: cannot create the archive cache ({e}); "
                        "set ICS_JAX_CACHE to a writable folder") from e
    try:
        _extract_tar(archive, tmp)
        os.rename(tmp, dest)
    except OSError as e:
        if not dest.is_dir():  # else a concurrent extraction won the rename: use its folder
            raise DataError(f"{dest}: cannot move the extracted {archive} here ({e}); "
                            "set ICS_JAX_CACHE to a writable folder") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract_tar(archive: pathlib.Path, into: pathlib.Path) -> None:
    """Extracts the tar archive into the folder `into`, refusing members that point outside it."""
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, **kwargs)
    except (tarfile.TarError, EOFError, OSError, zipfile.error) as e:
        raise DataError(f"{archive}: cannot extract ({e}); replace the archive") from e


# ----------------------------------------------------------------------------- TFDS


def _tfds_patched(tfds) -> bool:
    """Returns whether `DatasetBuilder.as_dataset` is patched, as in `tfds.testing.mock_data`."""
    builder_cls = tfds.core.DatasetBuilder
    return getattr(builder_cls.as_dataset, "__module__", None) != builder_cls.__module__


def _load_tfds(dataset: str, tfds_data_dir: str | None) -> Arrays:
    """Returns the train and test splits of a prepared TFDS dataset; never downloads."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"TFDS {dataset}: tensorflow_datasets is not installed ({e}); "
                        f"{_OFFLINE_HINT}") from e
    builder = tfds.builder(dataset, data_dir=tfds_data_dir)
    if not (builder.is_prepared() or _tfds_patched(tfds)):
        raise DataError(f"{builder.data_dir}: TFDS dataset {dataset} is not prepared in the TFDS "
                        f"data dir and is not downloaded here; {_OFFLINE_HINT}")
    read = _tfds_split if importlib.util.find_spec("tensorflow") else _tfds_split_source
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
