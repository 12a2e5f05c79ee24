"""The MNIST example end to end on tiny data written by the tests."""

import json
import os

import keras
import numpy as np
import pytest

from keras_sparsity import ACTIVE_THRESHOLD

from conftest import (
    check_bad_flag,
    check_earlier_run_is_kept,
    earlier_run,
    load_script,
    run_cli,
    unchanged,
)
from test_data import fake_images, write_idx_dataset, write_npz_dataset

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
    assert sorted(os.listdir(output_dir)) == sorted(OUTPUTS)  # no leftovers
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["recipe"] == recipe
    assert metrics["parameters"] == 314_584
    assert metrics["reload_matches"] is True
    assert metrics["active_threshold"] == ACTIVE_THRESHOLD
    assert len(metrics["history"]["loss"]) == epochs
    assert len(metrics["history"]["code_mean_activation"]) == epochs
    assert len(metrics["firing_rates"]) == 200
    assert metrics["versions"]["keras"] == keras.__version__
    assert metrics["arguments"]["epochs"] == epochs
    recipe_penalties = {
        "tuned": {"code": (0.05, 0.02)},
        "seed": {"code": (0.01, 3.0), "reconstruction": (0.01, 3.0)},
    }[recipe]
    assert {
        name: (p["rho"], p["beta"]) for name, p in metrics["penalties"].items()
    } == recipe_penalties
    # The saved autoencoder reproduces the reported figures.
    model = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    reconstructions = model.predict(test_images, verbose=0)
    mse = float(np.mean((reconstructions - test_images) ** 2))
    assert mse == pytest.approx(metrics["test_mse"], rel=1e-5)
    codes = keras.Model(model.inputs, model.get_layer("code").output).predict(
        test_images, verbose=0
    )
    assert np.mean(codes) == pytest.approx(metrics["mean_activation"], 1e-5)
    np.testing.assert_allclose(
        metrics["firing_rates"], codes.mean(axis=0), rtol=1e-5
    )
    dead = int(np.sum(~np.any(codes > ACTIVE_THRESHOLD, axis=0)))
    assert metrics["dead_units"] == dead
    mean_image_mse = np.mean((test_images - test_images.mean(0)) ** 2)
    assert metrics["mean_image_mse"] >= mean_image_mse - 1e-6
    return metrics


@pytest.mark.parametrize("recipe", ["seed", "tuned"])
def test_idx_folder_end_to_end(example, tmp_path, recipe, capsys):
    arrays = write_idx_dataset(tmp_path / "data", n_train=128, n_test=40)
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
    assert ("Why the seed recipe's reconstructions are dark" in printed) == (
        recipe == "seed"
    )
    x_test = arrays["t10k-images-idx3-ubyte"].reshape(40, 784) / 255.0
    check_outputs(str(out), recipe, 2, x_test.astype("float32"))


def test_npz_archive_end_to_end(example, tmp_path):
    arrays = write_npz_dataset(tmp_path / "mnist.npz", 64, 16, labels=False)
    out = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path / "mnist.npz"), "--epochs", "1"]
    assert (
        example.main(argv + ["--output-dir", str(out), "--verbose", "0"]) == 0
    )
    x_test = arrays["x_test"].reshape(16, 784) / 255.0
    check_outputs(str(out), "tuned", 1, x_test.astype("float32"))


def test_tfds_loader_with_mock_data(example, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from data import tfds_pipelines

    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=48):
        code = example.main(
            [
                "--loader",
                "tfds",
                "--recipe",
                "seed",
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
        test = tfds_pipelines("mnist", 16, 0)[2]
    assert code == 0
    assert test.shape == (48, 784) and 0.0 <= test.min() <= test.max() <= 1
    check_outputs(str(out), "seed", 1, test)


def test_defaults(example):
    args = example.parse_args([])
    assert (args.dataset, args.recipe, args.epochs, args.batch_size) == (
        "mnist",
        "tuned",
        None,  # from the size of the data: epochs_for
        128,
    )
    assert args.output_dir == os.path.join("runs", "mnist-tuned")
    args = example.parse_args(
        ["--dataset", "fashion_mnist", "--recipe", "seed", "--epochs", "3"]
    )
    assert (args.epochs, args.batch_size) == (3, 256)
    assert args.output_dir == os.path.join("runs", "fashion_mnist-seed")


def test_smaller_data_get_the_same_number_of_steps(example):
    tuned, seed = example.RECIPES["tuned"], example.RECIPES["seed"]
    assert example.epochs_for(tuned, np.zeros((60_000, 784))) == 30
    assert example.epochs_for(seed, np.zeros((60_000, 784))) == 10
    assert example.epochs_for(tuned, np.zeros((4_000, 784))) == 450
    assert example.epochs_for(seed, np.zeros((4_000, 784))) == 150
    assert example.epochs_for(tuned, None) == 30  # a tfds pipeline
    assert example.epochs_for(tuned, np.zeros((10**6, 784))) == 2


# --- bad input: one line, exit status 2, nothing lost ---------------------


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--epochs", "-1"], "argument --epochs: must be >= 1, got -1"),
        (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (
            ["--epochs", "two"],
            "argument --epochs: expected an integer, got 'two'",
        ),
        (["--dataset", "cifar10"], "argument --dataset: invalid choice"),
    ],
)
def test_bad_flags_leave_an_earlier_run_alone(
    example, tmp_path, capsys, flags, message
):
    check_bad_flag(
        example.main, flags, message, tmp_path / "run", OUTPUTS, capsys
    )


def test_an_earlier_run_is_kept_unless_overwrite(example, tmp_path, capsys):
    write_idx_dataset(tmp_path / "data", n_train=32, n_test=8)
    argv = ["--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    argv += ["--verbose", "0"]
    files = check_earlier_run_is_kept(
        example.main, argv, tmp_path / "run", OUTPUTS, capsys
    )
    argv += ["--output-dir", str(tmp_path / "run"), "--overwrite"]
    assert example.main(argv) == 0
    assert not unchanged(tmp_path / "run", files)
    assert sorted(os.listdir(tmp_path / "run")) == sorted(OUTPUTS)


def test_an_interrupted_run_leaves_the_earlier_results_whole(
    example, tmp_path, monkeypatch
):
    write_idx_dataset(tmp_path / "data", n_train=32, n_test=8)
    files = earlier_run(tmp_path / "run", OUTPUTS)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(example, "save_and_reload", interrupted)
    argv = ["--data-dir", str(tmp_path / "data"), "--epochs", "1"]
    argv += ["--output-dir", str(tmp_path / "run"), "--overwrite"]
    with pytest.raises(KeyboardInterrupt):
        example.main(argv + ["--verbose", "0"])
    assert unchanged(tmp_path / "run", files)
    assert sorted(os.listdir(tmp_path / "run")) == sorted(OUTPUTS)


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda p: None, "missing: no such file or folder"),
        (lambda p: p.write_bytes(b"PK\x03\x04 broken"), "not a readable .npz"),
        (
            lambda p: np.savez(p, x_train=fake_images(3, 0)),
            "lacks ['x_test']",
        ),
    ],
)
def test_a_bad_data_file_gets_one_line_and_no_empty_folder(
    example, tmp_path, capsys, make, fragment
):
    path = tmp_path / ("missing" if "missing" in fragment else "data.npz")
    make(path)
    out = tmp_path / "new-run"
    argv = ["--data-dir", str(path), "--output-dir", str(out)]
    code, err = run_cli(example.main, argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert fragment in err
    assert not out.exists()


def test_an_unwritable_output_folder_is_refused_before_training(
    example, tmp_path, capsys
):
    (tmp_path / "file").write_text("not a folder")
    code, err = run_cli(
        example.main, ["--output-dir", str(tmp_path / "file" / "run")], capsys
    )
    assert code == 2
    assert err.startswith(f"error: {tmp_path / 'file' / 'run'}: cannot write")
    assert err.count("\n") == 1


def test_offline_mnist_names_the_offline_options(
    example, tmp_path, monkeypatch, capsys
):
    def offline():
        raise Exception("URL fetch failure: [Errno -2] Name not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    argv = ["--output-dir", str(tmp_path / "r")]
    code, err = run_cli(example.main, argv, capsys)
    assert code == 2
    assert err.startswith("error: could not load mnist (URL fetch failure")
    assert "--dataset mnist_5k" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
