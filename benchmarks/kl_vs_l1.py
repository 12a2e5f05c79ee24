"""KL sparsity against L1 activity regularization and k-sparse codes.

Trains the seed architecture (784-200-784, sigmoid code and output, MSE,
Adam, same epochs, batch and seeds for all) under:

- no activity penalty;
- Keras's `L1` activity regularizer over a sweep of strengths;
- `KLSparsityRegularizer` over a sweep of `beta`, for two `rho`;
- a k-sparse code (Makhzani and Frey, 2013): only the k largest code
  activations of each example are kept, over a few k.

For every run it records reconstruction, sparsity, a linear probe and the
cost of a training step, then writes `results.json`, `report.md` and plots
to `--output-dir`.

    python benchmarks/kl_vs_l1.py --dataset fashion_mnist --quick
    python benchmarks/kl_vs_l1.py --dataset fashion_mnist --seeds 0 1

Definitions: an activation is *active* above `ACTIVE_THRESHOLD` (0.1, a
tenth of the sigmoid's range); a unit is *dead* when it is active on no test
image; the firing rate of a unit is its mean activation over the test set.
The linear probe is a ridge-regression classifier (least squares on one-hot
labels) fitted on the training codes and scored on the test codes.
`step_time_ms` is the median training step, timed in blocks that alternate
with the unregularized model on the same batch; `step_ratio` divides it by
that model's median.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import keras
import numpy as np
from keras import ops

import keras_sparsity
from keras_sparsity import KLSparsityRegularizer, sparsity_statistics
from keras_sparsity.datasets import DATASETS, DataUnavailableError, load_dataset

ACTIVE_THRESHOLD = 0.1
MATCHED_MEAN_ACTIVATION = 0.05

SWEEPS = {
    "full": {
        "l1": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        "kl": [0.003, 0.01, 0.03, 0.1],
        "kl_rho": [0.02, 0.05],
        "topk": [5, 10, 25, 50],
        "epochs": 10,
        "train": None,
        "test": None,
    },
    "quick": {
        "l1": [1e-4, 1e-3, 3e-3],
        "kl": [0.01, 0.1],
        "kl_rho": [0.02, 0.05],
        "topk": [10, 25],
        "epochs": 3,
        "train": 20000,
        "test": 5000,
    },
}


@keras.saving.register_keras_serializable(package="keras_sparsity_benchmarks")
class TopK(keras.layers.Layer):
    """Keeps the k largest activations of each example, zeroes the rest."""

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def call(self, x):
        kth = ops.top_k(x, self.k)[0][..., -1:]
        return ops.where(x >= kth, x, ops.zeros_like(x))

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def run_configs(sweep):
    """The list of (regularizer, strength, rho, k) runs of a sweep."""
    configs = [{"regularizer": "none", "strength": 0.0, "rho": None, "k": None}]
    configs += [
        {"regularizer": "l1", "strength": s, "rho": None, "k": None}
        for s in sweep["l1"]
    ]
    configs += [
        {"regularizer": "kl", "strength": b, "rho": rho, "k": None}
        for rho in sweep["kl_rho"]
        for b in sweep["kl"]
    ]
    configs += [
        {"regularizer": "topk", "strength": float(k), "rho": None, "k": k}
        for k in sweep["topk"]
    ]
    return configs


def build_model(config):
    activity = None
    if config["regularizer"] == "l1":
        activity = keras.regularizers.L1(config["strength"])
    elif config["regularizer"] == "kl":
        activity = KLSparsityRegularizer(config["rho"], config["strength"])
    inputs = keras.Input((784,))
    code = keras.layers.Dense(
        200, activation="sigmoid", activity_regularizer=activity, name="code"
    )(inputs)
    if config["regularizer"] == "topk":
        code = TopK(config["k"], name="topk")(code)
    outputs = keras.layers.Dense(784, activation="sigmoid")(code)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model, keras.Model(inputs, code)


def linear_probe_accuracy(train_x, train_y, test_x, test_y, ridge=1e-3):
    """Accuracy of a ridge-regression classifier fitted on `train_x`."""
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


def pareto_front(points):
    """Indices of the points `(x, y)` not dominated when both are minimized.

    A point is dominated when another is no worse in both coordinates and
    better in one. Returns the indices sorted by `x`.
    """
    points = [tuple(map(float, p)) for p in points]
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy <= y) and (ox < x or oy < y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def time_steps(model, reference, x, blocks=10, steps=5):
    """Median ms per step of `model` and `reference`, alternating blocks."""
    times = {"model": [], "reference": []}
    for candidate in (model, reference):
        candidate.train_on_batch(x, x)  # warm up
    for block in range(blocks):
        pair = [("model", model), ("reference", reference)]
        for name, candidate in pair if block % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            for _ in range(steps):
                candidate.train_on_batch(x, x)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(times["model"]), statistics.median(
        times["reference"]
    )


def evaluate_run(config, seed, data, epochs, batch_size, verbose):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model, encoder = build_model(config)
    model.fit(
        x_train,
        x_train,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - start
    reconstructions = model.predict(x_test, batch_size=1024, verbose=0)
    test_codes = encoder.predict(x_test, batch_size=1024, verbose=0)
    train_codes = encoder.predict(x_train, batch_size=1024, verbose=0)
    stats = sparsity_statistics(test_codes, active_threshold=ACTIVE_THRESHOLD)
    rates = np.asarray(stats["firing_rates"])
    result = {
        **config,
        "seed": seed,
        "test_mse": float(np.mean((reconstructions - x_test) ** 2)),
        "mean_activation": stats["mean_activation"],
        "active_fraction": stats["active_fraction"],
        "dead_units": stats["dead_units"],
        "firing_rate_std": stats["firing_rate_std"],
        "firing_rate_p05": float(np.percentile(rates, 5)),
        "firing_rate_p95": float(np.percentile(rates, 95)),
        "firing_rates": stats["firing_rates"],
        "probe_accuracy": (
            None
            if y_train is None
            else linear_probe_accuracy(train_codes, y_train, test_codes, y_test)
        ),
        "train_seconds": train_seconds,
    }
    return result, model


def label(result):
    name = result["regularizer"]
    if name == "l1":
        return f"L1 {result['strength']:g}"
    if name == "kl":
        return f"KL rho={result['rho']:g} beta={result['strength']:g}"
    if name == "topk":
        return f"top-k k={result['k']}"
    return "none"


def summarize(results):
    """Averages the runs of each configuration over seeds."""
    groups = {}
    for r in results:
        key = (r["regularizer"], r["strength"], r["rho"], r["k"])
        groups.setdefault(key, []).append(r)
    rows = []
    for runs in groups.values():
        row = dict(runs[0])
        row["seeds"] = len(runs)
        for key in (
            "test_mse",
            "mean_activation",
            "active_fraction",
            "dead_units",
            "firing_rate_std",
            "probe_accuracy",
            "step_time_ms",
            "step_ratio",
            "wall_seconds",
        ):
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        row["firing_rates"] = np.mean(
            [r["firing_rates"] for r in runs], axis=0
        ).tolist()
        rows.append(row)
    return rows


def matched_runs(rows, target=MATCHED_MEAN_ACTIVATION):
    """For each sparse regularizer, the row whose mean activation is nearest
    `target`."""
    chosen = {}
    for row in rows:
        if row["regularizer"] == "none":
            continue
        best = chosen.get(row["regularizer"])
        if best is None or abs(row["mean_activation"] - target) < abs(
            best["mean_activation"] - target
        ):
            chosen[row["regularizer"]] = row
    return chosen


def _fmt(value, digits=4):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# Report columns: (header, key, digits).
MATCHED_COLUMNS = [
    ("test MSE", "test_mse", 5),
    ("mean act.", "mean_activation", 4),
    ("active frac.", "active_fraction", 4),
    ("dead", "dead_units", 1),
    ("rate std", "firing_rate_std", 4),
    ("probe acc.", "probe_accuracy", 4),
    ("step ratio", "step_ratio", 3),
]
ALL_COLUMNS = MATCHED_COLUMNS[:-1] + [
    ("step ms", "step_time_ms", 2),
    ("step ratio", "step_ratio", 3),
    ("wall s", "wall_seconds", 1),
]


def _table(rows, columns):
    """Markdown table lines: a run label, then one cell per column."""
    lines = [
        "| run | " + " | ".join(h for h, _, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in rows:
        cells = [_fmt(row[key], digits) for _, key, digits in columns]
        lines.append(f"| {label(row)} | " + " | ".join(cells) + " |")
    return lines


def write_report(results, meta, path, plots=()):
    """Writes the markdown report of a list of runs."""
    rows = summarize(results)
    matched = matched_runs(rows)
    baseline = next(r for r in rows if r["regularizer"] == "none")
    lines = [
        "# KL sparsity vs L1 activity regularization vs k-sparse codes",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Data: {meta['dataset']} ({meta['train_size']} training and "
        f"{meta['test_size']} test images); {meta['epochs']} epochs, batch "
        f"{meta['batch_size']}, Adam(1e-3), MSE; seeds {meta['seeds']}.",
        f"Versions: {json.dumps(meta['versions'])}. "
        f"Machine: {meta['machine']}.",
        f"Active means an activation above {ACTIVE_THRESHOLD}; a dead unit is "
        "active on no test image. Probe: ridge-regression classifier on the "
        "codes.",
        "",
        "## All runs (mean over seeds)",
        "",
        *_table(rows, ALL_COLUMNS),
    ]
    if meta.get("raw_probe_accuracy") is not None:
        lines += [
            "",
            "Baseline: a linear probe on the raw pixels scores "
            f"{meta['raw_probe_accuracy']:.4f}.",
        ]
    lines += [
        "",
        f"## At matched sparsity (mean activation nearest "
        f"{MATCHED_MEAN_ACTIVATION})",
        "",
        *_table(
            [matched[n] for n in ("kl", "l1", "topk") if n in matched],
            MATCHED_COLUMNS,
        ),
    ]
    lines += ["", "## Verdict", "", *verdict(matched, baseline)]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [
            f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def verdict(matched, baseline):
    """Plain-words comparison of the matched-sparsity runs."""
    out = [
        f"- Without a penalty the code's mean activation is "
        f"{baseline['mean_activation']:.3f} (test MSE "
        f"{baseline['test_mse']:.5f})."
    ]
    kl, l1 = matched.get("kl"), matched.get("l1")
    if kl and l1:
        better = "KL" if kl["test_mse"] < l1["test_mse"] else "L1"
        out.append(
            f"- At matched sparsity, KL ({label(kl)}, mean activation "
            f"{kl['mean_activation']:.3f}) reconstructs with test MSE "
            f"{kl['test_mse']:.5f} and L1 ({label(l1)}, mean activation "
            f"{l1['mean_activation']:.3f}) with {l1['test_mse']:.5f}: "
            f"{better} reconstructs better."
        )
        narrower = (
            "KL" if kl["firing_rate_std"] < l1["firing_rate_std"] else "L1"
        )
        out.append(
            f"- Spread of per-unit firing rates (std): KL "
            f"{kl['firing_rate_std']:.4f}, L1 {l1['firing_rate_std']:.4f}; "
            f"{narrower} spreads the activity more evenly over the units. "
            f"Dead units: KL {kl['dead_units']:.0f}, "
            f"L1 {l1['dead_units']:.0f}."
        )
        if kl["probe_accuracy"] is not None:
            out.append(
                f"- Linear probe accuracy: KL {kl['probe_accuracy']:.4f}, "
                f"L1 {l1['probe_accuracy']:.4f}."
            )
        out.append(
            f"- Cost of a training step relative to no penalty: KL "
            f"{kl['step_ratio']:.3f}, L1 {l1['step_ratio']:.3f}."
        )
    topk = matched.get("topk")
    if topk:
        out.append(
            f"- k-sparse ({label(topk)}): test MSE {topk['test_mse']:.5f}, "
            f"mean activation {topk['mean_activation']:.3f}, probe "
            f"{_fmt(topk['probe_accuracy'])}, step ratio "
            f"{topk['step_ratio']:.3f}."
        )
    return out


def write_plots(results, output_dir):
    """Pareto fronts and matched-sparsity firing-rate histograms."""
    from matplotlib.figure import Figure

    rows = summarize(results)
    colors = {
        "none": "black",
        "l1": "tab:blue",
        "kl": "tab:red",
        "topk": "tab:green",
    }
    paths = []
    for x_key, name in (
        ("mean_activation", "pareto_mse_vs_mean_activation.png"),
        ("active_fraction", "pareto_mse_vs_active_fraction.png"),
    ):
        figure = Figure(figsize=(7, 5))
        axes = figure.add_subplot()
        for reg, color in colors.items():
            group = [r for r in rows if r["regularizer"] == reg]
            if not group:
                continue
            points = [(r[x_key], r["test_mse"]) for r in group]
            axes.scatter(*zip(*points), color=color, alpha=0.4)
            front = [points[i] for i in pareto_front(points)]
            axes.plot(*zip(*front), "o-", color=color, label=reg)
        axes.set_xlabel(x_key.replace("_", " ") + " of the code")
        axes.set_ylabel("test MSE")
        axes.set_xscale("log")
        axes.legend()
        axes.set_title("Pareto fronts (lower left is better)")
        path = os.path.join(output_dir, name)
        figure.savefig(path, dpi=100)
        paths.append(path)
    matched = matched_runs(rows)
    figure = Figure(figsize=(4 * len(matched), 3.5))
    for i, (reg, row) in enumerate(sorted(matched.items())):
        axes = figure.add_subplot(1, len(matched), i + 1)
        axes.hist(row["firing_rates"], bins=30, color=colors[reg])
        axes.set_title(f"{label(row)}\nmean act. {row['mean_activation']:.3f}")
        axes.set_xlabel("per-unit firing rate")
        if i == 0:
            axes.set_ylabel("units")
    figure.tight_layout()
    path = os.path.join(output_dir, "firing_rates_matched.png")
    figure.savefig(path, dpi=100)
    paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--from-results",
        help="rewrite report.md and the plots from a saved results.json",
    )
    args = parser.parse_args(argv)
    if args.from_results:
        with open(args.from_results) as f:
            saved = json.load(f)
        output_dir = args.output_dir or os.path.dirname(args.from_results)
        plots = write_plots(saved["runs"], output_dir)
        write_report(
            saved["runs"],
            saved["meta"],
            os.path.join(output_dir, "report.md"),
            plots,
        )
        print(f"Rewrote report.md and the plots in {output_dir}")
        return 0
    sweep = SWEEPS["quick" if args.quick else "full"]
    epochs = args.epochs or sweep["epochs"]
    output_dir = args.output_dir or os.path.join(
        "runs", f"kl_vs_l1-{args.dataset}" + ("-quick" if args.quick else "")
    )
    os.makedirs(output_dir, exist_ok=True)
    try:
        (x_train, y_train), (x_test, y_test) = load_dataset(
            args.dataset, args.data_dir
        )
    except DataUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if sweep["train"]:
        x_train, x_test = x_train[: sweep["train"]], x_test[: sweep["test"]]
        y_train = None if y_train is None else y_train[: sweep["train"]]
        y_test = None if y_test is None else y_test[: sweep["test"]]
    data = (x_train, y_train), (x_test, y_test)

    configs = run_configs(sweep)
    total = len(configs) * len(args.seeds)
    timing_batch = x_train[: args.batch_size]
    results = []
    start = time.perf_counter()
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        reference, _ = build_model(configs[0])
        for config in configs:
            index = len(results) + 1
            print(
                f"[{index}/{total}] {label(config)}, seed {seed} "
                f"(elapsed {time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            run_start = time.perf_counter()
            result, model = evaluate_run(
                config, seed, data, epochs, args.batch_size, verbose=0
            )
            step_ms, reference_ms = time_steps(model, reference, timing_batch)
            result["step_time_ms"] = step_ms
            result["step_ratio"] = step_ms / reference_ms
            result["wall_seconds"] = time.perf_counter() - run_start
            print(
                f"    test MSE {result['test_mse']:.5f}, mean activation "
                f"{result['mean_activation']:.4f}, probe "
                f"{_fmt(result['probe_accuracy'])}, step ratio "
                f"{result['step_ratio']:.3f}",
                flush=True,
            )
            results.append(result)
    meta = {
        "command": "python benchmarks/kl_vs_l1.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "dataset": args.dataset,
        "train_size": len(x_train),
        "test_size": len(x_test),
        "epochs": epochs,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "raw_probe_accuracy": (
            None
            if y_train is None
            else linear_probe_accuracy(x_train, y_train, x_test, y_test)
        ),
        "versions": {
            "keras_sparsity": keras_sparsity.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "total_seconds": time.perf_counter() - start,
    }
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": results}, f, indent=1)
    plots = write_plots(results, output_dir)
    write_report(results, meta, os.path.join(output_dir, "report.md"), plots)
    print(
        f"Wrote results.json, report.md and {len(plots)} plots to "
        f"{output_dir} in {meta['total_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
