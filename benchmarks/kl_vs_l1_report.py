"""The KL-vs-L1 report: tables with seed spreads, verdicts and plots.

Reads one or more results.json files written by benchmarks/kl_vs_l1.py
(files of the same data and settings are merged, so seeds can be run
separately) and writes a markdown report and three plots per data set to
--output-dir. With several data sets the report ends with what holds on
all of them, what depends on the data, and a recommendation; with
--convergence it also says how the epoch count was chosen.

Fairness rule at matched sparsity, the same on every data set: for each
method (KL, L1, top-k), the configuration with the lowest test MSE (mean
over seeds) among those whose mean code activation (mean over seeds) is at
most 0.05 * 1.1 = 0.055. A method wins a comparison when its range over
the seeds does not overlap the other's; otherwise it is a tie.

Definitions: active means an activation above keras_sparsity's
ACTIVE_THRESHOLD (0.1); a dead unit is active on no test image.
"""

import common  # noqa: F401, I001  (first: examples/ on sys.path, then quiet)

import collections
import contextlib
import json
import os
import shlex
import sys

import kl_vs_l1_plots as plots
import numpy as np
from common import describe_config
from runs import Artifacts, RunError, parser, run

from keras_sparsity import ACTIVE_THRESHOLD

EXAMPLE = (
    ".venv/bin/python benchmarks/kl_vs_l1_report.py "
    "runs/kl_vs_l1-mnist_5k-quick/results.json"
)
PUBLISHED = "docs/benchmarks.md"
TARGET = 0.05
TOLERANCE = 1.1
BUDGET = TARGET * TOLERANCE
CONTROL_FACTOR = 2.0  # KL "sets the level" if every run is this close to rho
METHODS = {"kl": "KL", "l1": "L1", "topk": "top-k"}
METRICS = (
    "test_mse",
    "mean_activation",
    "active_fraction",
    "dead_units",
    "firing_rate_std",
    "probe_accuracy",
    "step_ratio",
)
RUN_KEYS = {"regularizer", "strength", "rho", "k", "seed", *METRICS}
META_KEYS = {"dataset", "data", "quick", "epochs", "batch_size", "seeds"}
CONVERGENCE_KEYS = {"meta", "runs", "recommended_epochs"}
SETTINGS = ("quick", "epochs", "batch_size", "train_size", "test_size")
NAMES = {
    "fashion_mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "mnist_5k": "mnist_5k",
}
FAIRNESS_RULE = (
    f"for each method, the configuration with the lowest test MSE (mean "
    f"over seeds) among those whose mean code activation (mean over seeds) "
    f"is at most {TARGET} * {TOLERANCE} = {BUDGET:.3f}; a method with no "
    "such configuration does not take part. The same rule on every data "
    "set. A method wins a comparison when its range over the seeds does "
    "not overlap the other's; otherwise the comparison is a tie"
)

Spread = collections.namedtuple("Spread", "mean low high n")


def main(argv=None):
    args = arguments().parse_args(argv)
    datasets = [analyze(d) for d in load_results(args.results)]
    convergence = [load_convergence(path) for path in args.convergence]
    attach_checks(datasets, convergence)
    output_dir = args.output_dir or os.path.dirname(args.results[0]) or "."
    report = args.report or os.path.join(output_dir, "report.md")
    figures = {
        os.path.join(output_dir, name): figure
        for name, figure in plot_figures(datasets, convergence).items()
    }
    links = {
        os.path.basename(path): os.path.relpath(path, _folder(report))
        for path in figures
    }
    text = report_lines(datasets, convergence, links, argv)
    writers = {path: _figure_writer(f) for path, f in figures.items()}
    writers[report] = _text_writer("\n".join(text) + "\n")
    write_files(writers, args.overwrite)
    print(f"Wrote {report} and {len(figures)} plots in {output_dir}")
    return 0


def _folder(path):
    return os.path.dirname(path) or "."


def _figure_writer(figure):
    return lambda path: figure.savefig(path, dpi=100)


def _text_writer(text):
    def write(path):
        with open(path, "w") as f:
            f.write(text)

    return write


def write_files(writers, overwrite):
    """Writes `{path: writer(temporary path)}`, one `Artifacts` per folder.

    Nothing is written unless every folder accepts its files (no results
    there, or `overwrite`); the files are moved into place at the end.
    """
    folders = {}
    for path in writers:
        folders.setdefault(_folder(path), []).append(os.path.basename(path))
    with contextlib.ExitStack() as stack:
        artifacts = {
            folder: stack.enter_context(Artifacts(folder, names, overwrite))
            for folder, names in folders.items()
        }
        for path, write in writers.items():
            write(artifacts[_folder(path)].path(os.path.basename(path)))
        for folder_artifacts in artifacts.values():
            folder_artifacts.commit()


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
        help="convergence.json files written by benchmarks/convergence.py, "
        "to say how the epochs were chosen",
    )
    arguments.add_argument(
        "--report",
        help="where to write the markdown report (default: report.md in "
        f"--output-dir); {PUBLISHED} for the published report",
    )
    arguments.add_argument(
        "--output-dir",
        help="folder for the plots, and for report.md without --report "
        "(default: the first results file's folder)",
    )
    arguments.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the report and plots of an earlier run",
    )
    return arguments


# Reading and merging results ---------------------------------------------


def load_json(path):
    """A JSON file's content, or a one-line `RunError`."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as error:
        raise RunError(f"{path}: cannot be read ({error.strerror})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path}: not a JSON file ({error})") from error


def load_convergence(path):
    """A convergence.json of benchmarks/convergence.py, with its path."""
    saved = load_json(path)
    if not isinstance(saved, dict) or not CONVERGENCE_KEYS <= saved.keys():
        raise RunError(
            f"{path}: not a convergence.json of benchmarks/convergence.py"
        )
    return {**saved, "path": path}


def attach_checks(datasets, convergence):
    """Gives each data set its convergence check, and whether it converged.

    `converged` is `None` without a check, else whether the check found an
    epoch count and the sweep trained at least that many epochs.
    """
    checks = {item["meta"]["dataset"]: item for item in convergence}
    for dataset in datasets:
        check = checks.get(dataset["meta"]["dataset"])
        recommended = check and check["recommended_epochs"]
        dataset["check"] = check
        dataset["converged"] = (
            None
            if check is None
            else bool(recommended) and dataset["meta"]["epochs"] >= recommended
        )


def _check_results(saved, path):
    if not isinstance(saved, dict) or not {"meta", "runs"} <= saved.keys():
        raise RunError(
            f"{path}: not a results.json of benchmarks/kl_vs_l1.py (no "
            "'meta' and 'runs')"
        )
    missing = META_KEYS - saved["meta"].keys()
    if missing:
        raise RunError(f"{path}: its meta lacks {sorted(missing)}")
    for index, result in enumerate(saved["runs"]):
        lacking = RUN_KEYS - result.keys()
        if lacking:
            raise RunError(f"{path}: run {index} lacks {sorted(lacking)}")
    if not saved["runs"]:
        raise RunError(f"{path}: holds no runs")


def load_results(paths):
    """Data sets `{"meta", "runs"}`, merging files of the same data."""
    groups = {}
    for path in paths:
        saved = load_json(path)
        _check_results(saved, path)
        meta = saved["meta"]
        key = (meta["dataset"], meta["data"])
        if key not in groups:
            groups[key] = {
                "meta": {**meta, "commands": [meta.get("command")]},
                "runs": list(saved["runs"]),
            }
            continue
        merged = groups[key]["meta"]
        for setting in SETTINGS:
            if merged.get(setting) != meta.get(setting):
                raise RunError(
                    f"{path}: {setting} is {meta.get(setting)!r}, but an "
                    f"earlier file of {key[0]} has {merged.get(setting)!r}; "
                    "only runs with the same settings can be merged"
                )
        repeated = set(merged["seeds"]) & set(meta["seeds"])
        if repeated:
            raise RunError(
                f"{path}: repeats seeds {sorted(repeated)} of an earlier file"
            )
        merged["seeds"] = merged["seeds"] + meta["seeds"]
        merged["commands"].append(meta.get("command"))
        merged["total_seconds"] = merged.get("total_seconds", 0) + meta.get(
            "total_seconds", 0
        )
        groups[key]["runs"] += saved["runs"]
    return list(groups.values())


# Summaries and the fairness rule ------------------------------------------


def spread(values):
    """`Spread` (mean, min, max, count) of the non-missing values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return Spread(float(np.mean(values)), min(values), max(values), len(values))


def overlaps(a, b):
    """Whether two spreads' ranges over seeds overlap."""
    return a.low <= b.high and b.low <= a.high


def config_key(result):
    return (
        result["regularizer"],
        result["strength"],
        result["rho"],
        result["k"],
    )


def summarize(runs):
    """One row per configuration: its seeds' spread of every metric."""
    groups = {}
    for result in runs:
        groups.setdefault(config_key(result), []).append(result)
    rows = []
    for results in groups.values():
        first = results[0]
        row = {
            key: first[key] for key in ("regularizer", "strength", "rho", "k")
        }
        row["label"] = describe_config(first)
        row["seeds"] = sorted(r["seed"] for r in results)
        for metric in METRICS:
            row[metric] = spread(r[metric] for r in results)
        row["firing_rates"] = [
            rate for r in results for rate in r.get("firing_rates", [])
        ]
        rows.append(row)
    return rows


def matched_runs(rows, budget=BUDGET):
    """The fairness rule: each method's lowest-MSE row within the budget."""
    matched = {}
    for method in METHODS:
        candidates = [
            row
            for row in rows
            if row["regularizer"] == method
            and row["mean_activation"].mean <= budget
        ]
        matched[method] = min(
            candidates, key=lambda row: row["test_mse"].mean, default=None
        )
    return matched


def compare(a, b, metric, lower_is_better):
    """`"KL"`-style winner of two matched rows on a metric, or `"tie"`."""
    if a is None or b is None or a[metric] is None or b[metric] is None:
        return None
    if overlaps(a[metric], b[metric]):
        return "tie"
    a_better = (a[metric].mean < b[metric].mean) == lower_is_better
    return METHODS[a["regularizer"]] if a_better else METHODS[b["regularizer"]]


def sparsity_control(rows):
    """How closely KL's mean activation follows rho, and L1's spread."""
    kl = [row for row in rows if row["regularizer"] == "kl"]
    l1 = [row for row in rows if row["regularizer"] == "l1"]
    per_rho = {}
    for row in kl:
        low, high = per_rho.get(row["rho"], (np.inf, -np.inf))
        per_rho[row["rho"]] = (
            min(low, row["mean_activation"].mean),
            max(high, row["mean_activation"].mean),
        )
    factors = [
        max(
            row["mean_activation"].mean / row["rho"],
            row["rho"] / row["mean_activation"].mean,
        )
        for row in kl
    ]
    betas = [row["strength"] for row in kl]
    return {
        "per_rho": per_rho,
        "worst_factor": max(factors) if factors else None,
        "beta_range": (min(betas), max(betas)) if betas else None,
        "holds": bool(factors) and max(factors) <= CONTROL_FACTOR,
        "l1_activations": [row["mean_activation"].mean for row in l1],
        "l1_strengths": [row["strength"] for row in l1],
    }


def topk_worst(topk, kl, l1):
    """Whether top-k reconstructs worse than both KL and L1, beyond spread."""
    if topk is None or kl is None or l1 is None:
        return None
    return all(
        compare(topk, other, "test_mse", True) == METHODS[other["regularizer"]]
        for other in (kl, l1)
    )


def analyze(dataset):
    """Adds the rows, the matched runs and the findings to a data set."""
    rows = summarize(dataset["runs"])
    matched = matched_runs(rows)
    kl, l1, topk = matched["kl"], matched["l1"], matched["topk"]
    kl_dead = [
        r["dead_units"] for r in dataset["runs"] if r["regularizer"] == "kl"
    ]
    dataset.update(
        rows=rows,
        matched=matched,
        baseline=next((r for r in rows if r["regularizer"] == "none"), None),
        findings={
            "reconstruction": compare(kl, l1, "test_mse", True),
            "probe": compare(kl, l1, "probe_accuracy", False),
            "dead_units": compare(kl, l1, "dead_units", True),
            "control": sparsity_control(rows),
            "kl_dead_max": max(kl_dead) if kl_dead else None,
            "topk_worst": topk_worst(topk, kl, l1),
        },
    )
    return dataset


# Text ---------------------------------------------------------------------


def name_of(dataset):
    meta = dataset["meta"]
    if meta.get("data_dir"):
        return f"{meta['data_dir']} ({meta['dataset']})"
    return NAMES.get(meta["dataset"], meta["dataset"])


def fmt(value, digits):
    """A spread as `mean (min–max)`, or `n/a`."""
    if value is None:
        return "n/a"
    if value.n == 1 or value.low == value.high:
        return f"{value.mean:.{digits}f}"
    range_digits = 0 if digits == 1 else digits
    return (
        f"{value.mean:.{digits}f} ({value.low:.{range_digits}f}–"
        f"{value.high:.{range_digits}f})"
    )


COLUMNS = [
    ("test MSE", "test_mse", 5),
    ("mean act.", "mean_activation", 4),
    ("active frac.", "active_fraction", 4),
    ("dead units", "dead_units", 1),
    ("rate std", "firing_rate_std", 4),
    ("probe acc.", "probe_accuracy", 4),
]


def table(rows, columns, first=("run", lambda row: row["label"])):
    lines = [
        f"| {first[0]} | " + " | ".join(c[0] for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in rows:
        cells = [fmt(row[key], digits) for _, key, digits in columns]
        lines.append(f"| {first[1](row)} | " + " | ".join(cells) + " |")
    return lines


def runs_table(rows):
    columns = COLUMNS + [("step ratio", "step_ratio", 3)]
    lines = table(rows, columns)
    lines[0] += " within budget |"
    lines[1] += "---|"
    for i, row in enumerate(rows):
        inside = row["regularizer"] != "none" and (
            row["mean_activation"].mean <= BUDGET
        )
        lines[i + 2] += " yes |" if inside else " |"
    return lines


def matched_table(dataset):
    rows = [row for row in dataset["matched"].values() if row is not None]
    if dataset["baseline"] is not None:
        rows.append(dataset["baseline"])
    return table(rows, COLUMNS)


def describe_row(row, metric="test_mse", digits=5):
    return f"{row['label']} ({fmt(row[metric], digits)})"


def winner_phrase(outcome, what):
    if outcome is None:
        return f"no {what} comparison (a method has no run within the budget)"
    if outcome == "tie":
        return f"a tie on {what} within the seed spread"
    return f"{outcome} is better on {what}"


def verdict_lines(dataset):
    """Plain-words findings of one data set, generated from its numbers."""
    meta, found = dataset["meta"], dataset["findings"]
    kl, l1, topk = (dataset["matched"][m] for m in METHODS)
    lines = []
    base = dataset["baseline"]
    if base is not None:
        lines.append(
            f"- Without a penalty the code's mean activation is "
            f"{base['mean_activation'].mean:.3f} (test MSE "
            f"{fmt(base['test_mse'], 5)}, probe "
            f"{fmt(base['probe_accuracy'], 4)}); a probe on the raw pixels "
            f"scores {_number(meta.get('raw_probe_accuracy'), 4)}."
        )
    for method, row in dataset["matched"].items():
        if row is None:
            lines.append(
                f"- {METHODS[method]}: no run reaches mean activation "
                f"{BUDGET:.3f}, so it takes no part in the comparison."
            )
    if kl and l1:
        lines.append(
            f"- Reconstruction at matched sparsity: "
            f"{winner_phrase(found['reconstruction'], 'test MSE')}: "
            f"{describe_row(kl)} against {describe_row(l1)}."
        )
        lines.append(
            f"- Linear probe at matched sparsity: "
            f"{winner_phrase(found['probe'], 'probe accuracy')}: KL "
            f"{fmt(kl['probe_accuracy'], 4)}, L1 "
            f"{fmt(l1['probe_accuracy'], 4)}."
        )
        lines.append(
            f"- Dead units at matched sparsity: KL "
            f"{fmt(kl['dead_units'], 1)}, L1 {fmt(l1['dead_units'], 1)} of "
            f"200; the most in any KL run and seed: {found['kl_dead_max']}."
        )
    lines.append(control_line(found["control"]))
    if topk is not None:
        lines.append(
            f"- Top-k at matched sparsity: {describe_row(topk)}, "
            f"{fmt(topk['dead_units'], 1)} dead units, probe "
            f"{fmt(topk['probe_accuracy'], 4)}"
            + (
                ": worse reconstruction than both KL and L1."
                if found["topk_worst"]
                else "."
            )
        )
    return lines


def control_line(control):
    if control["worst_factor"] is None:
        return "- No KL run: nothing to say about controlling the level."
    levels = "; ".join(
        f"rho {rho:g}: {low:.3f} to {high:.3f}"
        for rho, (low, high) in sorted(control["per_rho"].items())
    )
    low_beta, high_beta = control["beta_range"]
    text = (
        f"- Control of the sparsity level: over a {high_beta / low_beta:.0f}-"
        f"fold range of beta, KL's mean activation stays within a factor "
        f"{control['worst_factor']:.2f} of rho ({levels})"
    )
    if control["l1_activations"]:
        acts, strengths = control["l1_activations"], control["l1_strengths"]
        text += (
            f"; L1's goes from {max(acts):.3f} to {min(acts):.3f} over a "
            f"{max(strengths) / min(strengths):.0f}-fold range of strength, "
            "so its strength must be searched for"
        )
    return text + "."


def _number(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


CLAIMS = [
    ("reconstruction", "Reconstruction (test MSE) at matched sparsity"),
    ("probe", "Linear-probe accuracy of the codes at matched sparsity"),
    ("dead_units", "Fewer dead units at matched sparsity"),
    (
        "control",
        f"KL's mean activation within a factor {CONTROL_FACTOR:g} of "
        "rho at every beta",
    ),
    ("topk_worst", "Top-k reconstructs worse than both KL and L1"),
]


def outcome(dataset, claim):
    value = dataset["findings"][claim]
    if claim == "control":
        return "yes" if value["holds"] else "no"
    if claim == "topk_worst":
        return {None: "n/a", True: "yes", False: "no"}[value]
    return "n/a" if value is None else value


def cross_dataset_lines(datasets):
    """What holds on every data set and what depends on the data."""
    holds, depends, unmeasured = [], [], []
    for claim, text in CLAIMS:
        outcomes = {name_of(d): outcome(d, claim) for d in datasets}
        values = set(outcomes.values())
        detail = ", ".join(
            f"{name_of(d)}: {outcome(d, claim)}"
            + (
                " (not converged)"
                if claim == "reconstruction" and d.get("converged") is False
                else ""
            )
            for d in datasets
        )
        if "n/a" in values:
            unmeasured.append(f"- {text} ({detail}).")
        elif len(values) == 1:
            holds.append(f"- {text}: **{values.pop()}** ({detail}).")
        else:
            depends.append(f"- {text}: {detail}.")
    if len(datasets) == 1:
        lines = ["On this data set:", "", *(holds or ["- nothing measured"])]
    else:
        lines = ["Holds on every data set:", "", *(holds or ["- nothing"])]
        lines += ["", "Depends on the data:", "", *(depends or ["- nothing"])]
    if unmeasured:
        lines += [
            "",
            "Not measured everywhere (a method has no run within the budget):",
            "",
            *unmeasured,
        ]
    return lines


def _by_outcome(datasets, claim, phrases):
    """`KL on A, B; L1 on C`-style text of a claim's outcomes."""
    parts = []
    for value, phrase in phrases.items():
        names = [name_of(d) for d in datasets if outcome(d, claim) == value]
        if names:
            parts.append(f"{phrase} on {', '.join(names)}")
    return "; ".join(parts)


def recommendation_lines(datasets):
    """A recommendation that follows from the outcomes on every data set."""
    comparable = [
        d for d in datasets if d["matched"]["kl"] and d["matched"]["l1"]
    ]
    lines = []
    if len(comparable) < len(datasets):
        names = [name_of(d) for d in datasets if d not in comparable]
        lines.append(
            f"- No comparison on {', '.join(names)}: KL or L1 has no run "
            f"within the budget of {BUDGET:.3f} there (train longer or widen "
            "the sweep)."
        )
    if not comparable:
        return lines

    def everywhere(claim, value):
        return all(outcome(d, claim) == value for d in comparable)

    scope = "every data set here" if len(comparable) > 1 else "this data set"
    lines.append(level_advice(comparable, scope, everywhere))
    if everywhere("probe", "KL") or everywhere("probe", "L1"):
        winner = outcome(comparable[0], "probe")
        lines.append(
            f"- If the codes feed a classifier, prefer {winner}: its codes "
            f"classified better on {scope}."
        )
    else:
        lines.append(
            "- If the codes feed a classifier, measure on your data: "
            + _by_outcome(
                comparable,
                "probe",
                {"KL": "KL's were better", "L1": "L1's", "tie": "a tie"},
            )
            + "."
        )
    lines.append(reconstruction_advice(comparable, scope, everywhere))
    for dataset in comparable:
        if dataset.get("converged") is False:
            lines.append(unsettled_advice(dataset))
    if everywhere("topk_worst", "yes"):
        lines.append(
            "- Do not use the simple top-k code measured here (sigmoid units, "
            "no schedule on k): it reconstructed worse than both at the same "
            f"sparsity on {scope}."
        )
    return lines


def unsettled_advice(dataset):
    text = (
        f"- On {name_of(dataset)} the reconstruction comparison had not "
        "converged (see its convergence check): it may change with longer "
        "training"
    )
    if activations_settled(dataset["check"]):
        check = dataset["check"]["meta"]
        text += (
            ", while the mean activations of the runs within the budget had "
            f"settled (they moved less than {check['activation_tolerance']:g}"
            f" over the check's last {check['window']} epochs)"
        )
    return text + "."


def activations_settled(check):
    """Whether every run within the budget ended its check with a mean
    activation steady within the tolerance over the last window."""
    window = check["meta"]["window"]
    tolerance = check["meta"]["activation_tolerance"]
    for curve in check["runs"]:
        epochs, activation = curve["epochs"], curve["mean_activation"]
        if not can_be_matched(curve):
            continue
        if epochs[-1] - window not in epochs:
            return False
        start = activation[epochs.index(epochs[-1] - window)]
        if abs(activation[-1] - start) > tolerance:
            return False
    return True


def level_advice(comparable, scope, everywhere):
    if everywhere("control", "yes") and everywhere("dead_units", "KL"):
        betas = sorted({d["matched"]["kl"]["strength"] for d in comparable})
        return (
            "- **To choose the sparsity level and keep every unit in use, use "
            "`KLSparsityRegularizer(rho, beta)`**: set `rho` to the mean "
            "activation you want and take the smallest `beta` that gets you "
            "there (the fairness rule picked beta "
            f"{', '.join(f'{b:g}' for b in betas)}). KL held the level and "
            f"left fewer dead units than L1 on {scope}."
        )
    return (
        "- KL did not both hold the level and keep fewer dead units than L1 "
        f"on {scope}: read the per-data-set findings before choosing."
    )


def reconstruction_advice(comparable, scope, everywhere):
    if everywhere("reconstruction", "L1"):
        return (
            "- If only the reconstruction error at a given sparsity matters, "
            f"use L1 and search its strength: it reconstructed better on "
            f"{scope}, at the price of dead units."
        )
    if everywhere("reconstruction", "KL"):
        return f"- KL also reconstructed better at matched sparsity on {scope}."
    return (
        "- If only the reconstruction error at a given sparsity matters, try "
        "both on your data (L1 with a search over its strength, KL with "
        "`rho` at your target): "
        + _by_outcome(
            comparable,
            "reconstruction",
            {"L1": "L1 was better", "KL": "KL", "tie": "a tie"},
        )
        + "."
    )


def smoke_test_lines(datasets):
    quick = [d for d in datasets if d["meta"].get("quick")]
    if not quick:
        return []
    runs = "; ".join(
        f"{name_of(d)}: seeds {d['meta']['seeds']}, {d['meta']['epochs']} "
        f"epochs, {d['meta'].get('train_size')} training and "
        f"{d['meta'].get('test_size')} test images"
        for d in quick
    )
    return [
        f"> **Smoke test, not a result.** This report comes from `--quick` "
        f"runs ({runs}): too few seeds, epochs and images to conclude "
        f"anything. The published report, from full runs, is "
        f"`{PUBLISHED}` in the repository.",
        "",
    ]


def command_lines(datasets, convergence, argv):
    lines = ["```bash"]
    for item in convergence:
        meta = item["meta"]
        lines.append(f"{meta['command']}  # {meta['total_seconds']:.0f} s")
    for dataset in datasets:
        commands = [c for c in dataset["meta"]["commands"] if c]
        seconds = dataset["meta"].get("total_seconds")
        for command in commands:
            lines.append(command)
        if seconds is not None:
            lines[-1] += f"  # {name_of(dataset)}: {seconds:.0f} s in all"
    argv = sys.argv[1:] if argv is None else argv
    lines += [
        shlex.join(
            [".venv/bin/python", "benchmarks/kl_vs_l1_report.py", *argv]
        ),
        "```",
    ]
    return lines


def setup_lines(datasets):
    meta = datasets[0]["meta"]
    versions = meta.get("versions", {})
    lines = [
        "Setup: the seed architecture (784-200-784, sigmoid code and output), "
        f"MSE, {meta.get('optimizer', 'Adam(1e-3)')}, batch "
        f"{meta['batch_size']}, the penalty on the code only. L1 is Keras's "
        "`L1` activity regularizer; KL is `KLSparsityRegularizer(rho, beta)`; "
        "top-k keeps the k largest sigmoid activations of each image (a "
        "simple form of Makhzani and Frey, 2013: no schedule on k).",
        "",
        f"Definitions: an activation is *active* above "
        f"`keras_sparsity.ACTIVE_THRESHOLD` ({ACTIVE_THRESHOLD}); a unit is "
        "*dead* when it is active on no test image; a unit's *firing rate* is "
        "its mean activation over the test images (*rate std*: their standard "
        "deviation over the units); the *probe* is a ridge-regression linear "
        "classifier fitted on the training codes and scored on the test "
        "codes. Cells show the mean over seeds and, in brackets, the range "
        "(min–max) over the seeds.",
        "",
        f"Fairness rule at matched sparsity: {FAIRNESS_RULE}.",
        "",
        "*step ratio* is a training step's time over the unpenalized model's, "
        "from short interleaved blocks during the sweep on a shared machine: "
        "a noisy figure, not a cost measurement. `benchmarks/overhead.py` "
        "measures what each penalty costs a training step, on TensorFlow, "
        "JAX and PyTorch, and `benchmarks/sync_cost.py` what the "
        "global-batch penalty costs under data parallelism: their figures "
        "are in the backends guide (`docs/backends.md`).",
    ]
    if versions:
        lines += [
            "",
            "Versions: "
            + ", ".join(f"{key} {value}" for key, value in versions.items())
            + ".",
        ]
    return lines


def can_be_matched(curve):
    """Whether a convergence run could take part in the matched comparison.

    Penalized runs (L1, KL, top-k) whose mean code activation ends within
    the budget are the ones the fairness rule can pick.
    """
    return (
        curve["regularizer"] != "none"
        and curve["mean_activation"][-1] <= BUDGET
    )


def convergence_lines(item, links):
    """How the epochs were chosen: the check's rule, table and verdict."""
    meta = item["meta"]
    lines = [
        f"### How many epochs: {NAMES.get(meta['dataset'], meta['dataset'])}",
        "",
        f"`benchmarks/convergence.py` trained every configuration of the "
        f"sweep on {meta['data']} (seed {meta['seed']}, batch "
        f"{meta['batch_size']}), measuring the test images every "
        f"{meta['every']} epochs. A run has converged at the first "
        f"checkpoint whose next {meta['window']} epochs all keep its test MSE "
        f"within {meta['tolerance']:.0%} and its mean code activation within "
        f"{meta['activation_tolerance']:g}; it stops there, or after "
        f"{meta['epochs']} epochs. Only the runs that end within the budget "
        f"of {BUDGET:.3f} (the ones the fairness rule can pick) set the "
        "epochs.",
        "",
        *convergence_table(item),
        "",
        convergence_verdict(item),
        "",
        "How the fairness rule's comparison moves with training, on the "
        "check's curves (one seed):",
        "",
        *comparison_over_epochs(item),
        "",
        late_trend(item),
        "",
        f"![Convergence]({links[convergence_file(item)]})",
    ]
    return lines


def convergence_table(item):
    window = item["meta"]["window"]
    lines = [
        "| run | within budget | converged at epoch | trained to epoch | "
        f"test MSE there | change over its last {window} epochs | mean act. "
        "there | change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for curve in item["runs"]:
        epochs, mse = curve["epochs"], curve["test_mse"]
        activation = curve["mean_activation"]
        change = mse_change = "–"
        if epochs[-1] - window in epochs:
            j = epochs.index(epochs[-1] - window)
            mse_change = f"{mse[-1] / mse[j] - 1:+.1%}"
            change = f"{activation[-1] - activation[j]:+.4f}"
        lines.append(
            f"| {describe_config(curve)} | "
            f"{'yes' if can_be_matched(curve) else ''} | "
            f"{curve['converged_epoch'] or 'not converged'} | {epochs[-1]} | "
            f"{mse[-1]:.5f} | {mse_change} | {activation[-1]:.4f} | "
            f"{change} |"
        )
    return lines


def convergence_verdict(item):
    meta, recommended = item["meta"], item["recommended_epochs"]
    matched = [c for c in item["runs"] if can_be_matched(c)]
    if recommended:
        slowest = max(matched, key=lambda c: c["converged_epoch"])
        return (
            f"Every run within the budget ({len(matched)} runs) converged by "
            f"epoch **{recommended}** (the slowest: "
            f"{describe_config(slowest)}), so the sweep on {meta['dataset']} "
            f"needs at least {recommended} epochs."
        )
    slow = [c for c in matched if not c["converged_epoch"]]
    return (
        f"**Not converged:** {len(slow)} of the {len(matched)} runs within "
        f"the budget were still changing after {meta['epochs']} epochs "
        "(the table's last columns): no epoch count within this check "
        "settles the comparison, and a sweep's reconstruction figures are a "
        "snapshot at the epochs it trained, not a final verdict."
    )


def rows_at(curves, epoch):
    """Summary-like rows of the check's curves at an epoch (one seed).

    A run that stopped earlier (it had converged) keeps its last value.
    """
    rows = []
    for curve in curves:
        i = max(j for j, e in enumerate(curve["epochs"]) if e <= epoch)
        row = {k: curve[k] for k in ("regularizer", "strength", "rho", "k")}
        row["label"] = describe_config(curve)
        for metric in ("test_mse", "mean_activation"):
            value = curve[metric][i]
            row[metric] = Spread(value, value, value, 1)
        rows.append(row)
    return rows


def comparison_over_epochs(item, every=50):
    lines = [
        "| epoch | KL's pick | its test MSE (mean act.) | L1's pick | its "
        "test MSE (mean act.) | lower test MSE |",
        "|---|---|---|---|---|---|",
    ]
    last = max(curve["epochs"][-1] for curve in item["runs"])
    first = min(curve["epochs"][0] for curve in item["runs"])
    for epoch in range(every, last + 1, every):
        if epoch < first:
            continue
        matched = matched_runs(rows_at(item["runs"], epoch))
        cells = []
        for method in ("kl", "l1"):
            row = matched[method]
            cells += (
                [
                    row["label"],
                    f"{row['test_mse'].mean:.5f} "
                    f"({row['mean_activation'].mean:.4f})",
                ]
                if row
                else ["none within budget", "–"]
            )
        winner = compare(matched["kl"], matched["l1"], "test_mse", True)
        lines.append(
            f"| {epoch} | " + " | ".join(cells) + f" | {winner or 'n/a'} |"
        )
    return lines


def late_trend(item):
    """How fast the picks of the last checkpoint were still improving."""
    window = item["meta"]["window"]
    last = max(curve["epochs"][-1] for curve in item["runs"])
    matched = matched_runs(rows_at(item["runs"], last))
    parts = []
    for method in ("kl", "l1"):
        row = matched[method]
        if row is None:
            continue
        curve = next(
            c for c in item["runs"] if describe_config(c) == row["label"]
        )
        epochs, mse = curve["epochs"], curve["test_mse"]
        if epochs[-1] - window in epochs:
            change = mse[-1] / mse[epochs.index(epochs[-1] - window)] - 1
            parts.append(
                f"{METHODS[method]}'s pick ({row['label']}) {change:+.1%}"
            )
    if not parts:
        return "No pick to follow over the last epochs."
    return (
        f"Test MSE change over the check's last {window} epochs: "
        + ", ".join(parts)
        + "."
    )


def dataset_lines(dataset, links):
    meta, name = dataset["meta"], name_of(dataset)
    lines = [
        f"## {name}",
        "",
        f"Data: {meta['data']}; {meta.get('train_size')} training and "
        f"{meta.get('test_size')} test images; {meta['epochs']} epochs; "
        f"seeds {sorted(meta['seeds'])}.",
    ]
    check = dataset.get("check")
    if check is None:
        lines += [
            "",
            "No convergence check was run on this data set: its "
            "reconstruction figures hold for this many epochs only.",
        ]
    elif check["recommended_epochs"] is None:
        lines += [
            "",
            f"**Not converged:** the convergence check found runs within the "
            f"budget still changing after {check['meta']['epochs']} epochs; "
            "the reconstruction comparison below is a snapshot at "
            f"{meta['epochs']} epochs, not a final verdict.",
        ]
    elif meta["epochs"] < check["recommended_epochs"]:
        lines += [
            "",
            f"**Warning:** {meta['epochs']} epochs is fewer than the "
            f"{check['recommended_epochs']} the convergence check asks for.",
        ]
    lines += [
        "",
        f"### {name}: at matched sparsity",
        "",
        *matched_table(dataset),
        "",
        f"### {name}: verdict",
        "",
        *verdict_lines(dataset),
        "",
        f"### {name}: all runs",
        "",
        *runs_table(dataset["rows"]),
        "",
        f"![{name}: test MSE against mean activation]"
        f"({links[plot_file(dataset, 'pareto')]})",
        "",
        f"![{name}: probe accuracy against mean activation]"
        f"({links[plot_file(dataset, 'probe')]})",
        "",
        f"![{name}: firing rates at matched sparsity]"
        f"({links[plot_file(dataset, 'firing_rates')]})",
    ]
    return lines


def report_lines(datasets, convergence, links, argv):
    lines = [
        "# Benchmark: KL sparsity vs L1 activity regularization "
        "(and k-sparse codes)",
        "",
        *smoke_test_lines(datasets),
        "Should you put the KL penalty or plain L1 on the code of a sparse "
        "autoencoder? Every number on this page was printed by these "
        "commands (wall times on the machine that ran them):",
        "",
        *command_lines(datasets, convergence, argv),
        "",
        *setup_lines(datasets),
    ]
    for item in convergence:
        lines += ["", *convergence_lines(item, links)]
    for dataset in datasets:
        lines += ["", *dataset_lines(dataset, links)]
    title = "Across data sets" if len(datasets) > 1 else "Summary"
    lines += ["", f"## {title}", ""]
    if len(datasets) == 1:
        lines += [
            "One data set only: run the sweep on another before generalizing.",
            "",
        ]
    lines += [*cross_dataset_lines(datasets), "", "## Recommendation", ""]
    lines += recommendation_lines(datasets)
    return lines


# Plots --------------------------------------------------------------------


def plot_file(dataset, kind):
    return f"{dataset['slug']}-{kind}.png"


def plot_figures(datasets, convergence=()):
    """Every plot's file name and figure."""
    used = collections.Counter()
    figures = {}
    for dataset in datasets:
        slug = dataset["meta"]["dataset"]
        used[slug] += 1
        dataset["slug"] = slug if used[slug] == 1 else f"{slug}-{used[slug]}"
        name = name_of(dataset)
        for kind, metric, title in [
            ("pareto", "test_mse", "reconstruction against sparsity"),
            ("probe", "probe_accuracy", "linear probe against sparsity"),
        ]:
            figures[plot_file(dataset, kind)] = plots.against_activation(
                dataset, metric, f"{name}: {title}", BUDGET
            )
        figures[plot_file(dataset, "firing_rates")] = plots.firing_rates_figure(
            dataset, f"{name}: firing rates at matched sparsity"
        )
    for item in convergence:
        dataset = NAMES.get(item["meta"]["dataset"], item["meta"]["dataset"])
        figures[convergence_file(item)] = plots.convergence_figure(
            item, f"Convergence on {dataset} (seed {item['meta']['seed']})"
        )
    return figures


def convergence_file(item):
    return f"{item['meta']['dataset']}-convergence.png"


if __name__ == "__main__":
    run(main)
