"""Reading datasets from raw files: a folder of MNIST IDX files, an image folder
`{train,test}/<class name>/*.png|jpg|jpeg` (or a `.tar.gz` of one, extracted once into a cache),
an `.npz`; and a plain folder of one's own images (`load_images`).

Everything returns uint8 images `[N, H, W, C]` and int64 labels, unchecked (`data` checks).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import zipfile

import numpy as np

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataError(ValueError):
    """Bad or missing data; its message is one line naming the file and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def load_path(path: pathlib.Path, known_names: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Returns `(x_train, y_train, x_test, y_test)` stored at `path`: an IDX folder, an image
    folder, an archive of one, or an npz. Image folders named as in `known_names` (normalised
    name -> label) take those labels, others their sorted order."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give data_dir an existing IDX folder, "
                        "image folder, .tar.gz or .npz")
    name = path.name.lower()
    if path.is_file() and name.endswith(".npz"):
        return _load_npz(path)
    if path.is_file() and name.endswith((".tar.gz", ".tgz")):
        path = _extract_cached(path)
    elif path.is_file():
        raise DataError(f"{path}: unsupported file type; expected a folder, .tar.gz/.tgz or .npz")
    idx = _idx_files(path)
    if idx is not None:
        return tuple(_read_idx(f, ndim) for f, ndim in zip(idx, (3, 1, 3, 1), strict=True))
    root = _image_root(path)
    if root is None:
        raise DataError(f"{path}: holds neither MNIST IDX files (train-images-idx3-ubyte.gz, ...) "
                        "nor train/ and test/ image folders")
    return _load_image_folder(root, known_names)


def _idx_files(folder: pathlib.Path) -> list[pathlib.Path] | None:
    """Returns [train images, train labels, test images, test labels] paths, or None if no IDX."""
    found = [next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None)
             for s in IDX_STEMS]
    if all(p is None for p in found):
        return None
    missing = [f"{s}[.gz]" for s, p in zip(IDX_STEMS, found, strict=False) if p is None]
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


def _load_npz(path: pathlib.Path) -> tuple[np.ndarray, ...]:
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
    return tuple(found[k] for k in keys)


def _image_root(path: pathlib.Path) -> pathlib.Path | None:
    """Returns the folder holding train/ and test/: `path` or its only subfolder; else None."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "train").is_dir() and (subs[0] / "test").is_dir():
        return subs[0]
    return None


def norm_name(name: str) -> str:
    """Returns `name` lower-cased, letters and digits only ("T-shirt/top" -> "tshirttop")."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def class_index(folders: list[str], known_names: dict[str, int]) -> dict[str, int]:
    """Returns folder name -> label: the labels of `known_names` (normalised name -> label)
    when every folder has a distinct one, else the folders' sorted order."""
    labels = [known_names.get(norm_name(f)) for f in folders]
    if None not in labels and len(set(labels)) == len(labels):
        return dict(zip(folders, labels, strict=True))
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


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """Returns the .png/.jpg/.jpeg files of `folder`, in natural order ("9" before "10")."""
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _read_images(files: list[pathlib.Path]) -> list[np.ndarray]:
    """Returns the images of `files`, each uint8 [H, W, C], all of one shape."""
    images = [_read_image(f) for f in files]
    for file, image in zip(files, images, strict=True):
        if image.shape != images[0].shape:
            raise DataError(f"{file}: image shape {image.shape} differs from {images[0].shape} "
                            "of the other images; all images must share one shape")
    return images


def _read_split(folder: pathlib.Path, labels: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns images [N, H, W, C] uint8 and labels [N] of the class folders in `folder`."""
    files, targets = [], []
    for name in sorted(labels, key=lambda n: (labels[n], _natural_key(n))):
        found = _image_files(folder / name)
        files += found
        targets += [labels[name]] * len(found)
    if not files:
        raise DataError(f"{folder}: no .png/.jpg/.jpeg images in its class folders")
    return np.stack(_read_images(files)), np.asarray(targets, np.int64)


def load_images(folder) -> np.ndarray:
    """Returns every .png/.jpg/.jpeg image of `folder` (not its subfolders), in natural file
    name order, as uint8 `[N, H, W, C]` (C = 1 for grayscale, 3 for colour; all one shape)."""
    folder = pathlib.Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; give a folder of .png/.jpg/.jpeg images")
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: holds no .png/.jpg/.jpeg images")
    return np.stack(_read_images(files))


def _load_image_folder(root: pathlib.Path, known_names: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Returns the arrays of `root/{train,test}/<class name>/*.png|jpg|jpeg`."""
    classes = {split: sorted(p.name for p in (root / split).iterdir()
                             if p.is_dir() and not p.name.startswith("."))
               for split in ("train", "test")}
    if not classes["train"] or set(classes["test"]) - set(classes["train"]):
        raise DataError(f"{root}: test/ class folders {classes['test']} must be a subset of the "
                        f"non-empty train/ class folders {classes['train']}")
    labels = class_index(classes["train"], known_names)
    x_train, y_train = _read_split(root / "train", labels)
    x_test, y_test = _read_split(root / "test", {k: labels[k] for k in classes["test"]})
    return x_train, y_train, x_test, y_test


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
