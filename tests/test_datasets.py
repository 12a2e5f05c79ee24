"""Loading MNIST-style data from IDX files, archives and Keras's cache."""

import gzip
import os

import keras
import numpy as np
import pytest

from keras_sparsity.datasets import (
    DEBIAN_FASHION_MNIST,
    DataUnavailableError,
    load_arrays,
    load_dataset,
    read_idx,
)


def write_idx(path, array):
    """Writes `array` (uint8) as an IDX file, the MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
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
    x_train, x_test = fake_images(10, 2), fake_images(4, 3)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, x_test=x_test)
    for path in (tmp_path / "mnist.npz", tmp_path):
        (a, ya), (b, yb) = load_dataset("mnist", data_dir=path)
        np.testing.assert_allclose(a, x_train.reshape(10, 784) / 255.0)
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
    np.testing.assert_allclose(b, x_test.reshape(5, 784) / 255.0)
    assert a.shape == (12, 784) and a.dtype == np.float32
    assert ya.tolist() == [0] * 12 and yb.tolist() == [1] * 5


def test_unavailable_data_names_the_offline_options(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://example: no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert message.startswith("Could not load mnist")
    assert "--data-dir PATH" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "~/.keras/datasets/" in message
    assert "no network" in message


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10")
    assert str(info.value) == (
        "Invalid value for argument `name`: expected one of "
        "('mnist', 'fashion_mnist'). Received: name='cifar10'"
    )
    with pytest.raises(DataUnavailableError, match="neither the IDX files"):
        load_arrays(tmp_path)
    with pytest.raises(DataUnavailableError, match="No such file"):
        load_arrays(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros(3))
    with pytest.raises(DataUnavailableError, match="lacks"):
        load_arrays(tmp_path / "bad.npz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(tmp_path / "junk")


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST),
    reason="Debian's dataset-fashion-mnist package is not installed",
)
def test_debian_fashion_mnist_is_found_without_data_dir():
    (x_train, y_train), (x_test, y_test) = load_dataset("fashion_mnist")
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert sorted(set(y_test.tolist())) == list(range(10))
    assert 0.2 < x_train.mean() < 0.4  # Fashion-MNIST's mean pixel is 0.29
