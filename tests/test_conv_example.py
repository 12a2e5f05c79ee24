"""The convolutional sparse autoencoder example: one real run on real
images; the other paths (flags, data, bad input) stop before training."""

import os

import keras
import numpy as np
import pytest

from keras_sparsity import ACTIVE_THRESHOLD, KLSparsityRegularizer

from conftest import (
    check_bad_flag,
    check_earlier_run_is_kept,
    kl_penalty_reference,
    load_script,
    read_metrics,
    run_cli,
    to_numpy,
)
from example_helpers import (
    batch_penalties,
    real_images,
    real_run,
    weight_decay,
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
EPOCHS = 3  # the real run's
CHANNELS = 16


@pytest.fixture(scope="module")
def example():
    return load_script("examples/conv_sparse_autoencoder.py", "conv_example")


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory):
    """The real run: (output folder, x_test)."""
    folder, printed, x_test, _ = real_run("conv", tmp_path_factory)
    return folder, x_test


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
    assert (metrics["train_images"], metrics["test_images"]) == (1024, 256)
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
    assert codes.shape == (256, 14, 14, CHANNELS)
    assert metrics["code_shape"] == [14, 14, CHANNELS]
    assert metrics["parameters"] == model.count_params() == 2 * 16 * 49 + 17
    # One firing rate per channel: its mean over the images and the pixels.
    np.testing.assert_allclose(
        metrics["firing_rates"], codes.mean((0, 1, 2), np.float64), rtol=1e-5
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


def test_the_real_run_learns_and_explains_its_val_loss(
    idx_run, tmp_path_factory
):
    folder, x_test = idx_run
    metrics = read_metrics(folder)
    x_train = real_images()["x_train"].reshape(-1, 784) / 255.0
    assert metrics["mean_image_mse"] == pytest.approx(
        np.mean((x_test - x_train.mean(axis=0)) ** 2), rel=1e-5
    )
    assert metrics["test_mse"] < 0.85 * metrics["mean_image_mse"]
    # Keras's val_loss: the test MSE, each validation batch's KL (a batch
    # statistic) and the weight decay.
    model, encoder = code_model(folder)
    codes = encoder.predict(x_test, verbose=0)
    penalty = model.get_layer("code").activity_regularizer
    kl = batch_penalties(codes, penalty.rho, penalty.beta, batch_size=32)
    decay = weight_decay(model)
    parts = metrics["validation_loss"]
    assert parts["activity_penalty"] == pytest.approx(kl, rel=1e-4)
    assert parts["weight_decay"] == pytest.approx(decay, rel=1e-5)
    assert metrics["history"]["val_loss"][-1] == pytest.approx(
        metrics["test_mse"] + kl + decay, rel=1e-4
    )
    printed = real_run("conv", tmp_path_factory)[1]
    assert (
        f"val_loss {metrics['history']['val_loss'][-1]:.5f} is not the test "
        f"MSE {metrics['test_mse']:.5f}"
    ) in printed


def test_quick_trains_on_the_first_images_of_an_archive_without_labels(
    example, tmp_path, monkeypatch
):
    arrays = write_npz_dataset(tmp_path / "data.npz", 64, 16, labels=False)
    monkeypatch.setitem(example.QUICK, "train_images", 48)
    argv = ["--data-dir", str(tmp_path / "data.npz"), "--quick"]
    x_train, x_test = example.load_images(example.parse_args(argv))
    np.testing.assert_allclose(
        x_train * 255, arrays["x_train"][:48].reshape(48, 784), atol=1e-4
    )
    assert x_test.shape == (16, 784)


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
