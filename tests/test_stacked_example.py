"""The stacked sparse autoencoder example: one real run on real images; the
other paths (flags, data, bad input) stop before training."""

import os

import keras
import numpy as np
import pytest

from keras_sparsity import ACTIVE_THRESHOLD, KLSparsityRegularizer

from conftest import (
    check_bad_flag,
    check_earlier_run_is_kept,
    load_script,
    read_metrics,
    run_cli,
)
from example_helpers import real_run
from test_data import write_idx_dataset, write_npz_dataset

OUTPUTS = [
    "metrics.json",
    "filters.png",
    "features_of_features.png",
    "autoencoder1.keras",
    "autoencoder2.keras",
    "pretrained.keras",
    "classifier.keras",
]
EPOCHS = 1  # the real run's, each step


@pytest.fixture(scope="module")
def example():
    return load_script(
        "examples/stacked_sparse_autoencoder.py", "stacked_example"
    )


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory):
    """The real run: (output folder, x_test, y_test)."""
    folder, _, x_test, y_test = real_run("stacked", tmp_path_factory)
    return folder, x_test, y_test


def load(folder, name):
    return keras.saving.load_model(folder / f"{name}.keras")


def accuracy_of(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))


def test_writes_every_output_and_nothing_else(idx_run):
    folder, _, _ = idx_run
    assert sorted(os.listdir(folder)) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert os.path.getsize(folder / name) > 0, name
    metrics = read_metrics(folder)
    assert metrics["reloads"] == dict.fromkeys(
        ["autoencoder1", "autoencoder2", "pretrained", "classifier"], True
    )
    assert metrics["reload_matches"] is True
    assert (metrics["train_images"], metrics["test_images"]) == (1024, 256)
    # Real images, a few steps: better than chance (10 classes).
    assert metrics["test_accuracy"] > 0.2
    assert metrics["scratch_test_accuracy"] > 0.4


def test_accuracies_match_the_saved_classifiers(idx_run):
    folder, x_test, y_test = idx_run
    metrics = read_metrics(folder)
    assert metrics["test_accuracy"] == pytest.approx(
        accuracy_of(load(folder, "classifier"), x_test, y_test)
    )
    assert metrics["pretrained_test_accuracy"] == pytest.approx(
        accuracy_of(load(folder, "pretrained"), x_test, y_test)
    )
    # The network trained from scratch is not saved: its reported accuracy
    # is Keras's own accuracy metric after its last epoch.
    history = metrics["history"]
    assert metrics["scratch_test_accuracy"] == pytest.approx(
        history["scratch"]["val_accuracy"][-1]
    )
    assert metrics["test_accuracy"] == pytest.approx(
        history["fine_tuning"]["val_accuracy"][-1]
    )


def test_budgets_of_fine_tuning_and_of_the_network_from_scratch(idx_run):
    metrics = read_metrics(idx_run[0])
    assert len(metrics["history"]["fine_tuning"]["loss"]) == EPOCHS
    assert len(metrics["history"]["scratch"]["loss"]) == 4 * EPOCHS
    assert metrics["epochs"] == {
        "autoencoder1": EPOCHS,
        "autoencoder2": EPOCHS,
        "softmax": EPOCHS,
        "fine_tuning": EPOCHS,
        "scratch": 4 * EPOCHS,
    }
    assert metrics["parameters"] == 784 * 200 + 200 + 200 * 200 + 200 + 2010


def test_the_stack_is_the_two_encoders_and_is_then_fine_tuned(idx_run):
    folder = idx_run[0]
    pretrained = load(folder, "pretrained")
    classifier = load(folder, "classifier")
    for number in (1, 2):
        code = load(folder, f"autoencoder{number}").get_layer("code")
        for ours, theirs in zip(
            pretrained.get_layer(f"hidden{number}").get_weights(),
            code.get_weights(),
        ):
            np.testing.assert_array_equal(ours, theirs)
        # Fine-tuning moved the weights of every layer.
        assert not np.allclose(
            classifier.get_layer(f"hidden{number}").get_weights()[0],
            code.get_weights()[0],
        )
    assert [layer.output.shape[-1] for layer in classifier.layers] == [
        200,
        200,
        10,
    ]
    # The classifier is fine-tuned on the labels alone, as UFLDL and MATLAB
    # do: no KL penalty is left on it.
    assert all(
        layer.activity_regularizer is None for layer in classifier.layers
    )


def test_layer_figures_match_the_saved_autoencoders(idx_run):
    folder, x_test, _ = idx_run
    metrics = read_metrics(folder)
    inputs = x_test
    for number, layer in enumerate(metrics["layers"], start=1):
        autoencoder = load(folder, f"autoencoder{number}")
        penalty = autoencoder.get_layer("code").activity_regularizer
        assert isinstance(penalty, KLSparsityRegularizer)
        size = inputs.shape[1]
        # beta and weight decay in Keras's units: 2 / d and 1 / d of the
        # notes' (d = 784, then 200).
        assert (penalty.rho, penalty.beta) == (0.1, pytest.approx(6 / size))
        assert (layer["rho"], layer["beta"]) == (penalty.rho, penalty.beta)
        assert layer["l2"] == pytest.approx(3e-3 / size)
        assert (layer["units"], layer["inputs"]) == (200, size)
        reconstructions = autoencoder.predict(inputs, verbose=0)
        mse = float(np.mean((reconstructions - inputs) ** 2))
        assert layer["test_mse"] == pytest.approx(mse, rel=1e-5)
        baseline = np.mean((inputs - inputs.mean(axis=0)) ** 2)
        assert layer["mean_input_mse"] == pytest.approx(baseline, rel=1e-5)
        encoder = keras.Model(
            autoencoder.inputs, autoencoder.get_layer("code").output
        )
        codes = encoder.predict(inputs, verbose=0)
        assert layer["mean_activation"] == pytest.approx(codes.mean(), 1e-5)
        dead = int(np.sum(~np.any(codes > ACTIVE_THRESHOLD, axis=0)))
        assert layer["dead_units"] == dead
        spread = np.percentile(codes.std(axis=0), [5, 25, 50, 75, 95])
        np.testing.assert_allclose(
            list(layer["unit_std_percentiles"].values()), spread, rtol=1e-4
        )
        inputs = codes  # the second autoencoder encodes the first's codes


def test_quick_trains_on_the_first_images_of_an_archive(
    example, tmp_path, monkeypatch
):
    arrays = write_npz_dataset(tmp_path / "data.npz", n_train=64, n_test=16)
    monkeypatch.setitem(example.QUICK, "train_images", 48)
    args = example.parse_args(["--data-dir", str(tmp_path / "data.npz")])
    (x_train, y_train), (x_test, y_test) = example.load_labelled_data(args)
    assert (len(x_train), len(y_train), len(x_test)) == (64, 64, 16)
    args = example.parse_args(
        ["--data-dir", str(tmp_path / "data.npz"), "--quick"]
    )
    (x_train, y_train), (x_test, y_test) = example.load_labelled_data(args)
    np.testing.assert_allclose(
        x_train * 255, arrays["x_train"][:48].reshape(48, 784), atol=1e-4
    )
    assert y_train.tolist() == arrays["y_train"][:48].tolist()
    assert y_test.tolist() == arrays["y_test"].tolist()


def test_defaults(example):
    args = example.parse_args(["--dataset", "fashion_mnist"])
    assert (args.epochs, args.batch_size, args.quick) == (20, 128, False)
    assert args.output_dir == os.path.join("runs", "fashion_mnist-stacked")
    args = example.parse_args(["--dataset", "mnist_5k", "--quick"])
    assert args.epochs == example.QUICK["epochs"]
    assert args.output_dir == os.path.join("runs", "mnist_5k-stacked-quick")
    assert example.parse_args(["--quick", "--epochs", "7"]).epochs == 7


# --- bad input: one line, exit status 2, nothing lost ---------------------


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--batch-size", "-3"], "argument --batch-size: must be >= 1, got -3"),
        (["--epochs", "2.5"], "argument --epochs: expected an integer"),
        (["--dataset", "cifar10"], "argument --dataset: invalid choice"),
        (["--quick", "yes"], "unrecognized arguments: yes"),
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


def labels_only(which):
    def make(path):
        arrays = write_npz_dataset(path, n_train=16, n_test=8, labels=True)
        np.savez(path, **{k: v for k, v in arrays.items() if k in which})

    return make


@pytest.mark.parametrize(
    "make,fragment",
    [
        (
            lambda p: write_npz_dataset(p, 16, 8, labels=False),
            "has no labels (y_train, y_test), and the stacked classifier "
            "needs them",
        ),
        (
            labels_only({"x_train", "x_test", "y_train"}),
            "has no labels (y_test)",
        ),
        (
            lambda p: np.savez(
                p,
                x_train=np.zeros((4, 784)),
                y_train=np.array([0, 1, 2, 10]),
                x_test=np.zeros((2, 784)),
                y_test=np.array([0, 1]),
            ),
            "y_train holds labels from 0 to 10; expected classes 0 to 9",
        ),
        (lambda p: p.write_bytes(b"PK\x03\x04 broken"), "not a readable .npz"),
        (lambda p: None, "data.npz: no such file or folder"),
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
