"""Tests of ics_jax.data on tiny synthetic files and on `tfds.testing.mock_data` (offline, fast)."""

import gzip
import pathlib
import tarfile
import time

import numpy as np
import pytest
from conftest import idx_bytes, write_idx_set
from PIL import Image

from ics_jax import data, files
from ics_jax.data import Arrays, DataError

RNG = np.random.default_rng(0)


def _random_arrays(n_train=12, n_test=7, shape=(5, 4, 1), classes=3) -> Arrays:
    """Returns random uint8 images and int64 labels with every class in both splits."""
    return Arrays(
        x_train=RNG.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.int64) % classes,
        x_test=RNG.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=np.arange(n_test, dtype=np.int64) % classes,
    )


def _write_image_folder(root: pathlib.Path, images: dict[str, dict[str, list[np.ndarray]]],
                        suffix: str = ".png") -> None:
    """Writes images[split][class name] as `root/split/class name/<i>.png`."""
    for split, classes in images.items():
        for name, arrays in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, a in enumerate(arrays):
                Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(
                    root / split / name / f"{i}{suffix}")


def _replace(arrays: Arrays, **changes) -> Arrays:
    """Returns `arrays` with some fields replaced (no validation, unlike load_arrays)."""
    fields = {k: getattr(arrays, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    return Arrays(**{**fields, **changes})


def _assert_arrays_equal(a: Arrays, b: Arrays) -> None:
    for field in ("x_train", "y_train", "x_test", "y_test"):
        got, want = getattr(a, field), getattr(b, field)
        assert got.dtype == want.dtype, field
        np.testing.assert_array_equal(got, want, err_msg=field)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    arrays = _random_arrays()
    write_idx_set(tmp_path, arrays, gz=gz)
    _assert_arrays_equal(data.load_arrays("mnist", str(tmp_path)), arrays)


def test_idx_bad_magic_raises(tmp_path):
    write_idx_set(tmp_path, _random_arrays())
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(bad.read_bytes()))
    raw[2] = 0x42  # unknown type code
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="magic") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(bad) in str(e.value)


def test_idx_truncated_raises(tmp_path):
    write_idx_set(tmp_path, _random_arrays())
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-3]))
    with pytest.raises(DataError, match="bytes") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(bad) in str(e.value)


def test_idx_wrong_ndim_and_missing_file_raise(tmp_path):
    write_idx_set(tmp_path, _random_arrays())
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros((12, 2), np.uint8))))
    with pytest.raises(DataError, match="1 axes") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(labels) in str(e.value)
    labels.unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_idx_count_mismatch_raises(tmp_path):
    arrays = _random_arrays()
    write_idx_set(tmp_path, _replace(arrays, y_test=arrays.y_test[:-1]))
    with pytest.raises(DataError, match="7 test images but 6 test labels") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(tmp_path) in str(e.value)


# ----------------------------------------------------------------------------- image folders


def test_image_folder_grayscale_round_trip(tmp_path):
    imgs = {split: {str(c): [RNG.integers(0, 256, (6, 5, 1), dtype=np.uint8) for _ in range(2)]
                    for c in (0, 3, 9)} for split in ("train", "test")}
    _write_image_folder(tmp_path, imgs)
    got = data.load_arrays("mnist", str(tmp_path))
    assert got.x_train.shape == (6, 6, 5, 1) and got.x_train.dtype == np.uint8
    np.testing.assert_array_equal(got.y_train, [0, 0, 3, 3, 9, 9])
    np.testing.assert_array_equal(got.x_train[2], imgs["train"]["3"][0])  # PNG is lossless
    np.testing.assert_array_equal(got.x_test[5], imgs["test"]["9"][1])


def test_image_folder_rgb_class_names_and_nested_root(tmp_path):
    names = ["truck", "Airplane", "CAT"]  # CIFAR-10 labels 9, 0, 3, case-insensitive
    imgs = {split: {n: [RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)] for n in names}
            for split in ("train", "test")}
    _write_image_folder(tmp_path / "cifar_top", imgs)  # like an extracted tar with a top folder
    got = data.load_arrays("cifar10", str(tmp_path))
    assert got.x_train.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(got.y_train, [0, 3, 9])  # read in label order
    np.testing.assert_array_equal(got.x_train[2], imgs["train"]["truck"][0])


def test_class_order_fashion_names_and_fallback_to_sorted():
    fashion = ["Ankle_boot", "T-shirt_top", "sneaker"]
    assert files.class_index(fashion, data.known_names("fashion_mnist")) == {
        "Ankle_boot": 9, "T-shirt_top": 0, "sneaker": 7}
    assert files.class_index(["dog", "zebra", "cat"], data.known_names("cifar10")) == {
        "cat": 0, "dog": 1, "zebra": 2}


def test_image_folder_files_in_natural_order(tmp_path):
    for i in (10, 9, 2):  # "10.png" sorts after "9.png"
        (tmp_path / "train" / "0").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((2, 2), i, np.uint8)).save(tmp_path / "train" / "0" / f"{i}.png")
    (tmp_path / "test" / "0").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "test" / "0" / "a.png")
    got = data.load_arrays("mnist", str(tmp_path))
    np.testing.assert_array_equal(got.x_train[:, 0, 0, 0], [2, 9, 10])


def test_image_folder_errors(tmp_path):
    imgs = {s: {"0": [np.zeros((4, 4, 1), np.uint8)]} for s in ("train", "test")}
    _write_image_folder(tmp_path, imgs)
    odd = tmp_path / "train" / "0" / "odd.png"
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(odd)
    with pytest.raises(DataError, match="shape") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(odd) in str(e.value)
    odd.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="unreadable") as e:
        data.load_arrays("mnist", str(tmp_path))
    assert str(odd) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- tar.gz


def test_targz_round_trip_extracts_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ICS_JAX_CACHE", str(tmp_path / "cache"))
    imgs = {s: {"bird": [RNG.integers(0, 256, (3, 3, 3), dtype=np.uint8)],
                "airplane": [RNG.integers(0, 256, (3, 3, 3), dtype=np.uint8)]}
            for s in ("train", "test")}
    _write_image_folder(tmp_path / "src" / "tiny_cifar", imgs)
    archive = tmp_path / "tiny_cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "tiny_cifar", arcname="tiny_cifar")
    calls = []
    real_extract = files._extract_tar
    monkeypatch.setattr(files, "_extract_tar", lambda *a: (calls.append(a), real_extract(*a)))

    first = data.load_arrays("cifar10", str(archive))
    second = data.load_arrays("cifar10", str(archive))
    assert len(calls) == 1
    _assert_arrays_equal(first, second)
    np.testing.assert_array_equal(first.y_train, [0, 2])
    np.testing.assert_array_equal(first.x_test[1], imgs["test"]["bird"][0])
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("tiny_cifar-")  # no temp dir left


def test_corrupt_targz_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("ICS_JAX_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "broken.tgz"
    archive.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="extract") as e:
        data.load_arrays("cifar10", str(archive))
    assert str(archive) in str(e.value)
    assert list((tmp_path / "cache").iterdir()) == []


# ----------------------------------------------------------------------------- npz


def test_npz_round_trip_uint8_and_float(tmp_path):
    arrays = _random_arrays(shape=(3, 3, 1))
    path = tmp_path / "d.npz"
    np.savez(path, x_train=arrays.x_train[..., 0], y_train=arrays.y_train,
             x_test=arrays.x_test.astype(np.float64) / 255.0, y_test=arrays.y_test.astype(np.int32))
    _assert_arrays_equal(data.load_arrays("mnist", str(path)), arrays)


@pytest.mark.parametrize("change, match", [
    ({"x_test": None}, "lacks x_test"),
    ({"x_train": np.full((12, 3, 3), 1.5)}, r"\[0, 1\]"),
    ({"x_train": np.zeros((12, 3), np.uint8)}, "shape"),
    ({"y_train": np.zeros(11, np.int64)}, "12 train images but 11 train labels"),
    ({"y_train": np.full(12, 10, np.int64)}, "labels span"),
])
def test_npz_errors(tmp_path, change, match):
    arrays = _random_arrays(shape=(3, 3, 1))
    fields = {k: getattr(arrays, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    fields.update(change)
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})
    with pytest.raises(DataError, match=match) as e:
        data.load_arrays("mnist", str(path))
    assert str(path) in str(e.value)


# ----------------------------------------------------------------------------- paths, names


def test_path_and_dataset_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="no such file") as e:
        data.load_arrays("mnist", str(missing))
    assert str(missing) in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither") as e:
        data.load_arrays("mnist", str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(e.value)
    with pytest.raises(DataError, match="mnist, fashion_mnist, cifar10"):
        data.load_arrays("svhn", str(tmp_path))


def test_class_names_table():
    assert set(data.CLASS_NAMES) == set(data.NUM_CLASSES)
    assert all(len(data.CLASS_NAMES[k]) == n for k, n in data.NUM_CLASSES.items())
    assert data.CLASS_NAMES["fashion_mnist"][9] == "Ankle boot"
    assert data.CLASS_NAMES["cifar10"][1] == "automobile"


# ----------------------------------------------------------------------------- one_class


def test_one_class_labels_scaling_shapes():
    arrays = _random_arrays(n_train=9, n_test=6, shape=(3, 2, 1), classes=3)
    arrays = _replace(arrays, x_train=arrays.x_train[..., 0])  # [N, H, W] is accepted
    oc = data.one_class(arrays, 1)
    assert oc.x_train.shape == (3, 3, 2, 1) and oc.x_train.dtype == np.float32
    np.testing.assert_allclose(oc.x_train[..., 0], arrays.x_train[arrays.y_train == 1] / 255.0)
    assert oc.x_test.shape == (6, 3, 2, 1) and 0.0 <= oc.x_test.min() <= oc.x_test.max() <= 1.0
    np.testing.assert_array_equal(oc.y_test, [1, 0, 1, 1, 0, 1])
    assert oc.y_test.dtype == np.int32 and oc.test_classes.dtype == np.int64
    np.testing.assert_array_equal(oc.test_classes, arrays.y_test)


def test_one_class_errors():
    arrays = _random_arrays(classes=3)
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        data.one_class(arrays, 3)
    with pytest.raises(DataError, match=r"outside \[0, 10\)"):
        data.one_class(arrays, -1, num_classes=10)
    with pytest.raises(DataError, match="no training images"):
        data.one_class(arrays, 5, num_classes=10)


def test_load_one_class_from_idx(tmp_path):
    write_idx_set(tmp_path, _random_arrays(classes=3))
    oc = data.load_one_class("mnist", 2, data_dir=str(tmp_path))
    assert oc.x_train.shape == (4, 5, 4, 1) and oc.y_test.sum() == 5


# ----------------------------------------------------------------------------- TFDS


def test_tfds_mock_data_loads_mnist():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        got = data.load_arrays("mnist")
        source = data._tfds_split_source(tfds.builder("mnist"), "test")  # the no-TF path
    assert got.x_train.shape == (5, 28, 28, 1) and got.x_test.shape == (5, 28, 28, 1)
    assert got.x_train.dtype == np.uint8 and got.y_train.dtype == np.int64
    assert got.y_train.shape == (5,) and 0 <= got.y_train.min() <= got.y_train.max() < 10
    assert source[0].shape == (5, 28, 28, 1) and source[1].shape == (5,)


@pytest.mark.parametrize("tensorflow, reachable, message", [
    (True, False, "cannot be reached"), (False, True, "needs TensorFlow")])
def test_tfds_unprepared_offline_or_without_tensorflow_fails_fast(tmp_path, monkeypatch,
                                                                 tensorflow, reachable, message):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data, "online", lambda: reachable)
    find_spec = data.importlib.util.find_spec  # TensorFlow present or not, whatever is installed
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: (
        (object() if tensorflow else None) if name == "tensorflow" else find_spec(name)))
    start = time.monotonic()
    with pytest.raises(DataError, match=message) as e:
        data.load_arrays("fashion_mnist", tfds_data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    assert "give data_dir" in str(e.value) and str(tmp_path) in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or prepared


def test_load_images_reads_a_folder_in_natural_order_and_refuses_mixed_shapes(tmp_path):
    for i in (10, 9, 2):
        Image.fromarray(np.full((4, 5), i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = files.load_images(tmp_path)
    assert images.shape == (3, 4, 5, 1) and images[:, 0, 0, 0].tolist() == [2, 9, 10]
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "11.png")
    with pytest.raises(data.DataError, match="differs from"):
        files.load_images(tmp_path)
    with pytest.raises(data.DataError, match="no such folder"):
        files.load_images(tmp_path / "missing")
