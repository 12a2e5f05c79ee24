"""The benchmarks' machinery on tiny data the tests write (not timings)."""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sparsity import (
    ACTIVE_THRESHOLD,
    KLSparsityRegularizer,
    SparseDense,
)

import runs
from conftest import ROOT, load_script, run_cli
from test_data import write_idx_dataset

BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    # The benchmarks' shared module, as the scripts see it.
    sys.path.insert(0, BENCHMARKS)

SCRIPTS = [
    "overhead",
    "monitor_overhead",
    "sync_cost",
    "kl_vs_l1",
    "kl_vs_l1_report",
    "convergence",
    "install_size",
]


@pytest.fixture(scope="module")
def common():
    import common

    return common


@pytest.fixture(scope="module")
def sweep():
    return load_script("benchmarks/kl_vs_l1.py", "kl_vs_l1")


@pytest.fixture(scope="module")
def report():
    return load_script("benchmarks/kl_vs_l1_report.py", "kl_vs_l1_report")


@pytest.fixture(scope="module")
def convergence():
    return load_script("benchmarks/convergence.py", "convergence")


# The seed autoencoder --------------------------------------------------------


def test_every_variant_is_the_seed_autoencoder(common):
    kl = common.config("kl", 0.5, rho=0.02)
    for run, code_class in [
        (common.config("none"), keras.layers.Dense),
        (common.config("l1", 1e-3), keras.layers.Dense),
        (kl, keras.layers.Dense),
        (common.config("sparse_dense", 0.5, rho=0.02), SparseDense),
        (common.config("topk", 7.0, k=7), keras.layers.Dense),
    ]:
        model = common.build_autoencoder(run)
        assert model.count_params() == 314_584, run
        assert type(model.get_layer("code")) is code_class
        assert model.get_layer("code").activation is keras.activations.sigmoid
        assert model.output.shape == (None, 784)


def test_penalty_on_the_code_or_on_both_layers(common):
    kl = common.config("kl", 0.5, rho=0.02)
    code_only = common.build_autoencoder(kl)
    penalty = code_only.get_layer("code").activity_regularizer
    assert isinstance(penalty, KLSparsityRegularizer)
    assert (penalty.rho, penalty.beta) == (0.02, 0.5)
    assert code_only.get_layer("reconstruction").activity_regularizer is None
    both = common.build_autoencoder(kl, penalize="both", optimizer="sgd")
    assert isinstance(
        both.get_layer("reconstruction").activity_regularizer,
        KLSparsityRegularizer,
    )
    assert isinstance(both.optimizer, keras.optimizers.SGD)
    assert isinstance(code_only.optimizer, keras.optimizers.Adam)
    l1 = common.build_autoencoder(common.config("l1", 1e-3), penalize="both")
    for name in ("code", "reconstruction"):
        regularizer = l1.get_layer(name).activity_regularizer
        assert isinstance(regularizer, keras.regularizers.L1)
        assert float(regularizer.l1) == pytest.approx(1e-3)
    sparse = common.build_autoencoder(
        common.config("sparse_dense", 0.5, rho=0.02), penalize="both"
    )
    assert isinstance(sparse.get_layer("reconstruction"), SparseDense)
    with pytest.raises(ValueError, match="penalize"):
        common.build_autoencoder(kl, penalize="decoder")
    with pytest.raises(ValueError, match="regularizer"):
        common.config("l2", 1.0)


def test_top_k_keeps_the_k_largest(common):
    x = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]], "float32")
    out = keras.ops.convert_to_numpy(common.TopK(2)(x))
    np.testing.assert_allclose(out, [[0.0, 0.9, 0.0, 0.7], [0.4, 0.3, 0, 0]])
    for k in (0, 2.0, True):
        with pytest.raises(ValueError, match="`k`"):
            common.TopK(k)


def test_top_k_code_of_the_autoencoder_has_k_active_units(common):
    model = common.build_autoencoder(common.config("topk", 3.0, k=3))
    images = np.random.default_rng(0).random((50, 784), "float32")
    codes, reconstructions = common.code_and_reconstruction(model, 16)(images)
    assert codes.shape == (50, 200) and reconstructions.shape == (50, 784)
    np.testing.assert_array_equal(np.count_nonzero(codes, axis=1), 3)
    dense_codes = keras.Model(model.input, model.get_layer("code").output)(
        images
    )
    dense_codes = keras.ops.convert_to_numpy(dense_codes)
    np.testing.assert_allclose(
        np.sort(codes, axis=1)[:, -3:],
        np.sort(dense_codes, axis=1)[:, -3:],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        reconstructions, model.predict(images, verbose=0), rtol=1e-5
    )


def test_describe_config(common):
    assert common.describe_config(common.config("l1", 1e-3)) == "L1 0.001"
    assert (
        common.describe_config(common.config("kl", 0.01, rho=0.05))
        == "KL rho=0.05 beta=0.01"
    )
    assert common.describe_config(common.config("topk", 10, k=10)) == (
        "top-k k=10"
    )


# Interleaved timing ----------------------------------------------------------


class FakeClock:
    """A clock that only moves when a fake candidate "runs"."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def __call__(self):
        return self.now

    def candidate(self, name, seconds):
        def call():
            self.calls.append(name)
            self.now += seconds

        return call


def test_interleave_rotates_the_order_and_times_each_call(common):
    clock = FakeClock()
    candidates = {
        name: clock.candidate(name, seconds)
        for name, seconds in [("a", 1.0), ("b", 2.0), ("c", 4.0)]
    }
    times = common.interleave(
        candidates, rounds=4, calls=2, warmup=1, clock=clock
    )
    assert clock.calls[:3] == ["a", "b", "c"]  # warm-up, untimed
    timed = clock.calls[3:]
    rounds = [timed[i : i + 6 : 2] for i in range(0, 24, 6)]
    assert rounds == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert all(timed[i] == timed[i + 1] for i in range(0, 24, 2))
    assert times == {"a": [1.0] * 4, "b": [2.0] * 4, "c": [4.0] * 4}


def test_paired_ratios_are_taken_round_by_round(common):
    times = {"kl": [2.0, 4.0, 6.0, 8.0], "l1": [1.0, 4.0, 2.0, 8.0]}
    ratio = common.paired_ratio(times, "kl", "l1")
    # Per-round ratios 2, 1, 3, 1: median 1.5, quartiles 1 and 2.25.
    assert ratio["median"] == pytest.approx(1.5)
    assert (ratio["q1"], ratio["q3"]) == pytest.approx((1.0, 2.25))
    assert ratio["of_medians"] == pytest.approx(5.0 / 3.0)
    lines = common.timing_lines(times, [("kl", "l1")])
    assert lines[1].split() == ["kl", "5000.000", "3000.000"]
    assert "median 1.500 (IQR 1.000 to 2.250" in lines[-1]


# The sweep's measurements ----------------------------------------------------


def test_linear_probe_on_separable_and_unseparable_data(sweep):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    centers = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x = centers[labels] + rng.normal(0, 0.5, (300, 2))
    separable = sweep.linear_probe_accuracy(
        x[:200], labels[:200], x[200:], labels[200:]
    )
    assert separable > 0.95
    noise = rng.normal(size=(300, 2))
    chance = sweep.linear_probe_accuracy(
        noise[:200], labels[:200], noise[200:], labels[200:]
    )
    assert chance < 0.5  # chance is 1/3


def test_sweeps_cover_every_method(sweep):
    for name, settings in sweep.SWEEPS.items():
        configs = sweep.run_configs(settings)
        assert configs[0]["regularizer"] == "none"
        kinds = {c["regularizer"] for c in configs}
        assert kinds == {"none", "l1", "kl", "topk"}, name
        rhos = {c["rho"] for c in configs if c["regularizer"] == "kl"}
        assert len(rhos) >= 2


# The report: summaries, the fairness rule, the verdict -----------------------


def fake_run(regularizer, strength, mean, mse, seed=0, dead=0, probe=0.8):
    rho = 0.05 if regularizer == "kl" else None
    return {
        "regularizer": regularizer,
        "strength": strength,
        "rho": rho,
        "k": int(strength) if regularizer == "topk" else None,
        "seed": seed,
        "test_mse": mse,
        "mean_activation": mean,
        "active_fraction": mean * 2,
        "dead_units": dead,
        "firing_rate_std": 0.01,
        "firing_rates": [mean] * 4,
        "probe_accuracy": probe,
        "step_ratio": 1.01,
        "train_seconds": 1.0,
    }


def fake_meta(dataset="fashion_mnist", seeds=(0,), quick=False, epochs=10):
    return {
        "command": ".venv/bin/python benchmarks/kl_vs_l1.py --dataset "
        + dataset,
        "dataset": dataset,
        "data": f"{dataset} (tiny, made by the test)",
        "quick": quick,
        "train_size": 20000 if quick else 60000,
        "test_size": 5000 if quick else 10000,
        "epochs": epochs,
        "batch_size": 256,
        "seeds": list(seeds),
        "raw_probe_accuracy": 0.81,
        "total_seconds": 12.0,
    }


def test_summary_across_seeds_keeps_the_spread(report):
    rows = report.summarize(
        [
            fake_run("l1", 1e-3, 0.06, 0.030, seed=0, dead=10),
            fake_run("l1", 1e-3, 0.04, 0.036, seed=1, dead=14),
            fake_run("l1", 1e-3, 0.05, 0.033, seed=2, dead=12),
            fake_run("kl", 0.01, 0.05, 0.020, seed=0),
        ]
    )
    assert [row["label"] for row in rows] == [
        "L1 0.001",
        "KL rho=0.05 beta=0.01",
    ]
    l1 = rows[0]
    assert l1["seeds"] == [0, 1, 2]
    assert l1["test_mse"] == report.Spread(
        pytest.approx(0.033), 0.030, 0.036, 3
    )
    assert l1["mean_activation"].mean == pytest.approx(0.05)
    assert (l1["dead_units"].low, l1["dead_units"].high) == (10, 14)
    assert len(l1["firing_rates"]) == 12  # pooled over the seeds
    assert report.fmt(l1["test_mse"], 5) == "0.03300 (0.03000–0.03600)"
    assert report.fmt(l1["dead_units"], 1) == "12.0 (10–14)"
    assert report.fmt(rows[1]["test_mse"], 5) == "0.02000"  # one seed


def test_fairness_rule_picks_the_best_mse_within_the_budget(report):
    runs_ = [
        fake_run("none", 0.0, 0.40, 0.010),
        # KL: the heavier run is nearest 0.05, the lighter one is within the
        # budget and reconstructs better: the rule picks the lighter one.
        fake_run("kl", 0.01, 0.054, 0.023),
        fake_run("kl", 0.1, 0.0499, 0.035),
        # L1: 0.056 is just over the budget (0.055) even with a better MSE.
        fake_run("l1", 3e-4, 0.056, 0.012),
        fake_run("l1", 1e-3, 0.039, 0.019),
        fake_run("l1", 3e-3, 0.017, 0.027),
    ]
    matched = report.matched_runs(report.summarize(runs_))
    assert matched["kl"]["strength"] == 0.01
    assert matched["l1"]["strength"] == 1e-3
    assert matched["topk"] is None  # no top-k run at all
    assert report.BUDGET == pytest.approx(0.055)
    assert report.matched_runs(report.summarize(runs_[:4]))["l1"] is None


def test_comparisons_are_ties_when_the_seed_ranges_overlap(report):
    def row(method, values):
        return {"regularizer": method, "test_mse": report.spread(values)}

    assert (
        report.compare(
            row("kl", [0.02, 0.021]), row("l1", [0.03, 0.031]), "test_mse", True
        )
        == "KL"
    )
    assert (
        report.compare(
            row("kl", [0.02, 0.021]),
            row("l1", [0.03, 0.031]),
            "test_mse",
            False,
        )
        == "L1"
    )
    assert (
        report.compare(
            row("kl", [0.02, 0.03]), row("l1", [0.025, 0.031]), "test_mse", True
        )
        == "tie"
    )
    assert report.compare(None, row("l1", [0.03]), "test_mse", True) is None


def dataset_runs(kl_mse, l1_mse, kl_probe, l1_probe):
    """Three seeds of a sweep where KL holds rho and keeps every unit."""
    out = []
    for seed in range(3):
        jitter = 0.0002 * seed
        out += [
            fake_run("none", 0.0, 0.45, 0.009 + jitter, seed, probe=0.82),
            fake_run("kl", 0.01, 0.052, kl_mse + jitter, seed, 0, kl_probe),
            fake_run("kl", 0.1, 0.050, kl_mse * 1.5, seed, 0, kl_probe - 0.02),
            fake_run("l1", 1e-4, 0.20, 0.011, seed, 0, 0.83),
            fake_run("l1", 1e-3, 0.040, l1_mse + jitter, seed, 120, l1_probe),
            fake_run("l1", 1e-2, 0.005, 0.056, seed, 160, 0.43),
            fake_run("topk", 10.0, 0.05, 0.063 + jitter, seed, 180, 0.46),
        ]
    return out


def write_results(path, meta, runs_):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": meta, "runs": runs_}, f)
    return str(path)


def two_datasets(tmp_path, quick=False):
    # Fashion-like: L1 reconstructs better; digits-like: KL does. KL's codes
    # classify better on both.
    return [
        write_results(
            tmp_path / "fashion" / "results.json",
            fake_meta("fashion_mnist", (0, 1, 2), quick),
            dataset_runs(0.023, 0.019, 0.81, 0.79),
        ),
        write_results(
            tmp_path / "digits" / "results.json",
            fake_meta("mnist_5k", (0, 1, 2), quick),
            dataset_runs(0.015, 0.021, 0.90, 0.80),
        ),
    ]


def test_report_separates_what_holds_from_what_depends(report, tmp_path):
    paths = two_datasets(tmp_path)
    out = tmp_path / "report"
    assert report.main(paths + ["--output-dir", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Smoke test" not in text
    assert report.FAIRNESS_RULE in text
    holds = text.split("Holds on every data set:")[1].split("Depends on")[0]
    depends = text.split("Depends on the data:")[1].split("## Recommend")[0]
    assert "Linear-probe accuracy" in holds and "**KL**" in holds
    assert "Fewer dead units at matched sparsity: **KL**" in holds
    assert "within a factor 2 of rho at every beta: **yes**" in holds
    assert "Reconstruction (test MSE) at matched sparsity" in depends
    assert "Fashion-MNIST: L1, mnist_5k: KL" in depends
    recommendation = text.split("## Recommendation")[1]
    assert "use `KLSparsityRegularizer(rho, beta)`" in recommendation
    assert "picked beta 0.01" in recommendation
    assert "prefer KL" in recommendation
    assert "L1 was better on Fashion-MNIST; KL on mnist_5k" in recommendation
    assert "Do not use the simple top-k" in recommendation
    # The matched rows, with their spread over the three seeds.
    assert "| KL rho=0.05 beta=0.01 | 0.02320 (0.02300–0.02340) |" in text
    assert "| L1 0.001 | 0.01920 (0.01900–0.01940) |" in text
    assert "tiny, made by the test" in text  # the data's description
    for name in ("pareto", "probe", "firing_rates"):
        for dataset in ("fashion_mnist", "mnist_5k"):
            png = out / f"{dataset}-{name}.png"
            assert png.stat().st_size > 1000
            assert f"]({dataset}-{name}.png)" in text


def test_report_when_l1_wins_everywhere_recommends_l1_for_reconstruction(
    report, tmp_path
):
    paths = [
        write_results(
            tmp_path / name / "results.json",
            fake_meta(name, (0, 1, 2)),
            dataset_runs(0.023, 0.019, 0.79, 0.81),
        )
        for name in ("fashion_mnist", "mnist_5k")
    ]
    assert report.main(paths + ["--output-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    recommendation = text.split("## Recommendation")[1]
    assert "use L1 and search its strength" in recommendation
    assert "prefer L1" in recommendation
    assert "Depends on the data:\n\n- nothing" in text


def test_quick_report_says_it_is_a_smoke_test(report, tmp_path):
    paths = two_datasets(tmp_path, quick=True)
    out = tmp_path / "quick-report"
    assert report.main(paths[:1] + ["--output-dir", str(out)]) == 0
    text = (out / "report.md").read_text()
    header = text.split("## ")[0]
    assert "**Smoke test, not a result.**" in header
    assert "seeds [0, 1, 2], 10 epochs, 20000 training and 5000 test" in header
    assert "docs/benchmarks.md" in header
    # The same fairness rule decides a quick run's verdict.
    assert "| KL rho=0.05 beta=0.01 | 0.02320" in text
    assert "L1 is better on test MSE" in text


def test_report_merges_seeds_run_separately(report, tmp_path):
    runs_ = dataset_runs(0.023, 0.019, 0.81, 0.79)
    first = write_results(
        tmp_path / "a" / "results.json",
        fake_meta(seeds=(0, 1)),
        [r for r in runs_ if r["seed"] < 2],
    )
    second = write_results(
        tmp_path / "b" / "results.json",
        fake_meta(seeds=(2,)),
        [r for r in runs_ if r["seed"] == 2],
    )
    (merged,) = report.load_results([first, second])
    assert merged["meta"]["seeds"] == [0, 1, 2]
    assert len(merged["runs"]) == len(runs_)
    assert merged["meta"]["total_seconds"] == 24.0
    with pytest.raises(runs.RunError, match="repeats seeds"):
        report.load_results([first, first])
    other = write_results(
        tmp_path / "c" / "results.json",
        fake_meta(seeds=(3,), epochs=30),
        [r for r in runs_ if r["seed"] == 2],
    )
    with pytest.raises(runs.RunError, match="epochs is 30"):
        report.load_results([first, other])


def test_pareto_front():
    import kl_vs_l1_plots as plots

    points = [(0.1, 5.0), (0.2, 3.0), (0.3, 4.0), (0.05, 6.0), (0.2, 3.5)]
    # (0.3, 4.0) is dominated by (0.2, 3.0); so is (0.2, 3.5).
    assert plots.pareto_front(points) == [3, 0, 1]
    assert plots.pareto_front([(1, 1), (1, 1)]) == [0, 1]
    assert plots.pareto_front([]) == []


# The convergence check -------------------------------------------------------


def test_converged_epoch_needs_a_whole_window_within_tolerance(convergence):
    curve = {
        "epochs": [10, 20, 30, 40, 50, 60],
        "test_mse": [0.05, 0.02, 0.0150, 0.0148, 0.0147, 0.0146],
        "mean_activation": [0.2, 0.08, 0.052, 0.051, 0.050, 0.050],
    }
    assert convergence.converged_epoch(curve, 30, 0.03, 0.005) == 30
    # The MSE tolerance alone would accept epoch 30; the activation's not.
    curve["mean_activation"][4] = 0.044
    assert convergence.converged_epoch(curve, 30, 0.03, 0.005) is None
    assert convergence.converged_epoch(curve, 30, 0.03, 0.01) == 30
    # No checkpoint has a whole window after it.
    assert convergence.converged_epoch(curve, 60, 0.5, 1.0) is None

    def run(regularizer, converged, activation):
        return {
            "regularizer": regularizer,
            "converged_epoch": converged,
            "mean_activation": [0.3, activation],
        }

    curves = [
        run("none", None, 0.01),  # the baseline never sets the epochs
        run("l1", None, 0.2),  # too weak to reach the budget
        run("l1", 30, 0.04),
        run("kl", 120, 0.055),  # just within the budget
        run("kl", 300, 0.056),  # just over it
        run("topk", 60, 0.05),
    ]
    assert convergence.recommended_epochs(curves) == 120
    curves[5]["converged_epoch"] = None
    assert convergence.recommended_epochs(curves) is None


# Command lines ---------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_option_and_shows_an_example(name, capsys):
    script = load_script(f"benchmarks/{name}.py", name)
    command_line = script.arguments()
    for action in command_line._actions:
        assert action.help, f"{name}: {action.option_strings} has no help"
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert f"example:\n  .venv/bin/python benchmarks/{name}.py" in text
    assert "python benchmarks/" not in text.replace(".venv/bin/python", "")


@pytest.mark.parametrize(
    "name, argv, fragment",
    [
        ("overhead", ["--rounds", "0"], "--rounds: must be >= 1, got 0"),
        ("overhead", ["--batch-size", "x"], "expected an integer, got 'x'"),
        ("monitor_overhead", ["--epochs", "0"], "--epochs: must be >= 1"),
        ("sync_cost", ["--steps", "-1"], "--steps: must be >= 1, got -1"),
        ("install_size", ["--extras", "cuda"], "invalid choice: 'cuda'"),
        ("kl_vs_l1", ["--epochs", "0"], "--epochs: must be >= 1, got 0"),
        ("kl_vs_l1", ["--batch-size", "0"], "--batch-size: must be >= 1"),
        ("kl_vs_l1", ["--seeds", "-1"], "--seeds: must be >= 0, got -1"),
        ("kl_vs_l1", ["--seeds", "1", "1"], "--seeds repeats a seed"),
        ("kl_vs_l1", ["--dataset", "cifar"], "invalid choice: 'cifar'"),
        ("convergence", ["--every", "7"], "not a multiple of --every 7"),
        ("convergence", ["--tolerance", "nan"], "must be > 0, got nan"),
        ("kl_vs_l1_report", [], "the following arguments are required"),
    ],
)
def test_bad_flags_get_one_line_and_status_2(name, argv, fragment, capsys):
    script = load_script(f"benchmarks/{name}.py", name)
    status, err = run_cli(script.main, argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and fragment in err, err
    assert ": error: " in err.splitlines()[0]


def test_bad_data_file_gets_one_line_and_status_2(sweep, tmp_path, capsys):
    write_idx_dataset(tmp_path / "data", n_train=8, n_test=4)
    images = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    images.write_bytes(b"not gzip at all")
    out = tmp_path / "out"
    argv = ["--data-dir", str(tmp_path / "data"), "--output-dir", str(out)]
    status, err = run_cli(sweep.main, argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and "cannot be read" in err, err
    assert err.startswith("error: ") and str(images) in err
    assert not out.exists()  # no empty folder left behind


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not a JSON file"),
        ('{"meta": {}}', "no 'meta' and 'runs'"),
        ('{"meta": {"dataset": "mnist"}, "runs": []}', "its meta lacks"),
    ],
)
def test_bad_results_file_gets_one_line_and_status_2(
    report, tmp_path, capsys, content, fragment
):
    path = tmp_path / "results.json"
    path.write_text(content)
    status, err = run_cli(report.main, [str(path)], capsys)
    assert status == 2
    assert err.count("\n") == 1 and fragment in err, err
    status, err = run_cli(report.main, [str(tmp_path / "nothing")], capsys)
    assert status == 2 and "cannot be read" in err


def test_existing_results_are_refused_without_overwrite(
    sweep, report, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    argv = ["--dataset", "mnist_5k", "--output-dir", str(out)]
    status, err = run_cli(sweep.main, argv, capsys)
    assert status == 2
    assert "already holds results (results.json)" in err
    assert "--overwrite" in err and err.count("\n") == 1
    assert (out / "results.json").read_text() == "{}"
    paths = two_datasets(tmp_path)
    assert report.main(paths[:1] + ["--output-dir", str(out)]) == 0
    status, err = run_cli(
        report.main, paths[:1] + ["--output-dir", str(out)], capsys
    )
    assert status == 2 and "already holds results" in err
    assert (
        report.main(paths[:1] + ["--output-dir", str(out), "--overwrite"]) == 0
    )


def test_report_can_go_to_another_folder_with_relative_links(report, tmp_path):
    paths = two_datasets(tmp_path)
    docs = tmp_path / "docs"
    argv = paths + [
        "--output-dir",
        str(docs / "images" / "benchmarks"),
        "--report",
        str(docs / "benchmarks.md"),
    ]
    assert report.main(argv) == 0
    text = (docs / "benchmarks.md").read_text()
    assert "](images/benchmarks/mnist_5k-pareto.png)" in text
    assert (docs / "images" / "benchmarks" / "mnist_5k-pareto.png").exists()
    assert not (docs / "images" / "benchmarks" / "report.md").exists()


def test_sync_cost_names_the_backends_it_measures(monkeypatch, capsys):
    script = load_script("benchmarks/sync_cost.py", "sync_cost")
    monkeypatch.setattr(script, "MEASUREMENTS", {"jax_pmap": None})
    status, err = run_cli(script.main, ["--rounds", "1"], capsys)
    assert status == 2
    assert f"no sync-cost measurement for the {keras.backend.backend()}" in err
    assert "['jax_pmap']" in err


def test_sync_cost_refuses_a_tf_strategy_on_another_backend(
    monkeypatch, capsys
):
    script = load_script("benchmarks/sync_cost.py", "sync_cost")
    monkeypatch.setattr(script.keras.backend, "backend", lambda: "torch")
    argv = ["--tf-strategy", "multi_worker"]
    status, err = run_cli(script.main, argv, capsys)
    assert status == 2
    assert err == (
        "error: --tf-strategy multi_worker is TensorFlow's; with the torch "
        "backend, set KERAS_BACKEND=tensorflow or drop it\n"
    )


def test_install_size_counts_each_file_once(tmp_path):
    script = load_script("benchmarks/install_size.py", "install_size")
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    os.link(tmp_path / "a", tmp_path / "sub" / "a-again")
    assert script.folder_bytes(str(tmp_path)) == 1024


def test_install_size_names_the_largest_packages(tmp_path):
    script = load_script("benchmarks/install_size.py", "install_size")
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for name, size in [("big", 3 * 2**20), ("small", 2**20), ("mid", 2**21)]:
        (site / name).mkdir(parents=True)
        (site / name / "f").write_bytes(b"z" * size)
    (site / "big-1.0.dist-info").mkdir()
    (site / "big-1.0.dist-info" / "RECORD").write_bytes(b"r" * 2**22)
    assert script.largest_packages(str(tmp_path), 2) == "big 3, mid 2"


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend,engine",
    [
        ("tensorflow", []),
        ("tensorflow", ["--tf-strategy", "multi_worker"]),
        ("torch", []),
    ],
)
def test_sync_cost_measures_two_replicas(backend, engine, subprocess_env):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    argv = engine + [
        "--rounds",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--batch-size",
        "8",
    ]
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "sync_cost.py"), *argv],
        env={**subprocess_env, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    setting = {
        "tensorflow": "MirroredStrategy, 2 replicas",
        "multi_worker": "MultiWorkerMirroredStrategy, 2 worker processes",
        "torch": "DistributedDataParallel, 2 processes",
    }
    assert setting[engine[-1] if engine else backend] in result.stdout
    assert "global batch 8, 2 interleaved rounds of 1 steps" in result.stdout
    assert "ratio synchronized / per_replica: median" in result.stdout
    # Only the first process prints the figures.
    assert result.stdout.count("ratio synchronized") == 1
    assert "all_reduce of 201 floats" in result.stdout
    assert "all_reduce of 785 floats" in result.stdout


def test_overhead_prints_every_variant_and_ratio(capsys):
    script = load_script("benchmarks/overhead.py", "overhead")
    argv = ["--rounds", "2", "--steps", "1", "--warmup", "1"]
    assert script.main(argv + ["--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    variants = ["none", "l1", "kl", "sparse_dense"]
    ratios = list(script.RATIOS)
    if keras.backend.backend() == "torch":
        variants.append("kl_keras_ops")
        ratios += script.TORCH_RATIOS
    for variant in variants:
        assert f"\n{variant} " in out
    assert ("kl_keras_ops" in out) == ("kl_keras_ops" in variants)
    for numerator, denominator in ratios:
        assert f"ratio {numerator} / {denominator}: median" in out
    assert "2 interleaved rounds of 1 steps" in out


# End to end ------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_quick_sweep_and_report_end_to_end_on_tiny_idx_data(
    sweep, report, tmp_path, capsys
):
    # 32 steps an epoch: enough calls between the traces of successive
    # models that TensorFlow's retracing detector stays quiet unless some
    # function really is retraced call after call.
    write_idx_dataset(tmp_path / "data", n_train=512, n_test=32)
    out = tmp_path / "out"
    tf_logger = logging.getLogger("tensorflow")
    records, level = Records(), tf_logger.level
    tf_logger.addHandler(records)
    tf_logger.setLevel(logging.WARNING)
    try:
        code = sweep.main(
            [
                "--data-dir",
                str(tmp_path / "data"),
                "--quick",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--timing-rounds",
                "1",
                "--seeds",
                "0",
                "1",
                "--output-dir",
                str(out),
            ]
        )
    finally:
        tf_logger.removeHandler(records)
        tf_logger.setLevel(level)
    assert code == 0
    assert not [m for m in records.messages if "retracing" in m]
    printed = capsys.readouterr().out
    assert "(as --dataset fashion_mnist): 512 training and 32 test" in printed
    assert "--quick: a smoke test" in printed
    assert sorted(os.listdir(out)) == ["results.json"]
    with open(out / "results.json") as f:
        saved = json.load(f)
    configs = sweep.run_configs(sweep.SWEEPS["quick"])
    assert len(saved["runs"]) == 2 * len(configs)
    assert saved["meta"]["quick"] is True
    assert saved["meta"]["seeds"] == [0, 1]
    assert saved["meta"]["train_size"] == 512
    assert saved["meta"]["command"].startswith(
        ".venv/bin/python benchmarks/kl_vs_l1.py --data-dir"
    )
    for run in saved["runs"]:
        assert len(run["firing_rates"]) == 200
        for key in ("test_mse", "mean_activation", "probe_accuracy"):
            assert np.isfinite(run[key]), key
        dead = sum(rate == 0 for rate in run["firing_rates"])
        assert run["dead_units"] >= dead
        if run["regularizer"] == "topk":
            assert run["active_fraction"] <= run["k"] / 200
    assert 0 <= saved["meta"]["raw_probe_accuracy"] <= 1
    assert report.main([str(out / "results.json")]) == 0
    text = (out / "report.md").read_text()
    assert text.split("## ")[0].count("**Smoke test, not a result.**") == 1
    assert "seeds [0, 1], 1 epochs, 512 training and 32 test images" in text
    assert f"above `keras_sparsity.ACTIVE_THRESHOLD` ({ACTIVE_THRESHOLD})" in (
        text
    )
    assert "## Recommendation" in text


def fake_convergence(path, converged, recommended):
    """A convergence.json whose runs converge at the given epochs."""
    curves = []
    for (regularizer, strength, rho), epoch in converged.items():
        epochs = list(range(10, 110, 10))
        curves.append(
            {
                "regularizer": regularizer,
                "strength": strength,
                "rho": rho,
                "k": None,
                "epochs": epochs,
                "test_mse": [0.1 / e for e in epochs],
                "mean_activation": [0.3 if regularizer == "none" else 0.05]
                * len(epochs),
                "converged_epoch": epoch,
            }
        )
    meta = {
        "command": ".venv/bin/python benchmarks/convergence.py",
        "dataset": "mnist_5k",
        "data": "mnist_5k (made by the test)",
        "seed": 0,
        "batch_size": 256,
        "epochs": 100,
        "every": 10,
        "window": 50,
        "tolerance": 0.03,
        "activation_tolerance": 0.005,
        "total_seconds": 5.0,
    }
    with open(path, "w") as f:
        json.dump(
            {"meta": meta, "runs": curves, "recommended_epochs": recommended},
            f,
        )
    return str(path)


CHECKED_RUNS = {
    ("none", 0.0, None): None,
    ("kl", 0.1, 0.05): 40,
    ("l1", 1e-3, None): 30,
}


def test_report_says_how_the_epochs_were_chosen(report, tmp_path):
    paths = two_datasets(tmp_path)  # mnist_5k trained 10 epochs
    check = fake_convergence(tmp_path / "check.json", CHECKED_RUNS, 40)
    out = tmp_path / "out"
    argv = paths + ["--convergence", check, "--output-dir", str(out)]
    assert report.main(argv) == 0
    text = (out / "report.md").read_text()
    assert "### How many epochs: mnist_5k" in text
    # Its last 50 epochs take the test MSE from 0.1 / 50 to 0.1 / 100.
    assert (
        "| KL rho=0.05 beta=0.1 | yes | 40 | 100 | 0.00100 | -50.0% | "
        "0.0500 | +0.0000 |"
    ) in text
    assert "| none |  | not converged | 100 | 0.00100 | -50.0% | 0.3000 |" in (
        text
    )
    assert (
        "Every run within the budget (2 runs) converged by epoch **40** "
        "(the slowest: KL rho=0.05 beta=0.1)"
    ) in text
    assert (
        "| 100 | KL rho=0.05 beta=0.1 | 0.00100 (0.0500) | L1 0.001 | "
        "0.00100 (0.0500) | tie |"
    ) in text
    assert "10 epochs is fewer than the 40 the convergence check asks" in text
    assert "No convergence check was run on this data set" in text  # Fashion
    assert "](mnist_5k-convergence.png)" in text
    assert (out / "mnist_5k-convergence.png").stat().st_size > 1000
    assert ".venv/bin/python benchmarks/convergence.py  # 5 s" in text


def test_report_flags_a_comparison_that_has_not_converged(report, tmp_path):
    paths = two_datasets(tmp_path)
    check = fake_convergence(tmp_path / "check.json", CHECKED_RUNS, None)
    out = tmp_path / "out"
    argv = paths + ["--convergence", check, "--output-dir", str(out)]
    assert report.main(argv) == 0
    text = (out / "report.md").read_text()
    mnist_5k = text.split("## mnist_5k")[1]
    assert "**Not converged:** the convergence check found runs" in mnist_5k
    assert "mnist_5k: KL (not converged)" in text
    recommendation = text.split("## Recommendation")[1]
    assert "On mnist_5k the reconstruction comparison had not converged" in (
        recommendation
    )
    # The fake curves' activations are flat: the sparsity had settled.
    assert "mean activations of the runs within the budget had settled" in (
        recommendation
    )
