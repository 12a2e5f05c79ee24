"""The KL-vs-L1 report: the sweep's tables, with seed spreads, and plots.

Reads one or more results.json files written by benchmarks/kl_vs_l1.py
(files of the same data and settings are merged, so seeds can be run
separately) and, with --convergence, convergence.json files written by
benchmarks/convergence.py. Writes report.md (tables only: it draws no
conclusion) and three plots per data set, and one per convergence check,
to --output-dir. docs/benchmarks.md interprets the published tables.

Fairness rule at matched sparsity, the same on every data set: for each
method (KL, L1, top-k), the configuration with the lowest test MSE (mean
over seeds) among those whose mean code activation (mean over seeds) is at
most 0.05 * 1.1 = 0.055. Cells show the mean over seeds and, in brackets,
the range (min–max) over the seeds.
"""

import collections
import json
import math
import os
import shlex
import sys

from common import BUDGET, TARGET, describe_config
from runs import Artifacts, RunError, add_output_arguments, parser, run

EXAMPLE = (
    ".venv/bin/python benchmarks/kl_vs_l1_report.py "
    "runs/kl_vs_l1-mnist_5k-quick/results.json"
)


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    arguments.add_argument(
        "results",
        nargs="+",
        help="results.json files written by benchmarks/kl_vs_l1.py",
    )
    arguments.add_argument(
        "--convergence",
        nargs="+",
        default=[],
        help="convergence.json files written by benchmarks/convergence.py",
    )
    add_output_arguments(arguments, "the first results file's folder")
    return arguments


if __name__ == "__main__":
    arguments().parse_args(sys.argv[1:])  # --help answers before matplotlib

import kl_vs_l1_plots as plots  # noqa: E402
import numpy as np  # noqa: E402

METHODS = {"kl": "KL", "l1": "L1", "topk": "top-k"}
NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}
METRICS = {  # name: (column, digits)
    "test_mse": ("test MSE", 5),
    "mean_activation": ("mean act.", 4),
    "active_fraction": ("active frac.", 4),
    "dead_units": ("dead units", 1),
    "firing_rate_std": ("rate std", 4),
    "probe_accuracy": ("probe acc.", 4),
    "step_ratio": ("step ratio", 3),
}
# What the files must hold, `key:kind` ("?": or null).
PENALTY = "regularizer:penalty strength:number rho:number? k:int?"
RUN_FIELDS = f"""{PENALTY} seed:int test_mse:number mean_activation:number
    active_fraction:number dead_units:number firing_rate_std:number
    probe_accuracy:number? step_ratio:number firing_rates:numbers"""
META_FIELDS = """dataset:name data:str quick:bool epochs:int batch_size:int
    seeds:ints train_size:int test_size:int raw_probe_accuracy:number?
    command:str total_seconds:number versions:dict"""
CURVE_FIELDS = f"""{PENALTY} epochs:ints test_mse:numbers
    mean_activation:numbers converged_epoch:int?"""
CHECK_FIELDS = """dataset:name data:str seed:int batch_size:int epochs:int
    every:int window:int tolerance:number activation_tolerance:number
    command:str total_seconds:number"""
SETTINGS = ("quick", "epochs", "batch_size", "train_size", "test_size")

Spread = collections.namedtuple("Spread", "mean low high n")


def main(argv=None):
    args = arguments().parse_args(argv)
    datasets = [analyze(d) for d in load_results(args.results)]
    checks = [load_convergence(path) for path in args.convergence]
    output_dir = args.output_dir or os.path.dirname(args.results[0]) or "."
    figures = plot_figures(datasets, checks)
    text = "\n".join(report_lines(datasets, checks, argv)) + "\n"
    with Artifacts(output_dir, ["report.md", *figures], args.overwrite) as out:
        with open(out.path("report.md"), "w") as f:
            f.write(text)
        for name, figure in figures.items():
            figure.savefig(out.path(name), dpi=100)
        out.commit()
    print(f"Wrote report.md and {len(figures)} plots in {output_dir}")
    return 0


# Reading and checking the files ---------------------------------------------


def _fits(value, kind):
    if kind.endswith("?"):
        return value is None or _fits(value, kind[:-1])
    if kind in ("numbers", "ints"):
        items = value if isinstance(value, list) else [None]
        return all(_fits(item, kind[:-1]) for item in items)
    if kind == "penalty":
        return value in ("none", *METHODS)
    if kind == "name":  # it names files
        return isinstance(value, str) and value.replace("-", "_").isidentifier()
    if isinstance(value, bool) or kind == "bool":
        return isinstance(value, bool) and kind == "bool"
    if kind == "number":
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, {"int": int, "str": str, "dict": dict}[kind])


def check(record, fields, where):
    """A one-line `RunError` unless `record` holds each field's kind."""
    if not isinstance(record, dict):
        raise RunError(f"{where} is not a JSON object")
    for key, kind in (field.split(":") for field in fields.split()):
        if key not in record:
            raise RunError(f"{where} lacks {key!r}")
        if not _fits(record[key], kind):
            value = repr(record[key])[:40]
            raise RunError(f"{where}: {key} is {value}, expected {kind}")


def load_json(path, what, fields, run_fields):
    """A checked JSON object with a `meta` and a non-empty list of `runs`."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except OSError as error:
        raise RunError(f"{path}: cannot be read ({error.strerror})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path}: not a JSON file ({error})") from error
    if not isinstance(saved, dict) or not {"meta", "runs"} <= saved.keys():
        raise RunError(f"{path}: not a {what} (no 'meta' and 'runs')")
    check(saved["meta"], fields, f"{path}: meta")
    if not isinstance(saved["runs"], list) or not saved["runs"]:
        raise RunError(f"{path}: its runs are not a non-empty list")
    for index, result in enumerate(saved["runs"]):
        check(result, run_fields, f"{path}: run {index}")
        if result["regularizer"] == "kl" and not (result["rho"] or 0) > 0:
            raise RunError(f"{path}: run {index} is KL without a rho > 0")
    return saved


def load_convergence(path):
    """A convergence.json of benchmarks/convergence.py, checked."""
    what = "convergence.json of benchmarks/convergence.py"
    saved = load_json(path, what, CHECK_FIELDS, CURVE_FIELDS)
    for index, curve in enumerate(saved["runs"]):
        lengths = {len(curve[k]) for k in ("epochs", "test_mse")}
        lengths.add(len(curve["mean_activation"]))
        if len(lengths) > 1 or not curve["epochs"]:
            raise RunError(f"{path}: run {index}: curves of unequal lengths")
        if curve["converged_epoch"] not in (None, *curve["epochs"]):
            raise RunError(f"{path}: run {index}: converged_epoch not measured")
    if not _fits(saved.get("recommended_epochs", "?"), "int?"):
        raise RunError(f"{path}: recommended_epochs is not an epoch or null")
    return saved


def load_results(paths):
    """Data sets `{"meta", "runs", "slug"}`, merging files of the same data."""
    groups = {}
    for path in paths:
        what = "results.json of benchmarks/kl_vs_l1.py"
        saved = load_json(path, what, META_FIELDS, RUN_FIELDS)
        meta = saved["meta"]
        key = (meta["dataset"], meta["data"])
        if key not in groups:
            meta = {**meta, "commands": [meta["command"]]}
            groups[key] = {"meta": meta, "runs": list(saved["runs"])}
            continue
        merged = groups[key]["meta"]
        for setting in SETTINGS:
            if merged[setting] != meta[setting]:
                raise RunError(
                    f"{path}: {setting} is {meta[setting]!r}, but an earlier "
                    f"file of {key[0]} has {merged[setting]!r}; only runs "
                    "with the same settings can be merged"
                )
        repeated = sorted(set(merged["seeds"]) & set(meta["seeds"]))
        if repeated:
            raise RunError(
                f"{path}: repeats seeds {repeated} of an earlier file"
            )
        merged["seeds"] = merged["seeds"] + meta["seeds"]
        merged["commands"].append(meta["command"])
        merged["total_seconds"] += meta["total_seconds"]
        groups[key]["runs"] += saved["runs"]
    used = collections.Counter()
    for dataset in groups.values():  # the names of each data set's plots
        slug = dataset["meta"]["dataset"]
        used[slug] += 1
        dataset["slug"] = slug if used[slug] == 1 else f"{slug}-{used[slug]}"
    return list(groups.values())


# Summaries and the fairness rule ---------------------------------------------


def spread(values):
    """`Spread` (mean, min, max, count) of the non-missing values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Spread(float(np.mean(values)), min(values), max(values), len(values))


def summarize(runs):
    """One row per configuration: its seeds' spread of every metric."""
    groups = {}
    for result in runs:
        key = tuple(result[k] for k in ("regularizer", "strength", "rho", "k"))
        groups.setdefault(key, []).append(result)
    rows = []
    for results in groups.values():
        row = {k: results[0][k] for k in ("regularizer", "strength", "rho")}
        row["label"] = describe_config(results[0])
        for metric in METRICS:
            row[metric] = spread(r[metric] for r in results)
        row["firing_rates"] = [x for r in results for x in r["firing_rates"]]
        rows.append(row)
    return rows


def within(row, budget=BUDGET):
    """Whether a penalized row's mean activation is within the budget."""
    penalized = row["regularizer"] != "none"
    return penalized and row["mean_activation"].mean <= budget


def matched_runs(rows):
    """The fairness rule: each method's lowest-MSE row within the budget."""
    return {
        method: min(
            (r for r in rows if r["regularizer"] == method and within(r)),
            key=lambda row: row["test_mse"].mean,
            default=None,
        )
        for method in METHODS
    }


def analyze(dataset):
    """Adds the summarized rows and the fairness rule's picks."""
    dataset["rows"] = summarize(dataset["runs"])
    dataset["matched"] = matched_runs(dataset["rows"])
    return dataset


# Tables ----------------------------------------------------------------------


def fmt(value, digits):
    """A spread as `mean (min–max)`, or `n/a`."""
    if value is None:
        return "n/a"
    if value.n == 1 or value.low == value.high:
        return f"{value.mean:.{digits}f}"
    ends = [f"{end:.{0 if digits == 1 else digits}f}" for end in value[1:3]]
    return f"{value.mean:.{digits}f} ({'–'.join(ends)})"


def table(header, rows):
    """A markdown table; `header` is its cells joined by `" | "`."""
    lines = [f"| {header} |", "|---" * (header.count(" | ") + 1) + "|"]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def runs_table(rows, metrics, budget_column=False):
    header = " | ".join(["run", *(METRICS[m][0] for m in metrics)])
    cells = [
        [row["label"], *(fmt(row[m], METRICS[m][1]) for m in metrics)]
        + (["yes" if within(row) else ""] if budget_column else [])
        for row in rows
    ]
    return table(header + " | within budget" * budget_column, cells)


def name_of(dataset):
    meta = dataset["meta"]
    if meta.get("data_dir"):
        return f"{meta['data_dir']} ({meta['dataset']})"
    return NAMES.get(meta["dataset"], meta["dataset"])


def dataset_lines(dataset):
    meta, name = dataset["meta"], name_of(dataset)
    matched = [r for r in dataset["matched"].values() if r is not None]
    baseline = [r for r in dataset["rows"] if r["regularizer"] == "none"]
    raw = meta["raw_probe_accuracy"]
    lines = [
        f"## {name}",
        "",
        f"Data: {meta['data']}; {meta['train_size']} training and "
        f"{meta['test_size']} test images; {meta['epochs']} epochs; seeds "
        f"{sorted(meta['seeds'])}; a probe on the raw pixels: "
        + ("n/a." if raw is None else f"{raw:.4f}."),
        "",
        f"### {name}: at matched sparsity",
        "",
        *runs_table(matched + baseline, list(METRICS)[:-1]),
        "",
        f"### {name}: all runs",
        "",
        *runs_table(dataset["rows"], list(METRICS), budget_column=True),
    ]
    for kind, title in [
        ("pareto", "test MSE against mean activation"),
        ("probe", "probe accuracy against mean activation"),
        ("firing_rates", "firing rates at matched sparsity"),
    ]:
        lines += ["", f"![{name}: {title}]({dataset['slug']}-{kind}.png)"]
    return lines


def convergence_lines(item):
    """The check's settings and where each of its curves ended."""
    meta, window = item["meta"], item["meta"]["window"]
    ends = []
    for curve in item["runs"]:
        epochs, mse = curve["epochs"], curve["test_mse"]
        act = curve["mean_activation"]
        change = ["–", "–"]
        if epochs[-1] - window in epochs and min(mse) > 0:
            j = epochs.index(epochs[-1] - window)
            change = [
                f"{mse[-1] / mse[j] - 1:+.1%}",
                f"{act[-1] - act[j]:+.4f}",
            ]
        converged = curve["converged_epoch"] or "not converged"
        inside = curve["regularizer"] != "none" and act[-1] <= BUDGET
        ends.append(
            [describe_config(curve), "yes" if inside else "", converged]
            + [epochs[-1]]
            + [f"{mse[-1]:.5f}", change[0], f"{act[-1]:.4f}", change[1]]
        )
    matched = [end for end in ends if end[1]]
    converged = sum(end[2] != "not converged" for end in matched)
    name = NAMES.get(meta["dataset"], meta["dataset"])
    return [
        f"## How many epochs: {name}",
        "",
        f"`benchmarks/convergence.py` on {meta['data']}: seed {meta['seed']}, "
        f"batch {meta['batch_size']}, the test images every {meta['every']} "
        f"epochs. A run converges at the first checkpoint whose next {window} "
        f"epochs keep its test MSE within {meta['tolerance']:.0%} and its "
        f"mean activation within {meta['activation_tolerance']:g}; it stops "
        f"there or after {meta['epochs']} epochs. Runs within the budget: "
        f"{len(matched)}, converged: {converged}; recommended epochs: "
        f"{item.get('recommended_epochs') or 'none'}.",
        "",
        *table(
            "run | within budget | converged at epoch | trained to epoch | "
            f"test MSE | its change, last {window} epochs | mean act. | its "
            "change",
            ends,
        ),
        "",
        f"![Convergence on {name}]({meta['dataset']}-convergence.png)",
    ]


def report_lines(datasets, checks, argv):
    """The whole report.md (tables and plot links), as lines."""
    meta = datasets[0]["meta"]
    quick = [name_of(d) for d in datasets if d["meta"]["quick"]]
    lines = ["# KL sparsity vs L1 activity regularization: the tables", ""]
    if quick:
        lines += [f"> **Smoke test (--quick runs): {', '.join(quick)}.**", ""]
    lines += ["Made by these commands (wall times on their machine):", ""]
    lines.append("```bash")
    for item in checks:
        seconds = item["meta"]["total_seconds"]
        lines.append(f"{item['meta']['command']}  # {seconds:.0f} s")
    for dataset in datasets:
        lines += dataset["meta"]["commands"]
        seconds = dataset["meta"]["total_seconds"]
        lines[-1] += f"  # {name_of(dataset)}: {seconds:.0f} s in all"
    argv = sys.argv[1:] if argv is None else argv
    command = [".venv/bin/python", "benchmarks/kl_vs_l1_report.py", *argv]
    versions = meta["versions"].items()
    lines += [
        shlex.join(command),
        "```",
        "",
        f"Setup: 784-200-784 autoencoder, sigmoid code and output, MSE, "
        f"{meta.get('optimizer')}, batch {meta['batch_size']}, the penalty "
        f"on the code only; active: above {meta.get('active_threshold')}; "
        f"dead: active on no test image; fairness rule: each method's lowest "
        f"test MSE with a mean activation of at most {BUDGET:.3f} ({TARGET} "
        "* 1.1). Versions: "
        + ", ".join(f"{key} {value}" for key, value in versions)
        + ".",
    ]
    for item in checks:
        lines += ["", *convergence_lines(item)]
    for dataset in datasets:
        lines += ["", *dataset_lines(dataset)]
    return lines


def plot_figures(datasets, checks=()):
    """Every plot's file name and figure."""
    figures = {}
    for dataset in datasets:
        name, slug = name_of(dataset), dataset["slug"]
        for kind, metric, title in [
            ("pareto", "test_mse", "reconstruction against sparsity"),
            ("probe", "probe_accuracy", "linear probe against sparsity"),
        ]:
            figures[f"{slug}-{kind}.png"] = plots.against_activation(
                dataset, metric, f"{name}: {title}", BUDGET
            )
        figures[f"{slug}-firing_rates.png"] = plots.firing_rates_figure(
            dataset, f"{name}: firing rates at matched sparsity"
        )
    for item in checks:
        meta = item["meta"]
        title = f"{NAMES.get(meta['dataset'], meta['dataset'])} (seed "
        figures[f"{meta['dataset']}-convergence.png"] = (
            plots.convergence_figure(
                item, f"Convergence on {title}{meta['seed']})"
            )
        )
    return figures


if __name__ == "__main__":
    run(main)
