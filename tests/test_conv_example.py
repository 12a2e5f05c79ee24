"""The convolutional sparse autoencoder example end to end on tiny data."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sparsity import ACTIVE_THRESHOLD, KLSparsityRegularizer

from conftest import (
    check_bad_flag,
    check_earlier_run_is_kept,
    earlier_run,
    kl_penalty_reference,
    load_script,
    read_metrics,
    run_cli,
    to_numpy,
)
from test_data import write_idx_dataset, write_npz_dataset

OUTPUTS = [
    "metrics.json",
    "filters.png",
    "code_channels.png",
    "reconstructions.png",
    "history.csv",
    "model.keras",
]
EPOCHS = 2
CHANNELS = 16


@pytest.fixture(scope="module")
def example():
    return load_script("examples/conv_sparse_autoencoder.py", "conv_example")


@pytest.fixture(scope="module")
def idx_run(example, tmp_path_factory):
    """One run on an IDX folder: (output folder, x_test)."""
    folder = tmp_path_factory.mktemp("conv")
    arrays = write_idx_dataset(folder / "data", n_train=128, n_test=40)
    argv = ["--data-dir", str(folder / "data"), "--epochs", str(EPOCHS)]
    argv += ["--batch-size", "32", "--output-dir", str(folder / "run")]
    assert example.main(argv + ["--verbose", "0"]) == 0
    x_test = arrays["t10k-images-idx3-ubyte"].reshape(40, 784) / 255.0
    return folder / "run", x_test.astype("float32")


def code_model(folder):
    model = keras.saving.load_model(folder / "model.keras")
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    return model, encoder


def test_writes_every_output_and_nothing_else(idx_run):
    folder, _ = idx_run
    assert sorted(os.listdir(folder)) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert os.path.getsize(folder / name) > 0, name
    metrics = read_metrics(folder)
    assert metrics["reload_matches"] is True
    assert (metrics["train_images"], metrics["test_images"]) == (128, 40)
    assert len(metrics["history"]["loss"]) == EPOCHS
    assert len(metrics["history"]["code_mean_activation"]) == EPOCHS
    with open(folder / "history.csv") as f:
        assert len(f.read().splitlines()) == EPOCHS + 1


def test_figures_match_the_saved_model(idx_run):
    folder, x_test = idx_run
    metrics = read_metrics(folder)
    model, encoder = code_model(folder)
    reconstructions = model.predict(x_test, verbose=0)
    mse = float(np.mean((reconstructions - x_test) ** 2))
    assert metrics["test_mse"] == pytest.approx(mse, rel=1e-5)
    codes = encoder.predict(x_test, verbose=0)
    assert codes.shape == (40, 14, 14, CHANNELS)
    assert metrics["code_shape"] == [14, 14, CHANNELS]
    assert metrics["parameters"] == model.count_params() == 2 * 16 * 49 + 17
    # One firing rate per channel: its mean over the images and the pixels.
    np.testing.assert_allclose(
        metrics["firing_rates"], codes.mean(axis=(0, 1, 2)), rtol=1e-5
    )
    assert metrics["mean_activation"] == pytest.approx(codes.mean(), 1e-5)
    fires = np.any(codes > ACTIVE_THRESHOLD, axis=(0, 1, 2))
    assert metrics["dead_units"] == int(np.sum(~fires))
    assert metrics["kl_penalty"] == pytest.approx(
        kl_penalty_reference(codes, metrics["rho"], metrics["beta"]), 1e-4
    )


def test_the_code_map_trains_with_one_kl_term_per_channel(idx_run):
    folder, x_test = idx_run
    metrics = read_metrics(folder)
    model, encoder = code_model(folder)
    penalty = model.get_layer("code").activity_regularizer
    assert isinstance(penalty, KLSparsityRegularizer)
    # beta in Keras's units: the notes' beta = 3 times 2 / 784 pixels.
    assert (penalty.rho, penalty.beta) == (0.05, pytest.approx(6 / 784))
    assert (metrics["rho"], metrics["beta"]) == (penalty.rho, penalty.beta)
    # The losses the layer adds in training: the KL of each channel's mean
    # over the batch and the 14x14 pixels, and the weight decay.
    batch = x_test[:16]
    codes = encoder.predict(batch, verbose=0)
    model(batch, training=True)  # eagerly, so that its losses are concrete
    code_layer = model.get_layer("code")
    kernel = to_numpy(code_layer.kernel)
    decay = code_layer.kernel_regularizer.l2 * np.sum(kernel.astype("f8") ** 2)
    assert code_layer.kernel_regularizer.l2 == pytest.approx(3e-3 / 784)
    total = sum(float(to_numpy(loss)) for loss in code_layer.losses)
    assert total == pytest.approx(
        kl_penalty_reference(codes, penalty.rho, penalty.beta) + decay,
        rel=1e-4,
    )


def test_saved_model_loads_in_a_fresh_process_with_keras_sparsity(
    idx_run, subprocess_env
):
    folder, x_test = idx_run
    np.save(folder.parent / "x_test.npy", x_test)
    script = f"""
import keras, numpy as np
import keras_sparsity
model = keras.saving.load_model({str(folder / "model.keras")!r})
penalty = model.get_layer("code").activity_regularizer
assert type(penalty) is keras_sparsity.KLSparsityRegularizer, penalty
x = np.load({str(folder.parent / "x_test.npy")!r})
print(float(np.mean((model.predict(x, verbose=0) - x) ** 2)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    mse = float(done.stdout.strip().splitlines()[-1])
    assert mse == pytest.approx(read_metrics(folder)["test_mse"], rel=1e-5)


def test_npz_without_labels_quick_subset_and_overwrite(
    example, tmp_path, monkeypatch
):
    write_npz_dataset(tmp_path / "data.npz", 64, 16, labels=False)
    files = earlier_run(tmp_path / "run", OUTPUTS)
    monkeypatch.setitem(example.QUICK, "train_images", 48)
    argv = ["--data-dir", str(tmp_path / "data.npz"), "--quick"]
    argv += ["--output-dir", str(tmp_path / "run"), "--overwrite"]
    assert example.main(argv + ["--verbose", "0"]) == 0
    assert sorted(os.listdir(tmp_path / "run")) == sorted(OUTPUTS)
    assert not any(
        (tmp_path / "run" / n).read_bytes() == c for n, c in files.items()
    )
    metrics = read_metrics(tmp_path / "run")
    assert (metrics["train_images"], metrics["test_images"]) == (48, 16)
    assert len(metrics["history"]["loss"]) == example.QUICK["epochs"]
    assert metrics["reload_matches"] is True


def test_defaults(example):
    args = example.parse_args(["--dataset", "fashion_mnist"])
    assert (args.epochs, args.batch_size, args.quick) == (10, 128, False)
    assert args.output_dir == os.path.join("runs", "fashion_mnist-conv")
    args = example.parse_args(["--dataset", "mnist_5k", "--quick"])
    assert args.epochs == example.QUICK["epochs"]
    assert args.output_dir == os.path.join("runs", "mnist_5k-conv-quick")
    assert example.parse_args(["--quick", "--epochs", "7"]).epochs == 7


# --- bad input: one line, exit status 2, nothing lost ---------------------


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["--epochs", "ten"], "argument --epochs: expected an integer"),
        (["--dataset", "cifar10"], "argument --dataset: invalid choice"),
        (["--seed", "x"], "argument --seed: invalid int value"),
    ],
)
def test_bad_flags_leave_an_earlier_run_alone(
    example, tmp_path, capsys, flags, message
):
    check_bad_flag(
        example.main, flags, message, tmp_path / "run", OUTPUTS, capsys
    )


def test_an_earlier_run_is_kept_without_overwrite(example, tmp_path, capsys):
    write_idx_dataset(tmp_path / "data", n_train=32, n_test=8)
    argv = ["--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    check_earlier_run_is_kept(
        example.main, argv, tmp_path / "run", OUTPUTS, capsys
    )


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 broken"), "not a readable .npz"),
        (lambda p: None, "data.npz: no such file or folder"),
        (
            lambda p: np.savez(p, x_train=np.zeros((4, 28, 28))),
            "lacks ['x_test']",
        ),
        (
            lambda p: np.savez(
                p, x_train=np.zeros((4, 32, 32)), x_test=np.zeros((2, 32, 32))
            ),
            "x_train has shape (4, 32, 32); expected 28x28 images",
        ),
    ],
)
def test_bad_data_gets_one_line_and_no_folder(
    example, tmp_path, capsys, make, fragment
):
    make(tmp_path / "data.npz")
    out = tmp_path / "new-run"
    argv = ["--data-dir", str(tmp_path / "data.npz"), "--output-dir", str(out)]
    code, err = run_cli(example.main, argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert fragment in err
    assert not out.exists()
