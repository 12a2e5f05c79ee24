"""MNIST-style image data: Keras loaders, IDX files and `.npz` archives."""

import gzip
import os

import numpy as np

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
"""Where Debian's `dataset-fashion-mnist` package puts its IDX files."""

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DATASETS = ("mnist", "fashion_mnist")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}


class DataUnavailableError(RuntimeError):
    """Raised when a data set can be neither found on disk nor downloaded.

    Example:

    >>> try:
    ...     load_arrays("/no/such/folder")
    ... except DataUnavailableError as error:
    ...     print(error)
    No such file or folder: /no/such/folder
    """


def read_idx(path):
    """Reads an IDX file (the MNIST format), gzipped or not, into an array.

    Args:
        path: Path to an IDX file, such as `train-images-idx3-ubyte.gz`.

    Returns:
        A NumPy array with the file's shape and dtype.

    Example:

    >>> import gzip, os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
    >>> header = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big")
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(header + bytes([7, 2, 1]))
    >>> read_idx(path).tolist()
    [7, 2, 1]
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"Not an IDX file (bad magic number): {path}")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    offset = 4 + 4 * ndim
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def _find_idx(data_dir, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    return None


def load_arrays(path):
    """Loads `(x_train, y_train), (x_test, y_test)` from a file or folder.

    Args:
        path: A folder holding the four standard IDX files
            (`train-images-idx3-ubyte.gz`, ..., gzipped or not), or a
            Keras-style `.npz` archive with `x_train` and `x_test` (and
            optionally `y_train`, `y_test`), or a folder holding one such
            archive.

    Returns:
        Two `(x, y)` pairs of raw arrays; `y` is `None` where absent.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> np.savez(path, x_train=np.zeros((3, 28, 28), np.uint8),
    ...          x_test=np.zeros((2, 28, 28), np.uint8))
    >>> (x_train, y_train), (x_test, _) = load_arrays(path)
    >>> x_train.shape, y_train, x_test.shape
    ((3, 28, 28), None, (2, 28, 28))
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = {key: _find_idx(path, stem) for key, stem in IDX_FILES.items()}
        if found["x_train"] and found["x_test"]:
            arrays = {k: read_idx(p) if p else None for k, p in found.items()}
            return (arrays["x_train"], arrays["y_train"]), (
                arrays["x_test"],
                arrays["y_test"],
            )
        archives = sorted(f for f in os.listdir(path) if f.endswith(".npz"))
        if len(archives) != 1:
            raise DataUnavailableError(
                f"{path} holds neither the IDX files "
                f"({', '.join(s + '.gz' for s in IDX_FILES.values())}) nor "
                "exactly one .npz archive with x_train and x_test."
            )
        path = os.path.join(path, archives[0])
    if not os.path.exists(path):
        raise DataUnavailableError(f"No such file or folder: {path}")
    with np.load(path) as archive:
        missing = {"x_train", "x_test"} - set(archive.files)
        if missing:
            raise DataUnavailableError(
                f"{path} lacks {sorted(missing)}; it has {archive.files}."
            )
        return (archive["x_train"], archive.get("y_train")), (
            archive["x_test"],
            archive.get("y_test"),
        )


def _offline_message(name):
    return (
        f"Could not load {name}: it is not cached and cannot be downloaded "
        "here. Offline options:\n"
        "  --data-dir PATH   a folder with the four IDX files "
        "(train-images-idx3-ubyte.gz, ...) or a .npz with x_train/x_test\n"
        "  --dataset fashion_mnist   with Debian's images: "
        "apt-get install dataset-fashion-mnist\n"
        f"  or copy Keras's own {name}.npz into ~/.keras/datasets/ (or "
        "$KERAS_HOME/datasets/), where its loader finds it without a download."
    )


def load_dataset(name="mnist", data_dir=None):
    """Loads MNIST or Fashion-MNIST as flattened float32 pixels in [0, 1].

    Without `data_dir`, `"fashion_mnist"` is read from Debian's
    `dataset-fashion-mnist` files when they are installed, and otherwise
    both data sets come from `keras.datasets.<name>.load_data()`, which
    downloads once and caches.

    Args:
        name: `"mnist"` or `"fashion_mnist"`.
        data_dir: Optional folder of IDX files or `.npz` archive, see
            `load_arrays`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: images of shape `(n, 784)`
        scaled to [0, 1], and integer labels (or `None`).

    Raises:
        DataUnavailableError: if the data can be neither found nor
            downloaded; its message names the offline options.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> np.savez(path, x_train=np.full((3, 28, 28), 255, np.uint8),
    ...          x_test=np.zeros((2, 28, 28), np.uint8))
    >>> (x_train, _), (x_test, _) = load_dataset("mnist", data_dir=path)
    >>> x_train.shape, float(x_train.max()), x_test.dtype
    ((3, 784), 1.0, dtype('float32'))
    """
    if name not in DATASETS:
        raise ValueError(
            f"Invalid value for argument `name`: expected one of {DATASETS}. "
            f"Received: name={name!r}"
        )
    if data_dir is not None:
        train, test = load_arrays(data_dir)
    elif name == "fashion_mnist" and _find_idx(
        DEBIAN_FASHION_MNIST, IDX_FILES["x_train"]
    ):
        train, test = load_arrays(DEBIAN_FASHION_MNIST)
    else:
        import keras

        try:
            train, test = getattr(keras.datasets, name).load_data()
        except Exception as error:  # Keras raises a bare Exception offline.
            raise DataUnavailableError(
                _offline_message(name) + f"\n(Keras said: {error})"
            ) from error
    return _prepare(*train), _prepare(*test)


def _prepare(x, y):
    x = np.asarray(x)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = (x.reshape(len(x), -1) / scale).astype("float32")
    return x, None if y is None else np.asarray(y).astype("int64")
