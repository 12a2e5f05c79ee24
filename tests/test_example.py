"""The MNIST example end to end on tiny data written by the tests."""

import json
import os

import keras
import numpy as np
import pytest
from conftest import load_script
from test_datasets import fake_images, write_idx_dataset

OUTPUTS = [
    "metrics.json",
    "filters.png",
    "reconstructions.png",
    "firing_rates.png",
    "history.csv",
    "model.keras",
]


@pytest.fixture(scope="module")
def example():
    return load_script("examples/mnist_sparse_autoencoder.py", "mnist_example")


def check_outputs(output_dir, recipe, epochs, test_images):
    for name in OUTPUTS:
        assert os.path.getsize(os.path.join(output_dir, name)) > 0, name
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["recipe"] == recipe
    assert metrics["parameters"] == 314_584
    assert metrics["reload_matches"] is True
    assert metrics["reloaded_test_mse"] == pytest.approx(metrics["test_mse"])
    assert len(metrics["history"]["loss"]) == epochs
    assert len(metrics["history"]["code_mean_activation"]) == epochs
    assert len(metrics["firing_rates"]) == 200
    assert 0 <= metrics["dead_units"] <= 200
    assert 0.0 <= metrics["active_fraction"] <= 1.0
    assert metrics["versions"]["keras"] == keras.__version__
    assert metrics["arguments"]["epochs"] == epochs
    # The saved autoencoder reproduces the reported test MSE.
    model = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    reconstructions = model.predict(test_images, verbose=0)
    mse = float(np.mean((reconstructions - test_images) ** 2))
    assert mse == pytest.approx(metrics["test_mse"], rel=1e-5)
    mean_code = np.mean(
        keras.Model(model.inputs, model.get_layer("code").output).predict(
            test_images, verbose=0
        )
    )
    assert mean_code == pytest.approx(metrics["mean_activation"], rel=1e-5)
    return metrics


@pytest.mark.parametrize("recipe", ["seed", "tuned"])
def test_idx_folder_end_to_end(example, tmp_path, recipe, capsys):
    write_idx_dataset(tmp_path / "data", n_train=128, n_test=40)
    out = tmp_path / "run"
    code = example.main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--recipe",
            recipe,
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--output-dir",
            str(out),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Total params: 314,584" in printed
    assert "matches." in printed
    from keras_sparsity.datasets import load_arrays

    x_test = load_arrays(tmp_path / "data")[1][0].reshape(40, 784) / 255.0
    check_outputs(str(out), recipe, 2, x_test.astype("float32"))


def test_npz_archive_end_to_end(example, tmp_path):
    x_train, x_test = fake_images(64, 7), fake_images(16, 8)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, x_test=x_test)
    out = tmp_path / "run"
    assert (
        example.main(
            [
                "--data-dir",
                str(tmp_path / "mnist.npz"),
                "--epochs",
                "1",
                "--output-dir",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    check_outputs(
        str(out), "seed", 1, (x_test.reshape(16, 784) / 255.0).astype("f4")
    )


def test_offline_message_instead_of_a_traceback(
    example, tmp_path, monkeypatch, capsys
):
    def offline():
        raise Exception("URL fetch failure: [Errno -2] Name not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    code = example.main(["--output-dir", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not load mnist")
    assert "--data-dir PATH" in err and "Traceback" not in err


def test_tfds_loader_with_mock_data(example, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=48):
        code = example.main(
            [
                "--loader",
                "tfds",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--output-dir",
                str(out),
                "--verbose",
                "0",
            ]
        )
        _, test = example.tfds_pipelines("mnist", 16, 0)[1:]
    assert code == 0
    assert test.shape == (48, 784) and 0.0 <= test.min() <= test.max() <= 1
    check_outputs(str(out), "seed", 1, test)


def test_default_output_dir(example):
    args = example.parse_args(
        ["--dataset", "fashion_mnist", "--recipe", "tuned"]
    )
    assert args.output_dir == os.path.join("runs", "fashion_mnist-tuned")
    assert (args.epochs, args.batch_size) == (30, 128)
    args = example.parse_args([])
    assert (args.dataset, args.recipe, args.epochs, args.batch_size) == (
        "mnist",
        "seed",
        10,
        256,
    )
