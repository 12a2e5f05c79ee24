"""The benchmarks' machinery on tiny data the tests write (not timings), and
the published benchmark page against the published results."""

import glob
import json
import logging
import os
import re
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, SparseDense

import runs
from conftest import ROOT, kl_penalty_reference, load_script, run_cli
from test_data import write_idx_dataset

BENCHMARKS = os.path.join(ROOT, "benchmarks")
if BENCHMARKS not in sys.path:
    # The benchmarks' shared modules, as the scripts see them.
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
PUBLISHED = os.path.join(ROOT, "docs", "images", "benchmarks")
NAMES = ("Fashion-MNIST", "mnist_5k")


@pytest.fixture(scope="module")
def common():
    import common

    return common


@pytest.fixture(scope="module")
def autoencoder():
    import autoencoder

    return autoencoder


@pytest.fixture(scope="module")
def sweep():
    return load_script("benchmarks/kl_vs_l1.py", "kl_vs_l1")


@pytest.fixture(scope="module")
def report():
    return load_script("benchmarks/kl_vs_l1_report.py", "kl_vs_l1_report")


@pytest.fixture(scope="module")
def convergence():
    return load_script("benchmarks/convergence.py", "convergence")


# The seed autoencoder and its penalties -------------------------------------


def test_every_variant_is_the_seed_autoencoder(common, autoencoder):
    for run, code_class, penalty in [
        (common.config("none"), keras.layers.Dense, type(None)),
        (common.config("l1", 1e-3), keras.layers.Dense, keras.regularizers.L1),
        (common.config("kl", 0.5, rho=0.02), None, KLSparsityRegularizer),
        (common.config("peer", 0.5, rho=0.02), None, autoencoder.PeerKL),
        (common.config("sparse_dense", 0.5, rho=0.02), SparseDense, None),
        (common.config("topk", 7.0, k=7), keras.layers.Dense, type(None)),
    ]:
        model = autoencoder.build_autoencoder(run, penalize="both")
        weights = model.trainable_weights
        assert sum(int(np.prod(w.shape)) for w in weights) == 314_584, run
        for name in ("code", "reconstruction"):
            layer = model.get_layer(name)
            assert type(layer) is (code_class or keras.layers.Dense)
            assert layer.activation is keras.activations.sigmoid
            if penalty is not None:
                assert type(layer.activity_regularizer) is penalty, run
        assert model.output.shape == (None, 784)
    kl = autoencoder.build_autoencoder(common.config("kl", 0.5, rho=0.02))
    penalty = kl.get_layer("code").activity_regularizer
    assert (penalty.rho, penalty.beta) == (0.02, 0.5)
    assert kl.get_layer("reconstruction").activity_regularizer is None
    assert isinstance(kl.optimizer, keras.optimizers.Adam)
    sgd = autoencoder.build_autoencoder(common.config(), optimizer="sgd")
    assert isinstance(sgd.optimizer, keras.optimizers.SGD)
    with pytest.raises(ValueError, match="penalize"):
        autoencoder.build_autoencoder(common.config(), penalize="decoder")
    with pytest.raises(ValueError, match="regularizer"):
        common.config("l2", 1.0)


def test_peer_port_is_the_kl_penalty_of_the_formula(autoencoder):
    # The peer overhead.py times the library against does the same work:
    # its loss in `layer.losses` is the penalty, on any Keras version.
    x = np.random.default_rng(0).random((64, 200)).astype("float32") * 0.2
    reference = kl_penalty_reference(x, 0.05, 3.0)
    losses = {}
    for name, penalty in [
        ("peer", autoencoder.PeerKL(0.05, 3.0)),
        ("library", KLSparsityRegularizer(0.05, 3.0)),
    ]:
        layer = keras.layers.Activation("linear", activity_regularizer=penalty)
        layer(x)
        losses[name] = float(keras.ops.convert_to_numpy(sum(layer.losses)))
    assert losses["peer"] == pytest.approx(reference, rel=1e-5)
    assert losses["library"] == pytest.approx(reference, rel=1e-5)
    assert autoencoder.PeerKL(0.05, 3.0).get_config() == {
        "rho": 0.05,
        "beta": 3.0,
    }


def test_top_k_keeps_the_k_largest(autoencoder):
    x = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]], "float32")
    out = keras.ops.convert_to_numpy(autoencoder.TopK(2)(x))
    np.testing.assert_allclose(out, [[0.0, 0.9, 0.0, 0.7], [0.4, 0.3, 0, 0]])
    for k in (0, 2.0, True):
        with pytest.raises(ValueError, match="`k`"):
            autoencoder.TopK(k)


def test_top_k_code_of_the_autoencoder_has_k_active_units(common, autoencoder):
    model = autoencoder.build_autoencoder(common.config("topk", 3.0, k=3))
    images = np.random.default_rng(0).random((50, 784), "float32")
    apply = autoencoder.code_and_reconstruction(model, 16)
    codes, reconstructions = apply(images)
    assert codes.shape == (50, 200) and reconstructions.shape == (50, 784)
    np.testing.assert_array_equal(np.count_nonzero(codes, axis=1), 3)
    dense = keras.Model(model.input, model.get_layer("code").output)(images)
    np.testing.assert_allclose(
        np.sort(codes, axis=1)[:, -3:],
        np.sort(keras.ops.convert_to_numpy(dense), axis=1)[:, -3:],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        reconstructions, model.predict(images, verbose=0), rtol=1e-5
    )


def test_describe_config(common):
    assert common.describe_config(common.config("l1", 1e-3)) == "L1 0.001"
    kl = common.config("kl", 0.01, rho=0.05)
    assert common.describe_config(kl) == "KL rho=0.05 beta=0.01"
    peer = common.config("peer", 3.0, rho=0.01)
    assert common.describe_config(peer) == "peer KL rho=0.01 beta=3"
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


def assert_ratio_of(printed, numerator, denominator):
    """A printed ratio (3 decimals) is the ratio of two printed times (3
    decimals), within what the rounding of all three allows."""
    ratio = numerator / denominator
    slack = ratio * 5e-4 * (1 / numerator + 1 / denominator) + 5e-4
    assert abs(printed - ratio) <= slack * 1.01, (printed, ratio)


def test_overhead_times_every_variant_and_patches_nothing(capsys):
    import keras_sparsity.regularizers as library

    before = dict(vars(library))
    script = load_script("benchmarks/overhead.py", "overhead")
    argv = ["--rounds", "3", "--steps", "1", "--warmup", "1"]
    assert script.main(argv + ["--batch-size", "8"]) == 0
    assert dict(vars(library)) == before
    out = capsys.readouterr().out
    assert "3 interleaved rounds of 1 steps" in out
    medians = {
        line.split()[0]: float(line.split()[1])
        for line in out.splitlines()
        if line and line.split()[0] in script.VARIANTS
    }
    assert sorted(medians) == sorted(
        ["none", "l1", "kl", "peer", "sparse_dense"]
    )
    for numerator, denominator in script.RATIOS:
        line = next(
            line
            for line in out.splitlines()
            if line.startswith(f"ratio {numerator} / {denominator}: median")
        )
        of_medians = float(line.split("ratio of medians ")[1].rstrip(")"))
        assert_ratio_of(of_medians, medians[numerator], medians[denominator])
    assert ("kl", "l1") in script.RATIOS and ("kl", "peer") in script.RATIOS
    assert "kl_keras_ops" not in out


def test_monitor_overhead_times_both_models(capsys):
    script = load_script("benchmarks/monitor_overhead.py", "monitor_overhead")
    argv = ["--epochs", "2", "--samples", "64", "--monitor-samples", "16"]
    assert script.main(argv + ["--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "64 images per epoch, batch 32, monitor on 16 images, 2 timed" in out
    medians = {
        line.split()[0]: float(line.split()[1])
        for line in out.splitlines()
        if line.split()[:1] in (["plain"], ["monitored"])
    }
    ratio = out.split("ratio monitored / plain: median ")[1]
    of_medians = float(ratio.split("ratio of medians ")[1].split(")")[0])
    assert_ratio_of(of_medians, medians["monitored"], medians["plain"])


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


def test_sweeps_cover_every_method(common):
    for name, settings in common.SWEEPS.items():
        configs = common.run_configs(settings)
        assert configs[0]["regularizer"] == "none"
        kinds = {c["regularizer"] for c in configs}
        assert kinds == {"none", "l1", "kl", "topk"}, name
        rhos = {c["rho"] for c in configs if c["regularizer"] == "kl"}
        assert len(rhos) >= 2


# The report: summaries, the fairness rule, the tables ------------------------


def fake_run(regularizer, strength, mean, mse, seed=0, dead=0, probe=0.8):
    return {
        "regularizer": regularizer,
        "strength": strength,
        "rho": 0.05 if regularizer == "kl" else None,
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
        "command": f".venv/bin/python benchmarks/kl_vs_l1.py --seeds {seeds}",
        "dataset": dataset,
        "data": f"{dataset} (tiny, made by the test)",
        "quick": quick,
        "train_size": 60000,
        "test_size": 10000,
        "epochs": epochs,
        "batch_size": 256,
        "seeds": list(seeds),
        "raw_probe_accuracy": 0.81,
        "total_seconds": 12.0,
        "versions": {"keras": "3.x"},
    }


def dataset_runs(kl_mse, l1_mse):
    """Three seeds of a sweep where KL holds rho and keeps every unit."""
    out = []
    for seed in range(3):
        jitter = 0.0002 * seed
        out += [
            fake_run("none", 0.0, 0.45, 0.009 + jitter, seed, probe=0.82),
            fake_run("kl", 0.01, 0.052, kl_mse + jitter, seed, 0, 0.81),
            fake_run("kl", 0.1, 0.050, kl_mse * 1.5, seed, 0, 0.79),
            fake_run("l1", 1e-4, 0.20, 0.011, seed, 0, 0.83),
            fake_run("l1", 1e-3, 0.040, l1_mse + jitter, seed, 120, 0.8),
            fake_run("topk", 10.0, 0.05, 0.063 + jitter, seed, 180, 0.46),
        ]
    return out


def write_json(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(content, f)
    return str(path)


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
    assert l1["test_mse"] == report.Spread(
        pytest.approx(0.033), 0.030, 0.036, 3
    )
    assert l1["mean_activation"].mean == pytest.approx(0.05)
    assert (l1["dead_units"].low, l1["dead_units"].high) == (10, 14)
    assert len(l1["firing_rates"]) == 12  # pooled over the seeds
    assert report.fmt(l1["test_mse"], 5) == "0.03300 (0.03000–0.03600)"
    assert report.fmt(l1["dead_units"], 1) == "12.0 (10–14)"
    assert report.fmt(rows[1]["test_mse"], 5) == "0.02000"  # one seed


def test_fairness_rule_picks_the_best_mse_within_the_budget(report, common):
    runs_ = [
        fake_run("none", 0.0, 0.01, 0.001),  # never a pick
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
    assert common.BUDGET == pytest.approx(0.055)
    assert report.matched_runs(report.summarize(runs_[:4]))["l1"] is None


def test_report_tables_from_two_data_sets(report, tmp_path):
    paths = [
        write_json(
            tmp_path / name / "results.json",
            {"meta": fake_meta(name, (0, 1, 2)), "runs": dataset_runs(*mse)},
        )
        for name, mse in [
            ("fashion_mnist", (0.023, 0.019)),
            ("mnist_5k", (0.015, 0.021)),
        ]
    ]
    out = tmp_path / "report"
    assert report.main(paths + ["--output-dir", str(out)]) == 0
    text = (out / "report.md").read_text()
    fashion, digits = (sections(text)[name] for name in NAMES)
    # The matched rows with their spread over the three seeds, the
    # unpenalized baseline last; runs over the budget are not picked.
    matched = fashion.split("### Fashion-MNIST: all runs")[0]
    rows = [
        line.split(" | ")[0]
        for line in matched.splitlines()
        if line[:2] == "| "
    ]
    assert rows[1:] == [
        "| KL rho=0.05 beta=0.01",
        "| L1 0.001",
        "| top-k k=10",
        "| none",
    ]
    assert "| KL rho=0.05 beta=0.01 | 0.02320 (0.02300–0.02340) |" in fashion
    assert "| L1 0.001 | 0.02120 (0.02100–0.02140) | 0.0400 |" in digits
    assert "| L1 0.0001 | 0.01100 | 0.2000 |" in digits
    assert "| 1.010 |  |" in digits and "| 1.010 | yes |" in digits
    assert "a probe on the raw pixels: 0.8100." in digits
    assert "tiny, made by the test" in text and "Smoke test" not in text
    for name in ("pareto", "probe", "firing_rates"):
        for dataset in ("fashion_mnist", "mnist_5k"):
            assert (out / f"{dataset}-{name}.png").stat().st_size > 1000
            assert f"]({dataset}-{name}.png)" in text
    quick = write_json(
        tmp_path / "quick" / "results.json",
        {
            "meta": fake_meta("mnist_5k", quick=True),
            "runs": dataset_runs(0.1, 0.1),
        },
    )
    assert report.main([quick]) == 0
    header = (tmp_path / "quick" / "report.md").read_text().split("## ")[0]
    assert "**Smoke test (--quick runs): mnist_5k.**" in header


def test_report_merges_seeds_run_separately(report, tmp_path):
    runs_ = dataset_runs(0.023, 0.019)
    first = write_json(
        tmp_path / "a" / "results.json",
        {
            "meta": fake_meta(seeds=(0, 1)),
            "runs": [r for r in runs_ if r["seed"] < 2],
        },
    )
    second = write_json(
        tmp_path / "b" / "results.json",
        {
            "meta": fake_meta(seeds=(2,)),
            "runs": [r for r in runs_ if r["seed"] == 2],
        },
    )
    (merged,) = report.load_results([first, second])
    assert merged["meta"]["seeds"] == [0, 1, 2]
    assert len(merged["runs"]) == len(runs_)
    assert merged["meta"]["total_seconds"] == 24.0
    with pytest.raises(runs.RunError, match="repeats seeds"):
        report.load_results([first, first])
    other = write_json(
        tmp_path / "c" / "results.json",
        {"meta": fake_meta(seeds=(3,), epochs=30), "runs": runs_[:1]},
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


def fake_convergence(converged, recommended):
    """A convergence.json's content whose runs converge at given epochs."""
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
    return {"meta": meta, "runs": curves, "recommended_epochs": recommended}


CHECKED_RUNS = {
    ("none", 0.0, None): None,
    ("kl", 0.1, 0.05): 40,
    ("l1", 1e-3, None): 30,
}


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


def test_report_tables_the_convergence_check(report, tmp_path):
    results = write_json(
        tmp_path / "digits" / "results.json",
        {
            "meta": fake_meta("mnist_5k", (0,)),
            "runs": dataset_runs(0.015, 0.02),
        },
    )
    check = write_json(
        tmp_path / "check.json", fake_convergence(CHECKED_RUNS, 40)
    )
    out = tmp_path / "out"
    argv = [results, "--convergence", check, "--output-dir", str(out)]
    assert report.main(argv) == 0
    text = (out / "report.md").read_text()
    # Its last 50 epochs take the test MSE from 0.1 / 50 to 0.1 / 100.
    assert (
        "| KL rho=0.05 beta=0.1 | yes | 40 | 100 | 0.00100 | -50.0% | "
        "0.0500 | +0.0000 |"
    ) in text
    assert "| none |  | not converged | 100 | 0.00100 | -50.0% | 0.3000 |" in (
        text
    )
    assert (
        "Runs within the budget: 2, converged: 2; recommended epochs: 40."
        in (text)
    )
    assert "](mnist_5k-convergence.png)" in text
    assert (out / "mnist_5k-convergence.png").stat().st_size > 1000
    assert ".venv/bin/python benchmarks/convergence.py  # 5 s" in text


# Command lines and bad input -------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_option_and_shows_an_example(name, capsys):
    script = load_script(f"benchmarks/{name}.py", name)
    for action in script.arguments()._actions:
        assert action.help, f"{name}: {action.option_strings} has no help"
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert f"example:\n  .venv/bin/python benchmarks/{name}.py" in text


def test_help_and_bad_flags_answer_before_keras_starts(subprocess_env):
    # One fresh process runs every script's --help and a bad flag, as
    # `python benchmarks/<name>.py` does; none of them may start Keras.
    cases = [(name, ["--help"], 0) for name in SCRIPTS]
    cases += [(name, ["--no-such-flag"], 2) for name in SCRIPTS]
    cases += [("kl_vs_l1", ["--seeds", "1", "1"], 2)]
    cases += [("sync_cost", ["--rounds", "1"], 2)]
    driver = f"""
import contextlib, io, json, os, runpy, sys
sys.path.insert(0, {BENCHMARKS!r})
os.environ["KERAS_BACKEND"] = "jax"  # sync_cost measures no JAX engine
for name, argv, _ in {cases!r}:
    sys.argv = [name + ".py", *argv]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), \\
            contextlib.redirect_stderr(err):
        try:
            runpy.run_path(os.path.join({BENCHMARKS!r}, name + ".py"),
                           run_name="__main__")
            code = None
        except SystemExit as exit:
            code = exit.code
    print(json.dumps([name, code, err.getvalue()]))
heavy = ("keras", "tensorflow", "jax", "torch", "matplotlib")
print(json.dumps([m for m in heavy if m in sys.modules]))
"""
    result = subprocess.run(
        [sys.executable, "-c", driver],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *answers, imported = map(json.loads, result.stdout.splitlines())
    assert imported == []
    for (name, argv, expected), (_, code, err) in zip(cases, answers):
        assert code == expected, (name, argv, err)
        if expected == 2:
            assert err.count("\n") == 1 and ": error: " in err, (name, err)
    assert "repeats a seed" in answers[-2][2]
    assert "no sync-cost measurement for KERAS_BACKEND=jax" in answers[-1][2]
    assert "['tensorflow', 'torch']" in answers[-1][2]


@pytest.mark.parametrize(
    "name, argv, fragment",
    [
        ("overhead", ["--rounds", "0"], "--rounds: must be >= 1, got 0"),
        ("overhead", ["--batch-size", "x"], "expected an integer, got 'x'"),
        ("monitor_overhead", ["--epochs", "0"], "--epochs: must be >= 1"),
        ("sync_cost", ["--steps", "-1"], "--steps: must be >= 1, got -1"),
        ("sync_cost", ["--batch-size", "7"], "does not split into 2 equal"),
        ("install_size", ["--extras", "cuda"], "invalid choice: 'cuda'"),
        ("kl_vs_l1", ["--epochs", "0"], "--epochs: must be >= 1, got 0"),
        ("kl_vs_l1", ["--seeds", "-1"], "expected an integer >= 0: '-1'"),
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


@pytest.mark.parametrize("name", ["kl_vs_l1", "convergence"])
def test_bad_data_file_gets_one_line_and_status_2(name, tmp_path, capsys):
    script = load_script(f"benchmarks/{name}.py", name)
    write_idx_dataset(tmp_path / "data", n_train=8, n_test=4)
    images = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    images.write_bytes(b"not gzip at all")
    out = tmp_path / "out"
    argv = ["--data-dir", str(tmp_path / "data"), "--output-dir", str(out)]
    status, err = run_cli(script.main, argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and "cannot be read" in err, err
    assert err.startswith("error: ") and str(images) in err
    assert not out.exists()  # no empty folder left behind


def broken(content, where, value):
    """`content` with `value` put at the path `where` (keys and indexes)."""
    content = json.loads(json.dumps(content))
    *parents, last = where
    target = content
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return content


RESULTS = {"meta": fake_meta(), "runs": dataset_runs(0.02, 0.02)[:3]}
CHECK = fake_convergence(CHECKED_RUNS, 40)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not a JSON file"),
        ([], "no 'meta' and 'runs'"),
        (broken(RESULTS, ["meta", "epochs"], KeyError), "meta lacks 'epochs'"),
        (
            broken(RESULTS, ["meta", "seeds"], "0"),
            "seeds is '0', expected ints",
        ),
        (broken(RESULTS, ["meta", "quick"], 1), "quick is 1, expected bool"),
        (broken(RESULTS, ["meta", "versions"], "x"), "expected dict"),
        (broken(RESULTS, ["meta", "command"], 5), "command is 5, expected str"),
        (broken(RESULTS, ["runs"], {}), "runs are not a non-empty list"),
        (broken(RESULTS, ["runs"], []), "runs are not a non-empty list"),
        (broken(RESULTS, ["runs", 1], 3), "run 1 is not a JSON object"),
        (broken(RESULTS, ["runs", 0, "test_mse"], "0.1"), "expected number"),
        (
            broken(RESULTS, ["runs", 0, "test_mse"], float("nan")),
            "test_mse is nan, expected number",
        ),
        (broken(RESULTS, ["runs", 2, "seed"], True), "seed is True"),
        (
            broken(RESULTS, ["runs", 1, "firing_rates"], [0.1, None]),
            "firing_rates is [0.1, None], expected numbers",
        ),
        (broken(RESULTS, ["runs", 0, "regularizer"], "l2"), "expected penalty"),
        (
            broken(RESULTS, ["runs", 1, "rho"], None),
            "run 1 is KL without a rho",
        ),
    ],
)
def test_bad_results_file_gets_one_line_and_status_2(
    report, tmp_path, capsys, content, fragment
):
    path = tmp_path / "results.json"
    path.write_text(
        content if isinstance(content, str) else json.dumps(content)
    )
    status, err = run_cli(report.main, [str(path)], capsys)
    assert status == 2
    assert err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (broken(CHECK, ["meta", "window"], KeyError), "meta lacks 'window'"),
        (broken(CHECK, ["meta", "dataset"], "../x"), "expected name"),
        (broken(CHECK, ["meta", "total_seconds"], None), "expected number"),
        (broken(CHECK, ["runs", 1, "epochs"], [10, 20]), "unequal lengths"),
        (broken(CHECK, ["runs", 1, "converged_epoch"], 45), "not measured"),
        (broken(CHECK, ["recommended_epochs"], "40"), "not an epoch or null"),
    ],
)
def test_bad_convergence_file_gets_one_line_and_status_2(
    report, tmp_path, capsys, content, fragment
):
    results = write_json(tmp_path / "results.json", RESULTS)
    check = write_json(tmp_path / "check.json", content)
    argv = [results, "--convergence", check]
    status, err = run_cli(report.main, argv, capsys)
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
    results = write_json(tmp_path / "r" / "results.json", RESULTS)
    argv = [results, "--output-dir", str(out)]
    assert report.main(argv) == 0
    status, err = run_cli(report.main, argv, capsys)
    assert status == 2 and "already holds results" in err
    assert report.main(argv + ["--overwrite"]) == 0


def test_sync_cost_times_the_synchronized_against_the_per_replica_penalty():
    script = load_script("benchmarks/sync_cost.py", "sync_cost")
    models = script.penalized_autoencoders()
    assert list(models) == ["synchronized", "per_replica"]
    for name, synchronized in [("synchronized", True), ("per_replica", False)]:
        for layer in ("code", "reconstruction"):
            penalty = models[name].get_layer(layer).activity_regularizer
            assert type(penalty) is KLSparsityRegularizer
            assert penalty.cross_replica is synchronized, (name, layer)
            assert (penalty.rho, penalty.beta) == (0.01, 3.0)
    # The builder passes it to SparseDense too, and refuses it elsewhere.
    build, config = script.build_autoencoder, script.common.config
    dense = build(config("sparse_dense", 3.0, rho=0.01), cross_replica=False)
    assert dense.get_layer("code").get_config()["cross_replica"] is False
    with pytest.raises(ValueError, match="cross_replica=False is for"):
        build(config("l1", 1e-3), cross_replica=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, setting",
    [
        ("tensorflow", "MultiWorkerMirroredStrategy, 2 worker processes"),
        ("torch", "DistributedDataParallel, 2 processes"),
    ],
)
def test_sync_cost_measures_two_processes(backend, setting, subprocess_env):
    # Each engine runs once, in the test session of its backend.
    if keras.backend.backend() != backend:
        pytest.skip(f"the {backend} engine runs with KERAS_BACKEND={backend}")
    argv = ["--rounds", "2", "--steps", "1", "--warmup", "1", "--batch-size"]
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "sync_cost.py"), *argv, "2"],
        env={**subprocess_env, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert setting in result.stdout
    assert "global batch 2, 2 interleaved rounds of 1 steps" in result.stdout
    assert "ratio synchronized / per_replica: median" in result.stdout
    # Only the first process prints the figures.
    assert result.stdout.count("ratio synchronized") == 1
    assert "all_reduce of 201 floats" in result.stdout
    assert "all_reduce of 785 floats" in result.stdout


def test_install_size_counts_each_file_once(tmp_path):
    script = load_script("benchmarks/install_size.py", "install_size")
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    os.link(tmp_path / "a", tmp_path / "sub" / "a-again")
    assert script.folder_bytes(str(tmp_path)) == 1024
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    for name, size in [("big", 3 * 2**20), ("small", 2**20), ("mid", 2**21)]:
        (site / name).mkdir(parents=True)
        (site / name / "f").write_bytes(b"z" * size)
    (site / "big-1.0.dist-info").mkdir()
    (site / "big-1.0.dist-info" / "RECORD").write_bytes(b"r" * 2**22)
    assert script.largest_packages(str(tmp_path / "env"), 2) == "big 3, mid 2"


def test_install_size_installs_pytorchs_cpu_build_first(monkeypatch, capsys):
    # pip is faked: what matters is what install_size asks it to install.
    script = load_script("benchmarks/install_size.py", "install_size")
    commands, errors = [], {}

    def fake_run(command, **kwargs):
        commands.append(command)
        error = errors.get(command[-1], "")
        return subprocess.CompletedProcess(command, int(bool(error)), "", error)

    monkeypatch.setattr(script.subprocess, "run", fake_run)
    monkeypatch.setattr(script, "largest_packages", lambda *_: "torch 700")
    assert script.main(["--extras", "torch"]) == 0
    venv, torch, extra = commands
    assert venv[1:3] == ["-m", "venv"]
    cpu = [
        "torch==2.13.0",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
    ]
    assert torch[1:4] == ["-m", "pip", "install"] and torch[-3:] == cpu
    assert extra[1:4] == ["-m", "pip", "install"]
    assert extra[-1] == f"{ROOT}[torch]"
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split() == ["torch", "0", "torch", "700"]
    with open(os.path.join(ROOT, "docs", "getting-started.md")) as f:
        assert f"pip install {shlex.join(cpu)} && " in f.read()
    errors[cpu[-1]] = (
        "Looking in indexes: ...\nERROR: No matching distribution\n"
    )
    status, err = run_cli(script.main, ["--extras", "torch"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.endswith(
        f"{shlex.join(cpu)} failed: ERROR: No matching distribution\n"
    )


# End to end ------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_quick_sweep_and_report_end_to_end_on_tiny_idx_data(
    common, sweep, report, tmp_path, capsys
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
    argv = ["--data-dir", str(tmp_path / "data"), "--quick", "--epochs", "1"]
    argv += ["--batch-size", "16", "--timing-rounds", "1", "--seeds", "3"]
    try:
        assert sweep.main(argv + ["--output-dir", str(out)]) == 0
    finally:
        tf_logger.removeHandler(records)
        tf_logger.setLevel(level)
    assert not [m for m in records.messages if "retracing" in m]
    printed = capsys.readouterr().out
    assert "(as --dataset fashion_mnist): 512 training and 32 test" in printed
    assert "--quick: a smoke test" in printed
    assert sorted(os.listdir(out)) == ["results.json"]
    with open(out / "results.json") as f:
        saved = json.load(f)
    describe = common.describe_config
    configs = common.run_configs(common.SWEEPS["quick"])
    assert [describe(r) for r in saved["runs"]] == [
        describe(c) for c in configs
    ]
    meta = saved["meta"]
    assert (meta["quick"], meta["seeds"], meta["train_size"]) == (
        True,
        [3],
        512,
    )
    assert meta["command"] == shlex.join(
        [
            ".venv/bin/python",
            "benchmarks/kl_vs_l1.py",
            *argv,
            "--output-dir",
            str(out),
        ]
    )
    assert 0 <= meta["raw_probe_accuracy"] <= 1
    for run in saved["runs"]:
        assert run["seed"] == 3 and len(run["firing_rates"]) == 200
        for key in ("test_mse", "mean_activation", "probe_accuracy"):
            assert np.isfinite(run[key]), key
        rates = np.asarray(run["firing_rates"])
        assert run["mean_activation"] == pytest.approx(rates.mean(), rel=1e-5)
        if run["regularizer"] == "topk":
            assert run["active_fraction"] <= run["k"] / 200
    assert report.main([str(out / "results.json")]) == 0
    text = (out / "report.md").read_text()
    assert "**Smoke test (--quick runs): " in text.split("## ")[0]
    # Every run has its row in the report, as results.json has it.
    for run in saved["runs"]:
        assert (
            f"| {describe(run)} | {run['test_mse']:.5f} | "
            f"{run['mean_activation']:.4f} | {run['active_fraction']:.4f} | "
            f"{run['dead_units']:.1f} |"
        ) in text
    assert len(list(out.glob("*.png"))) == 3


# The published page ----------------------------------------------------------


def page_text():
    with open(os.path.join(ROOT, "docs", "benchmarks.md")) as f:
        return f.read()


NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?!\w)")


def sections(text):
    """`{heading: text}` of a markdown text's `## ` sections."""
    parts = re.split(r"^## (.*)$", text, flags=re.M)
    return {"": parts[0], **dict(zip(parts[1::2], parts[2::2]))}


def test_published_page_quotes_the_published_results(report, monkeypatch):
    page = page_text()
    commands = [
        shlex.split(line, comments=True)
        for block in re.findall(r"```bash\n(.*?)```", page, re.S)
        for line in block.replace("\\\n", " ").splitlines()
        if "benchmarks/kl_vs_l1_report.py" in line
    ]
    assert len(commands) == 1, "the page shows the report's command once"
    argv = commands[0][2:]
    args = report.arguments().parse_args(argv)
    monkeypatch.chdir(ROOT)
    published = {
        os.path.relpath(path, ROOT)
        for pattern in ("results.json", "convergence.json")
        for path in glob.glob(f"{PUBLISHED}/**/{pattern}", recursive=True)
    }
    assert published == set(args.results) | set(args.convergence)
    datasets = [report.analyze(d) for d in report.load_results(args.results)]
    checks = [report.load_convergence(path) for path in args.convergence]
    regenerated = "\n".join(report.report_lines(datasets, checks, argv)) + "\n"
    with open(os.path.join(args.output_dir, "report.md")) as f:
        assert f.read() == regenerated, "report.md is not the current report"
    # Every table row the page shows is a row of the report.
    lines = set(regenerated.splitlines())
    prose = re.sub(r"```.*?```", "", page, flags=re.S)
    for line in prose.splitlines():
        if line.startswith("|"):
            assert line in lines, f"not a row of the report: {line}"
    # Every number the page's text quotes is in the report: in the same
    # section where the report has a section of that name.
    lines = [line for line in prose.splitlines() if not line.startswith("|")]
    prose = "\n".join(lines)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    tables = sections(regenerated)
    for heading, text in sections(prose).items():
        scope = (
            tables[heading] if heading and heading in tables else regenerated
        )
        known = set(NUMBER.findall(scope))
        quoted = NUMBER.findall(text)
        missing = [number for number in quoted if number not in known]
        assert not missing, (
            f"{heading or 'header'}: {missing} not in the report"
        )
