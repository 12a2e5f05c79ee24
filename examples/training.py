"""The training loop the autoencoder examples share: fit, encode, save.

- `fit(model, x, y, args)`: `model.fit` for `--epochs`, `--batch-size`
  and `--verbose`, with `SparsityMonitor` on the layer named `"code"` and
  a `CSVLogger` when asked; returns the history and the seconds it took.
- `encode(model, x)`: the output of the layer named `"code"`.
- `evaluate(model, x_test, mean_image)`: codes, reconstructions, test MSE,
  the mean image's MSE and the code's sparsity statistics.
- `validation_loss(model, x, batch_size)`: Keras's `val_loss` taken
  apart, and `val_loss_note` to print it: besides the test MSE it holds
  every activity penalty, computed batch by batch, and the weight decay.
- `save_and_reload(model, path, x)`: saves the model, loads it back and
  says whether it reproduces its predictions.
- `versions()`: what the figures depend on.

Imported by the scripts after they have parsed their arguments: it imports
Keras.
"""

import platform
import time

import keras
import numpy as np

import keras_sparsity
from keras_sparsity import SparsityMonitor, sparsity_statistics

PREDICT_BATCH = 1024
MONITORED_IMAGES = 2000


def fit(model, x, y, args, *, history_csv=None, monitor_data=None, **kw):
    """`model.fit` as the command line says, with the examples' callbacks.

    Args:
        model: A compiled autoencoder (or classifier).
        x, y: The training data (`y=None` for a `tf.data` pipeline).
        args: The parsed command line: `--epochs`, `--batch-size` and
            `--verbose`. The data are shuffled every epoch.
        history_csv: Where `CSVLogger` writes the epoch logs, if anywhere.
        monitor_data: Images on which `SparsityMonitor` logs the sparsity
            of the layer named `"code"` after each epoch (the first 2,000).
        **kw: More arguments of `model.fit` (`validation_data`), or other
            values for those above (`epochs`, `shuffle`).

    Returns:
        `(history, seconds)`: the epoch logs as lists of floats, and the
        seconds training took.
    """
    callbacks = []
    if monitor_data is not None:
        data = monitor_data[:MONITORED_IMAGES]
        callbacks.append(SparsityMonitor("code", data=data))
    if history_csv is not None:
        callbacks.append(keras.callbacks.CSVLogger(history_csv))
    settings = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "verbose": args.verbose,
        "shuffle": True,
        **kw,
    }
    start = time.perf_counter()
    history = model.fit(x, y, callbacks=callbacks, **settings)
    seconds = time.perf_counter() - start
    logs = {
        key: [float(v) for v in values]
        for key, values in history.history.items()
    }
    return logs, seconds


def encode(model, x):
    """The output of `model`'s layer named `"code"` on `x`."""
    code = model.get_layer("code").output
    encoder = keras.Model(model.inputs, code)
    return encoder.predict(x, batch_size=PREDICT_BATCH, verbose=0)


def mse(a, b):
    """The mean squared difference, in float64."""
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


def evaluate(model, x_test, mean_image):
    """An autoencoder on the test images: a dict of its `codes`,
    `reconstructions`, `test_mse`, `mean_image_mse` (the MSE of answering
    every image with `mean_image`) and the `sparsity_statistics` of the
    code (`stats`)."""
    codes = encode(model, x_test)
    reconstructions = model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)
    penalty = model.get_layer("code").activity_regularizer
    return {
        "codes": codes,
        "reconstructions": reconstructions,
        "test_mse": mse(reconstructions, x_test),
        "mean_image_mse": mse(mean_image, x_test),
        "stats": sparsity_statistics(codes, regularizer=penalty),
    }


def validation_loss(model, x, batch_size):
    """Keras's `val_loss` of an autoencoder validated on `x`, taken apart.

    Keras validates batch by batch, and each batch's loss is its MSE plus
    the model's losses: every activity penalty, a statistic of that batch
    (the KL of each batch's mean activations), and the weight decay. The
    `val_loss` is their mean over the batches, weighted by batch size.

    Returns:
        A dict: `test_mse`, `activity_penalty` (the batches' mean),
        `activity_penalty_whole` (the same penalties on all of `x` at
        once), `weight_decay`, `batch_size`, and `val_loss`, their sum.
    """
    penalized = [layer for layer in model.layers if layer.activity_regularizer]
    probe = keras.Model(
        model.inputs, [model.output] + [layer.output for layer in penalized]
    )
    outputs = probe.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    reconstructions, activations = outputs[0], outputs[1:]
    batched = whole = 0.0
    for layer, values in zip(penalized, activations):
        penalty = layer.activity_regularizer.penalty
        whole += float(penalty(values))
        for start in range(0, len(x), batch_size):
            batch = values[start : start + batch_size]
            batched += len(batch) * float(penalty(batch)) / len(x)
    decay = sum(
        float(
            keras.ops.convert_to_numpy(layer.kernel_regularizer(layer.kernel))
        )
        for layer in model.layers
        if getattr(layer, "kernel_regularizer", None)
    )
    test_mse = mse(reconstructions, x)
    return {
        "val_loss": test_mse + batched + decay,
        "test_mse": test_mse,
        "activity_penalty": batched,
        "activity_penalty_whole": whole,
        "weight_decay": decay,
        "batch_size": batch_size,
    }


def val_loss_note(parts, val_loss, images):
    """A line that says why Keras's last `val_loss` is not the test MSE;
    empty when they agree (to 0.1%)."""
    if abs(val_loss - parts["test_mse"]) <= 1e-3 * parts["test_mse"]:
        return ""
    return (
        f"val_loss {val_loss:.5f} is not the test MSE "
        f"{parts['test_mse']:.5f}: Keras adds the KL penalty of each "
        f"validation batch of {parts['batch_size']} images, "
        f"{parts['activity_penalty']:.5f} on average (a batch statistic: "
        f"{parts['activity_penalty_whole']:.5f} on all {images:,} test "
        f"images at once), and the weight decay, "
        f"{parts['weight_decay']:.5f}."
    )


def save_and_reload(model, path, x):
    """Saves `model` to `path` and loads it back.

    Returns:
        `(matches, predictions)`: whether the loaded model reproduces
        `model`'s predictions on `x`, and its predictions.
    """
    model.save(path)
    reloaded = keras.saving.load_model(path)
    expected = model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    got = reloaded.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    matches = bool(np.allclose(got, expected, rtol=1e-6, atol=1e-7))
    return matches, got


def versions():
    """The versions the figures depend on."""
    return {
        "keras_sparsity": keras_sparsity.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
