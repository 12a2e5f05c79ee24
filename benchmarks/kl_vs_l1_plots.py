"""The KL-vs-L1 report's plots, drawn from its summarized rows.

Used by benchmarks/kl_vs_l1_report.py: reconstruction and probe accuracy
against the code's mean activation (with each configuration's range over
the seeds), per-unit firing-rate histograms of the matched runs, and the
convergence curves of benchmarks/convergence.py.
"""

from common import describe_config
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FormatStrFormatter,
    LogLocator,
    MaxNLocator,
    NullLocator,
)

COLORS = {
    "none": "black",
    "l1": "tab:blue",
    "kl": "tab:red",
    "topk": "tab:green",
}
LABELS = {"none": "no penalty", "l1": "L1", "kl": "KL", "topk": "top-k"}
YLABELS = {"test_mse": "test MSE", "probe_accuracy": "probe accuracy"}
MARKERS = {0.02: "s", 0.05: "o"}


def pareto_front(points):
    """Indices of the points `(x, y)` not dominated when both are minimized.

    A point is dominated when another is no worse in both coordinates and
    better in one. Returns the indices sorted by `x`.
    """
    points = [tuple(map(float, p)) for p in points]
    front = [
        i
        for i, (x, y) in enumerate(points)
        if not any(
            ox <= x and oy <= y and (ox < x or oy < y) for ox, oy in points
        )
    ]
    return sorted(front, key=lambda i: points[i])


def _log_ticks(axes, values):
    candidates = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    low, high = min(values) / 1.5, max(values) * 1.5
    ticks = [t for t in candidates if low <= t <= high] or [min(values)]
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([f"{t:g}" for t in ticks])


def _bars(value):
    """Error bars from a spread's mean to its min and max (never negative:
    the mean of equal floats can round past them)."""
    return [
        [max(value.mean - value.low, 0.0)],
        [max(value.high - value.mean, 0.0)],
    ]


def _point(axes, row, metric, labelled):
    """One configuration: its means, and its seed ranges as error bars."""
    x, y = row["mean_activation"], row[metric]
    name = row["regularizer"]
    label = LABELS[name]
    if name == "kl":
        label = f"KL rho={row['rho']:g}"
    axes.errorbar(
        [x.mean],
        [y.mean],
        xerr=_bars(x),
        yerr=_bars(y),
        fmt=MARKERS.get(row["rho"], "o"),
        color=COLORS[name],
        alpha=0.7,
        capsize=2,
        label=None if label in labelled else label,
    )
    labelled.add(label)


def against_activation(dataset, metric, title, budget):
    """A metric against mean activation, one colour per method.

    Test MSE (lower is better) joins each method's Pareto front; other
    metrics join each method's runs in order of activation. The matched
    runs are circled and the sparsity budget is a dashed line.
    """
    figure = Figure(figsize=(7.5, 5), layout="constrained")
    axes = figure.add_subplot()
    activations, labelled = [budget], set()
    for method in COLORS:
        rows = [
            r
            for r in dataset["rows"]
            if r["regularizer"] == method and r[metric] is not None
        ]
        for row in rows:
            _point(axes, row, metric, labelled)
            activations.append(row["mean_activation"].mean)
        points = [(r["mean_activation"].mean, r[metric].mean) for r in rows]
        order = (
            pareto_front(points)
            if metric == "test_mse"
            else sorted(range(len(points)), key=lambda i: points[i])
        )
        axes.plot(
            [points[i][0] for i in order],
            [points[i][1] for i in order],
            "-",
            color=COLORS[method],
        )
    for row in dataset["matched"].values():
        if row is not None and row[metric] is not None:
            axes.plot(
                row["mean_activation"].mean,
                row[metric].mean,
                "o",
                ms=14,
                mfc="none",
                mec="gray",
            )
    if metric == "probe_accuracy" and dataset["meta"].get("raw_probe_accuracy"):
        axes.axhline(
            dataset["meta"]["raw_probe_accuracy"],
            color="gray",
            ls=":",
            label="raw pixels",
        )
    axes.axvline(budget, color="gray", ls="--", label=f"budget {budget:.3f}")
    axes.set_xscale("log")
    _log_ticks(axes, activations)
    axes.set_xlabel("mean activation of the code (log scale)")
    axes.set_ylabel(YLABELS[metric])
    joined = "Pareto fronts" if metric == "test_mse" else "runs"
    axes.set_title(
        f"{title}\nmeans over seeds, bars: min–max\nlines: each method's "
        f"{joined}; circled: the fairness rule's picks",
        fontsize="medium",
    )
    axes.legend(fontsize="small")
    return figure


def convergence_figure(item, title):
    """Test MSE against epochs, one panel per kind of penalty."""
    curves = item["runs"]
    kinds = [k for k in COLORS if any(c["regularizer"] == k for c in curves)]
    figure = Figure(figsize=(4 * len(kinds), 4), layout="constrained")
    for axes, kind in zip(
        figure.subplots(1, len(kinds), squeeze=False)[0], kinds
    ):
        for curve in (c for c in curves if c["regularizer"] == kind):
            line = axes.plot(
                curve["epochs"], curve["test_mse"], label=describe_config(curve)
            )[0]
            if curve["converged_epoch"]:
                at = curve["epochs"].index(curve["converged_epoch"])
                axes.plot(
                    curve["converged_epoch"],
                    curve["test_mse"][at],
                    "o",
                    color=line.get_color(),
                )
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes.yaxis.set_minor_locator(NullLocator())
        axes.set_title(LABELS[kind])
        axes.set_xlabel("epoch")
        axes.legend(fontsize="x-small")
    figure.axes[0].set_ylabel("test MSE (log scale)")
    figure.suptitle(f"{title}; dots: where each run converged")
    return figure


def firing_rates_figure(dataset, title):
    """Histograms of per-unit firing rates of the matched runs."""
    rows = [r for r in dataset["matched"].values() if r is not None]
    figure = Figure(figsize=(4 * max(len(rows), 1), 3.8), layout="constrained")
    axes_list = figure.subplots(1, max(len(rows), 1), squeeze=False)[0]
    for axes, row in zip(axes_list, rows):
        axes.hist(
            row["firing_rates"], bins=30, color=COLORS[row["regularizer"]]
        )
        axes.set_title(
            f"{row['label']}\nmean act. {row['mean_activation'].mean:.3f}",
            fontsize="medium",
        )
        axes.set_xlabel("per-unit firing rate")
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4))
    seeds = len(dataset["meta"]["seeds"])
    axes_list[0].set_ylabel(
        f"units (pooled over {seeds} seed{'s' if seeds > 1 else ''})"
    )
    figure.suptitle(title)
    return figure
