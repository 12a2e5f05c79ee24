"""The KL-vs-L1 report's plots, drawn from its summarized rows.

Used by benchmarks/kl_vs_l1_report.py: reconstruction and probe accuracy
against the code's mean activation (with each configuration's range over
the seeds), per-unit firing-rate histograms of the matched runs, and the
convergence curves of benchmarks/convergence.py.
"""

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

from common import describe_config

COLORS = {"none": "black", "l1": "tab:blue", "kl": "tab:red"}
COLORS["topk"] = "tab:green"
LABELS = {"none": "no penalty", "l1": "L1", "kl": "KL", "topk": "top-k"}
YLABELS = {"test_mse": "test MSE", "probe_accuracy": "probe accuracy"}
MARKERS = {0.02: "s", 0.05: "o"}
TICKS = [round(m * 10.0**e, 6) for e in range(-5, 1) for m in (1, 2, 5)]


def pareto_front(points):
    """Indices of the points `(x, y)` not dominated when both are minimized.

    A point is dominated when another is no worse in both coordinates and
    better in one. Returns the indices sorted by `x`.
    """
    points = [tuple(map(float, p)) for p in points]
    front = [
        i
        for i, (x, y) in enumerate(points)
        if not any(a <= x and b <= y and (a, b) != (x, y) for a, b in points)
    ]
    return sorted(front, key=lambda i: points[i])


def _fixed_ticks(axis, values):
    """Log-scale ticks at 1, 2 and 5 within the data's range, plainly."""
    low, high = min(values) / 1.5, max(values) * 1.5
    ticks = [t for t in TICKS if low <= t <= high] or [min(values)]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_locator(NullLocator())


def _bars(value):
    """Error bars from a spread's mean to its min and max (never negative:
    the mean of equal floats can round past them)."""
    return [
        [max(value.mean - value.low, 0.0)],
        [max(value.high - value.mean, 0)],
    ]


def against_activation(dataset, metric, title, budget):
    """A metric against mean activation, one colour per method.

    Test MSE (lower is better) joins each method's Pareto front; other
    metrics join each method's runs in order of activation. The matched
    runs are circled and the sparsity budget is a dashed line.
    """
    figure = Figure(figsize=(7.5, 5), layout="constrained")
    axes = figure.add_subplot()
    activations, labelled = [budget], set()
    for method, color in COLORS.items():
        rows = [
            r
            for r in dataset["rows"]
            if r["regularizer"] == method and r[metric] is not None
        ]
        for row in rows:
            x, y = row["mean_activation"], row[metric]
            label = LABELS[method]
            if method == "kl":
                label = f"KL rho={row['rho']:g}"
            axes.errorbar(
                [x.mean],
                [y.mean],
                xerr=_bars(x),
                yerr=_bars(y),
                fmt=MARKERS.get(row["rho"], "o"),
                color=color,
                alpha=0.7,
                capsize=2,
                label=None if label in labelled else label,
            )
            labelled.add(label)
            activations.append(x.mean)
        points = [(r["mean_activation"].mean, r[metric].mean) for r in rows]
        order = sorted(range(len(points)), key=lambda i: points[i])
        if metric == "test_mse":
            order = pareto_front(points)
        if order:
            axes.plot(*zip(*[points[i] for i in order]), color=color)
    for row in dataset["matched"].values():
        if row is not None and row[metric] is not None:
            point = row["mean_activation"].mean, row[metric].mean
            axes.plot(*point, "o", ms=14, mfc="none", mec="gray")
    raw = dataset["meta"].get("raw_probe_accuracy")
    if metric == "probe_accuracy" and raw:
        axes.axhline(raw, color="gray", ls=":", label="raw pixels")
    axes.axvline(budget, color="gray", ls="--", label=f"budget {budget:.3f}")
    axes.set_xscale("log")
    _fixed_ticks(axes.xaxis, activations)
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
    panels = figure.subplots(1, len(kinds), squeeze=False)[0]
    for axes, kind in zip(panels, kinds):
        mse = []
        for curve in (c for c in curves if c["regularizer"] == kind):
            epochs, values = curve["epochs"], curve["test_mse"]
            (line,) = axes.plot(epochs, values, label=describe_config(curve))
            if curve["converged_epoch"]:
                at = epochs.index(curve["converged_epoch"])
                axes.plot(epochs[at], values[at], "o", color=line.get_color())
            mse += values
        axes.set_yscale("log")
        _fixed_ticks(axes.yaxis, mse)
        axes.set_title(LABELS[kind])
        axes.set_xlabel("epoch")
        axes.legend(fontsize="x-small")
    panels[0].set_ylabel("test MSE (log scale)")
    figure.suptitle(f"{title}; dots: where each run converged")
    return figure


def firing_rates_figure(dataset, title):
    """Histograms of per-unit firing rates of the matched runs."""
    rows = [r for r in dataset["matched"].values() if r is not None]
    count = max(len(rows), 1)
    figure = Figure(figsize=(4 * count, 3.8), layout="constrained")
    panels = figure.subplots(1, count, squeeze=False)[0]
    for axes, row in zip(panels, rows):
        color = COLORS[row["regularizer"]]
        axes.hist(row["firing_rates"], bins=30, color=color)
        axes.set_title(
            f"{row['label']}\nmean act. {row['mean_activation'].mean:.3f}",
            fontsize="medium",
        )
        axes.set_xlabel("per-unit firing rate")
        axes.locator_params(axis="x", nbins=4)
    seeds = len(dataset["meta"]["seeds"])
    panels[0].set_ylabel(f"units (pooled over {seeds} seed(s))")
    figure.suptitle(title)
    return figure
