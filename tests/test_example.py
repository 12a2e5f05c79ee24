"""The MNIST example: one real run on real images, the other paths on a tiny
model (4 code units) and tiny data written by the tests."""

import errno
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sparsity import ACTIVE_THRESHOLD

from conftest import (
    check_bad_flag,
    check_earlier_run_is_kept,
    earlier_run,
    kl_penalty_reference,
    load_script,
    read_metrics,
    run_cli,
    unchanged,
)
from example_helpers import (
    batch_penalties,
    real_images,
    real_run,
    weight_decay,
)
from runs import Artifacts
from test_data import fake_images, write_idx_dataset, write_npz_dataset

EPOCHS = 6  # the real run's
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


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_run("mnist", tmp_path_factory)


@pytest.fixture
def tiny(example, monkeypatch):
    """The example with a code of 4 units."""
    monkeypatch.setattr(example, "CODE_UNITS", 4)
    return example


def tiny_argv(tmp_path, *flags):
    """Flags for one epoch on 32 random images in an IDX folder."""
    write_idx_dataset(tmp_path / "data", n_train=32, n_test=8)
    return ["--data-dir", str(tmp_path / "data"), "--epochs", "1", *flags]


def check_validation_loss(metrics, model, x_test, batch_size):
    """Keras's last `val_loss` is the test MSE, the KL penalties of the
    validation batches and the weight decay, as the summary says."""
    parts = metrics["validation_loss"]
    activity = 0.0
    for name, penalty in metrics["penalties"].items():
        layer = model.get_layer(name)
        outputs = keras.Model(model.inputs, layer.output).predict(
            x_test, verbose=0
        )
        rho, beta = penalty["rho"], penalty["beta"]
        activity += batch_penalties(outputs, rho, beta, batch_size)
    assert parts["activity_penalty"] == pytest.approx(activity, rel=1e-4)
    assert parts["weight_decay"] == pytest.approx(weight_decay(model), 1e-5)
    assert parts["test_mse"] == pytest.approx(metrics["test_mse"], 1e-6)
    assert metrics["history"]["val_loss"][-1] == pytest.approx(
        metrics["test_mse"] + activity + weight_decay(model), rel=1e-4
    )


def initial_code_kernel(example, recipe, weight_decay, seed=0):
    """The code kernel a run starts from: the script seeds, then builds."""
    keras.utils.set_random_seed(seed)
    model = example.build_model(example.RECIPES[recipe], weight_decay)
    return keras.ops.convert_to_numpy(model.get_layer("code").kernel)


def check_pixel_weights(metrics, printed, model, x_train):
    """The figures on the pixels the training images barely use, against
    NumPy on the saved model and the training images; returns the mask of
    the pixels that are 0 in every training image."""
    counts = np.sum(x_train.reshape(len(x_train), 784) > 0, axis=0)
    zero = counts == 0
    rare = (counts > 0) & (counts < 0.01 * len(x_train))
    kernel = keras.ops.convert_to_numpy(model.get_layer("code").kernel)
    squared = kernel.astype(np.float64) ** 2
    zero_share = squared[zero].sum() / squared.sum()
    rare_share = squared[rare].sum() / squared.sum()
    assert metrics["zero_pixels"] == int(zero.sum()) > 0
    assert metrics["rare_pixels"] == int(rare.sum())
    assert metrics["rare_pixel_threshold"] == 0.01
    assert metrics["zero_pixel_weight_share"] == pytest.approx(zero_share, 1e-9)
    assert metrics["rare_pixel_weight_share"] == pytest.approx(rare_share, 1e-9)
    decay = model.get_layer("code").kernel_regularizer.l2
    assert metrics["weight_decay"]["code"] == decay
    assert (
        f"{zero.sum()} of 784 pixels are 0 in every training image, "
        f"{rare.sum()} more in all but fewer than 1% of them; their weights "
        f"hold {100 * zero_share:.3g}% and {100 * rare_share:.3g}% of the "
        f"code kernel's squared weight (code layer: L2({decay:.3g}))."
    ) in printed
    return zero


def test_the_real_run_learns_a_sparse_code_and_reports_it_truly(real, example):
    folder, printed, x_test, _ = real
    assert sorted(os.listdir(folder)) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert os.path.getsize(folder / name) > 0, name
    metrics = read_metrics(folder)
    assert (metrics["recipe"], metrics["parameters"]) == ("tuned", 314_584)
    assert metrics["penalties"]["code"]["rho"] == 0.05
    assert metrics["penalties"]["code"]["beta"] == 0.02
    assert list(metrics["penalties"]) == ["code"]
    assert metrics["reload_matches"] is True
    assert metrics["active_threshold"] == ACTIVE_THRESHOLD
    assert metrics["arguments"]["epochs"] == EPOCHS
    assert len(metrics["history"]["loss"]) == EPOCHS
    assert len(metrics["history"]["code_mean_activation"]) == EPOCHS
    lines = (folder / "history.csv").read_text().splitlines()
    assert len(lines) == EPOCHS + 1
    assert metrics["versions"]["keras"] == keras.__version__
    # The saved autoencoder reproduces every reported figure.
    model = keras.saving.load_model(folder / "model.keras")
    mse = float(np.mean((model.predict(x_test, verbose=0) - x_test) ** 2))
    assert metrics["test_mse"] == pytest.approx(mse, rel=1e-5)
    x_train = real_images()["x_train"].reshape(-1, 784) / 255.0
    mean_image_mse = np.mean((x_test - x_train.mean(axis=0)) ** 2)
    assert metrics["mean_image_mse"] == pytest.approx(mean_image_mse, 1e-5)
    codes = keras.Model(model.inputs, model.get_layer("code").output).predict(
        x_test, verbose=0
    )
    assert metrics["mean_activation"] == pytest.approx(codes.mean(), 1e-5)
    np.testing.assert_allclose(
        metrics["firing_rates"], codes.mean(axis=0), rtol=1e-5
    )
    dead = int(np.sum(~np.any(codes > ACTIVE_THRESHOLD, axis=0)))
    assert metrics["dead_units"] == dead
    assert metrics["kl_penalty"] == pytest.approx(
        kl_penalty_reference(codes, 0.05, 0.02), rel=1e-4
    )
    # It trains, and the penalty holds the code near rho from the start
    # (sigmoid units start near 0.5).
    loss = metrics["history"]["loss"]
    assert loss[-1] < 0.8 * loss[0]
    assert 0.03 < metrics["mean_activation"] < 0.08
    check_validation_loss(metrics, model, x_test, batch_size=32)
    # The summary explains val_loss, in numbers.
    val_loss = metrics["history"]["val_loss"][-1]
    assert (
        f"val_loss {val_loss:.5f} is not the test MSE "
        f"{metrics['test_mse']:.5f}: Keras adds the KL penalty of each "
        "validation batch of 32 images, "
        f"{metrics['validation_loss']['activity_penalty']:.5f} on average"
    ) in printed
    assert "Total params: 314,584" in printed and "matches." in printed
    # Weight decay, the recipe's on both layers, shrinks the weights of the
    # pixels that are 0 in every training image from their initial values.
    recipe_l2 = example.RECIPES["tuned"]["l2"]
    assert metrics["weight_decay"] == {
        "code": recipe_l2,
        "reconstruction": recipe_l2,
    }
    zero = check_pixel_weights(
        metrics, printed, model, real_images()["x_train"]
    )
    kernel = keras.ops.convert_to_numpy(model.get_layer("code").kernel)
    initial = initial_code_kernel(example, "tuned", recipe_l2)
    assert np.sum(kernel[zero] ** 2) < 0.1 * np.sum(initial[zero] ** 2)
    # Off a terminal, one line an epoch: no progress bar's escape codes.
    assert not {"\r", "\b", "\x1b"} & set(printed)
    assert printed.count("val_loss: ") == EPOCHS


FRESH_PROCESS = """
import json, sys
import keras, numpy as np
import keras_sparsity
folders, x_test = json.loads(sys.stdin.read())
x = np.load(x_test)
found = {}
for name in ("mnist", "conv", "stacked"):  # stacked last: see below
    folder = folders[name]
    file = "autoencoder1.keras" if name == "stacked" else "model.keras"
    model = keras.saving.load_model(f"{folder}/{file}")
    penalty = model.get_layer("code").activity_regularizer
    found[name] = {
        "mse": float(np.mean((model.predict(x, verbose=0) - x) ** 2)),
        "ours": type(penalty) is keras_sparsity.KLSparsityRegularizer,
    }
classifier = keras.saving.load_model(f"{folder}/classifier.keras")
classes = classifier.predict(x, verbose=0).argmax(axis=1)
found["stacked"]["classes"] = classes.tolist()
print(json.dumps(found))
"""


def test_saved_models_of_every_example_load_in_a_fresh_process(
    real, tmp_path_factory, subprocess_env, tmp_path
):
    """One fresh process loads what the three examples' real runs saved,
    with nothing but `import keras_sparsity`, and reproduces their figures."""
    folders = {
        name: str(real_run(name, tmp_path_factory)[0])
        for name in ("mnist", "conv", "stacked")
    }
    x_test, y_test = real[2], real[3]
    np.save(tmp_path / "x_test.npy", x_test)
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS],
        input=json.dumps([folders, str(tmp_path / "x_test.npy")]),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out, err = fresh.stdout, fresh.stderr
    assert fresh.returncode == 0, err[-3000:]
    found = json.loads(out.strip().splitlines()[-1])
    assert all(found[name]["ours"] for name in folders)
    for name in ("mnist", "conv"):
        expected = read_metrics(folders[name])["test_mse"]
        assert found[name]["mse"] == pytest.approx(expected, rel=1e-5), name
    stacked = read_metrics(folders["stacked"])
    assert found["stacked"]["mse"] == pytest.approx(
        stacked["layers"][0]["test_mse"], rel=1e-5
    )
    accuracy = float(np.mean(np.array(found["stacked"]["classes"]) == y_test))
    assert accuracy == pytest.approx(stacked["test_accuracy"])


def test_seed_recipe_on_an_archive_replaces_an_earlier_run_whole(
    tiny, tmp_path, capsys
):
    arrays = write_npz_dataset(tmp_path / "data.npz", 32, 8, labels=False)
    arrays["x_train"][:, :, :3] = 0  # a left margin, as MNIST's border
    np.savez(tmp_path / "data.npz", **arrays)
    argv = ["--data-dir", str(tmp_path / "data.npz"), "--recipe", "seed"]
    argv += ["--epochs", "2", "--batch-size", "16", "--weight-decay", "0"]
    files = check_earlier_run_is_kept(
        tiny.main, argv, tmp_path / "run", OUTPUTS, capsys
    )
    (tmp_path / "run" / "notes.txt").write_text("not the run's")
    argv += ["--output-dir", str(tmp_path / "run"), "--overwrite"]
    assert tiny.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Why the seed recipe's reconstructions are dark" in printed
    assert "val_loss" in printed and "is not the test MSE" in printed
    # Replaced whole; the file that is not the run's is kept.
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        OUTPUTS + ["notes.txt"]
    )
    for name in OUTPUTS:
        assert (tmp_path / "run" / name).read_bytes() != files[name]
    assert (tmp_path / "run" / "notes.txt").read_text() == "not the run's"
    metrics = read_metrics(tmp_path / "run")
    assert metrics["reload_matches"] is True
    assert (metrics["recipe"], metrics["arguments"]["epochs"]) == ("seed", 2)
    assert {
        name: (p["rho"], p["beta"]) for name, p in metrics["penalties"].items()
    } == {"code": (0.01, 3.0), "reconstruction": (0.01, 3.0)}
    assert metrics["parameters"] == 784 * 4 + 4 + 4 * 784 + 784
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    x_test = arrays["x_test"].reshape(8, 784) / np.float32(255)
    check_validation_loss(metrics, model, x_test, batch_size=16)
    # --weight-decay 0 takes the code layer's decay off, the decoder keeps
    # the recipe's; the weights of the margin's 84 pixels, 0 in every
    # training image, get no gradient and keep their initial values.
    assert metrics["weight_decay"] == {"code": 0.0, "reconstruction": 0.0005}
    assert metrics["arguments"]["weight_decay"] == 0.0
    zero = check_pixel_weights(metrics, printed, model, arrays["x_train"])
    assert zero.sum() == 84
    kernel = keras.ops.convert_to_numpy(model.get_layer("code").kernel)
    initial = initial_code_kernel(tiny, "seed", 0.0)
    np.testing.assert_array_equal(kernel[zero], initial[zero])
    assert np.any(kernel[~zero] != initial[~zero], axis=1).all()  # trained


def test_tfds_loader_with_mock_data(tiny, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from data import tfds_pipelines

    out = tmp_path / "run"
    argv = ["--loader", "tfds", "--epochs", "1", "--batch-size", "16"]
    with tfds.testing.mock_data(num_examples=48):
        assert tiny.main(argv + ["--output-dir", str(out)]) == 0
        train, _, test = tfds_pipelines("mnist", 16, 0)
        train = np.concatenate([x for x, _ in train.as_numpy_iterator()])
    assert test.shape == (48, 784) and 0.0 <= test.min() <= test.max() <= 1
    metrics = read_metrics(out)
    assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    assert metrics["test_mse"] == pytest.approx(
        metrics["reloaded_test_mse"], rel=1e-6
    )
    model = keras.saving.load_model(out / "model.keras")
    mse = np.mean((model.predict(test, verbose=0) - test) ** 2)
    assert metrics["test_mse"] == pytest.approx(mse, rel=1e-5)
    assert metrics["mean_image_mse"] == pytest.approx(
        np.mean((test - test.mean(axis=0)) ** 2), rel=1e-5
    )
    # The pixels' use, from one pass over the training pipeline.
    counts = np.sum(train > 0, axis=0)
    assert metrics["zero_pixels"] == np.sum(counts == 0)
    assert metrics["rare_pixels"] == np.sum((counts > 0) & (counts < 0.48))


def test_defaults(example, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    args = example.parse_args([])
    assert (args.dataset, args.recipe, args.epochs, args.batch_size) == (
        "mnist",
        "tuned",
        None,  # from the size of the data: epochs_for
        128,
    )
    assert args.output_dir == os.path.join("runs", "mnist-tuned")
    assert args.verbose == 2  # one line an epoch, off a terminal
    assert args.weight_decay == 3e-3 / 784  # the recipe's, in Keras's units
    # --weight-decay: its own default folder, so the run beside the
    # default one needs no --output-dir.
    args = example.parse_args(["--dataset", "mnist_5k", "--weight-decay", "0"])
    assert args.weight_decay == 0.0
    assert args.output_dir == os.path.join(
        "runs", "mnist_5k-tuned-weight-decay-0"
    )
    args = example.parse_args(["--weight-decay", "1e-4", "--output-dir", "o"])
    assert (args.weight_decay, args.output_dir) == (1e-4, "o")
    args = example.parse_args(
        ["--dataset", "fashion_mnist", "--recipe", "seed", "--epochs", "3"]
    )
    assert (args.epochs, args.batch_size) == (3, 256)
    assert args.output_dir == os.path.join("runs", "fashion_mnist-seed")
    assert args.weight_decay == 0.0005


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
        (
            ["--weight-decay", "-0.5"],
            "argument --weight-decay: must be a finite number >= 0, got -0.5",
        ),
        (
            ["--weight-decay", "nan"],
            "argument --weight-decay: must be a finite number >= 0, got nan",
        ),
        (
            ["--weight-decay", "inf"],
            "argument --weight-decay: must be a finite number >= 0, got inf",
        ),
        (
            ["--weight-decay", "none"],
            "argument --weight-decay: expected a number, got 'none'",
        ),
        (
            ["--loader", "tfds", "--data-dir", "x"],
            "--loader tfds reads tfds's own files; drop --data-dir",
        ),
    ],
)
def test_bad_flags_leave_an_earlier_run_alone(
    example, tmp_path, capsys, flags, message
):
    check_bad_flag(
        example.main, flags, message, tmp_path / "run", OUTPUTS, capsys
    )


def test_a_full_disk_leaves_the_earlier_results_whole(
    tiny, tmp_path, monkeypatch, capsys
):
    files = earlier_run(tmp_path / "run", OUTPUTS)

    def disk_full(*args, **kwargs):  # when history.csv is opened
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_train_begin", disk_full)
    argv = tiny_argv(tmp_path, "--output-dir", str(tmp_path / "run"))
    code, err = run_cli(tiny.main, argv + ["--overwrite"], capsys)
    assert code == 2
    assert err == (
        f"error: {tmp_path / 'run'}: could not write the results (No space "
        "left on device); nothing there was changed\n"
    )
    assert unchanged(tmp_path / "run", files)
    assert sorted(os.listdir(tmp_path / "run")) == sorted(OUTPUTS)
    assert sorted(os.listdir(tmp_path)) == ["data", "run"]  # no leftovers


def test_a_second_run_into_a_folder_in_use_is_refused(
    example, tmp_path, capsys
):
    out = tmp_path / "run"
    with Artifacts(str(out), OUTPUTS):
        code, err = run_cli(example.main, ["--output-dir", str(out)], capsys)
    assert code == 2
    assert err == (
        f"error: {out}: another run is writing its results there (it holds "
        f"{tmp_path / '.run.lock'}); wait for it to end, or choose another "
        "--output-dir\n"
    )


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
def test_a_bad_data_file_gets_one_line_and_no_folder(
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
    assert not [name for name in os.listdir(tmp_path) if name[0] == "."]


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
    assert os.listdir(tmp_path) == []
