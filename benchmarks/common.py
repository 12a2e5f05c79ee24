"""What the benchmarks share, imported first and without Keras.

It puts `examples/` on `sys.path`: the benchmarks parse their command lines
with `examples/runs.py` and load images with `examples/data.py`, as the
examples do, before Keras starts. Here: the runs' penalties (`config`) and
the KL-vs-L1 sweep (`SWEEPS`, `BUDGET`), interleaved timing (`interleave`,
`paired_ratio`, `timing_lines`) and what the sweep and the convergence
check share (`add_counts`, `load_images`, `run_meta`).
"""

import os
import platform
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "examples") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "examples"))

from data import describe, load_dataset  # noqa: E402
from runs import positive_int  # noqa: E402

PENALTIES = ("none", "l1", "kl", "peer", "sparse_dense", "topk")
TARGET = 0.05  # the mean code activation the fairness rule matches
BUDGET = TARGET * 1.1  # a method takes part with a mean activation up to this
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
KL_NAMES = {"kl": "KL", "peer": "peer KL", "sparse_dense": "SparseDense"}


def config(regularizer="none", strength=0.0, rho=None, k=None):
    """A run's penalty: one of `PENALTIES` (`peer`: `autoencoder.PeerKL`);
    `strength`, L1's factor or the KL penalties' `beta`; their `rho`; the
    `k` units a top-k code keeps."""
    if regularizer not in PENALTIES:
        raise ValueError(
            f"Unknown regularizer {regularizer!r}; expected one of {PENALTIES}"
        )
    return {
        "regularizer": regularizer,
        "strength": float(strength),
        "rho": rho,
        "k": k,
    }


def describe_config(run):
    """A short label of a run's penalty: `L1 0.001`, `KL rho=0.05 beta=0.01`."""
    name = run["regularizer"]
    if name == "l1":
        return f"L1 {run['strength']:g}"
    if name in KL_NAMES:
        return f"{KL_NAMES[name]} rho={run['rho']:g} beta={run['strength']:g}"
    return f"top-k k={run['k']}" if name == "topk" else "none"


def run_configs(sweep):
    """The runs of a sweep: `config()` dicts, the unpenalized model first."""
    return (
        [config("none")]
        + [config("l1", s) for s in sweep["l1"]]
        + [
            config("kl", b, rho=r)
            for r in sweep["kl_rho"]
            for b in sweep["kl_beta"]
        ]
        + [config("topk", k, k=k) for k in sweep["topk"]]
    )


def interleave(candidates, rounds, calls=1, warmup=1, clock=time.perf_counter):
    """Seconds per call of each candidate (a dict of name to a callable),
    one entry per round. In round `r` they run in their order shifted by
    `r`, so none always runs first or last, each `calls` times in a row,
    after `warmup` untimed calls. `clock`: a fake one in tests."""
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            for _ in range(calls):
                candidates[name]()
            times[name].append((clock() - start) / calls)
    return times


def median_iqr(values):
    """`(median, first quartile, third quartile)` of a list of numbers."""
    q1, median, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return float(median), float(q1), float(q3)


def paired_ratio(times, numerator, denominator):
    """The `median`, `q1` and `q3` of two candidates' round-by-round time
    ratios, and `of_medians`, the ratio of their medians."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator])]
    median, q1, q3 = median_iqr(ratios)
    medians = [median_iqr(times[name])[0] for name in (numerator, denominator)]
    of_medians = medians[0] / medians[1]
    return {"median": median, "q1": q1, "q3": q3, "of_medians": of_medians}


def timing_lines(times, pairs, scale=1e3, unit="ms"):
    """Printable lines: each candidate's median and IQR (seconds times
    `scale`, in `unit`), then the paired ratios of the `(numerator,
    denominator)` names in `pairs`."""
    width = max(len(name) for name in times) + 2
    lines = [f"{'':<{width}}{'median ' + unit:>14}{'IQR ' + unit:>12}"]
    for name, values in times.items():
        median, q1, q3 = (value * scale for value in median_iqr(values))
        lines.append(f"{name:<{width}}{median:>14.3f}{q3 - q1:>12.3f}")
    for numerator, denominator in pairs:
        ratio = paired_ratio(times, numerator, denominator)
        lines.append(
            f"ratio {numerator} / {denominator}: median {ratio['median']:.3f} "
            f"(IQR {ratio['q1']:.3f} to {ratio['q3']:.3f}; ratio of medians "
            f"{ratio['of_medians']:.3f})"
        )
    return lines


def add_counts(arguments, counts):
    """Adds options that take an integer >= 1: `{flag: (default, help)}`."""
    for flag, (default, text) in counts.items():
        if default is not None:
            text = f"{text} (default: {default})"
        arguments.add_argument(
            flag, type=positive_int, default=default, help=text
        )


def load_images(args):
    """The images and labels (or `None`) of `--dataset` or `--data-dir`, cut
    to `--train-images` and `--test-images` where given, described."""
    (x_train, y_train), (x_test, y_test) = load_dataset(
        args.dataset, args.data_dir
    )
    train = slice(getattr(args, "train_images", None))
    test = slice(getattr(args, "test_images", None))
    labelled = y_train is not None and y_test is not None
    description = describe(args.dataset)
    if args.data_dir:
        description = f"{args.data_dir} (as --dataset {args.dataset})"
    return {
        "x_train": x_train[train],
        "x_test": x_test[test],
        "y_train": y_train[train] if labelled else None,
        "y_test": y_test[test] if labelled else None,
        "description": description,
    }


def run_meta(script, argv, args, data, seconds):
    """What every results file says about how it was made (imports Keras)."""
    argv = sys.argv[1:] if argv is None else argv
    return {
        "command": shlex.join([".venv/bin/python", script, *argv]),
        "dataset": args.dataset,
        "data": data["description"],
        "data_dir": args.data_dir,
        "train_size": len(data["x_train"]),
        "test_size": len(data["x_test"]),
        "batch_size": args.batch_size,
        "versions": versions(),
        "total_seconds": seconds,
    }


def versions():
    """The versions a benchmark's figures depend on, as the examples record
    them, and the machine (imports Keras)."""
    import training

    return {
        **training.versions(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
