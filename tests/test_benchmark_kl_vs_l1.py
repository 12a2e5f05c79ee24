"""The KL-vs-L1 benchmark's machinery on tiny data (not its timings)."""

import json
import os

import keras
import numpy as np
import pytest
from conftest import load_script
from test_datasets import write_idx_dataset


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/kl_vs_l1.py", "kl_vs_l1")


def test_pareto_front(bench):
    points = [(0.1, 5.0), (0.2, 3.0), (0.3, 4.0), (0.05, 6.0), (0.2, 3.5)]
    # (0.3, 4.0) is dominated by (0.2, 3.0); so is (0.2, 3.5).
    assert bench.pareto_front(points) == [3, 0, 1]
    assert bench.pareto_front([(1, 1), (1, 1)]) == [0, 1]
    assert bench.pareto_front([]) == []


def test_linear_probe_separates_separable_classes(bench):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    centers = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x = centers[labels] + rng.normal(0, 0.5, (300, 2))
    assert (
        bench.linear_probe_accuracy(
            x[:200], labels[:200], x[200:], labels[200:]
        )
        > 0.95
    )
    noise = rng.normal(size=(300, 2))
    accuracy = bench.linear_probe_accuracy(
        noise[:200], labels[:200], noise[200:], labels[200:]
    )
    assert accuracy < 0.6  # chance is 1/3


def test_top_k_keeps_the_k_largest(bench):
    x = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]], "float32")
    out = keras.ops.convert_to_numpy(bench.TopK(2)(x))
    np.testing.assert_allclose(
        out, [[0.0, 0.9, 0.0, 0.7], [0.4, 0.3, 0.0, 0.0]]
    )


def test_configs_cover_every_regularizer(bench):
    for sweep in bench.SWEEPS.values():
        configs = bench.run_configs(sweep)
        kinds = {c["regularizer"] for c in configs}
        assert kinds == {"none", "l1", "kl", "topk"}
        assert len({c["rho"] for c in configs if c["regularizer"] == "kl"}) >= 2


def fake_result(bench, regularizer, strength, mean, mse, seed=0):
    return {
        "regularizer": regularizer,
        "strength": strength,
        "rho": 0.05 if regularizer == "kl" else None,
        "k": int(strength) if regularizer == "topk" else None,
        "seed": seed,
        "test_mse": mse,
        "mean_activation": mean,
        "active_fraction": mean / 2,
        "dead_units": 3,
        "firing_rate_std": 0.01,
        "firing_rates": [mean] * 4,
        "probe_accuracy": 0.8,
        "step_time_ms": 5.0,
        "step_ratio": 1.01,
        "wall_seconds": 2.0,
        "train_seconds": 1.5,
    }


def test_summary_matching_and_report(bench, tmp_path):
    results = [
        fake_result(bench, "none", 0.0, 0.4, 0.010),
        fake_result(bench, "l1", 1e-4, 0.2, 0.020),
        fake_result(bench, "l1", 1e-3, 0.06, 0.030, seed=0),
        fake_result(bench, "l1", 1e-3, 0.04, 0.034, seed=1),
        fake_result(bench, "kl", 0.03, 0.051, 0.025),
        fake_result(bench, "topk", 10.0, 0.03, 0.028),
    ]
    rows = bench.summarize(results)
    l1_strong = next(r for r in rows if r["strength"] == 1e-3)
    assert l1_strong["seeds"] == 2
    assert l1_strong["mean_activation"] == pytest.approx(0.05)
    assert l1_strong["test_mse"] == pytest.approx(0.032)
    matched = bench.matched_runs(rows)
    assert matched["l1"]["strength"] == 1e-3
    assert matched["kl"]["strength"] == 0.03
    meta = {
        "command": "python benchmarks/kl_vs_l1.py --quick",
        "dataset": "tiny",
        "train_size": 10,
        "test_size": 5,
        "epochs": 1,
        "batch_size": 4,
        "seeds": [0, 1],
        "versions": {"keras": keras.__version__},
        "machine": "test",
        "raw_probe_accuracy": 0.7,
    }
    path = bench.write_report(results, meta, tmp_path / "report.md")
    text = open(path).read()
    assert "| KL rho=0.05 beta=0.03 | 0.02500 | 0.0510 |" in text
    assert "| L1 0.001 | 0.03200 | 0.0500 |" in text
    assert "KL reconstructs better" in text
    assert "raw pixels scores 0.7000" in text
    plots = bench.write_plots(results, str(tmp_path))
    assert all(os.path.getsize(p) > 1000 for p in plots)


@pytest.mark.slow
def test_quick_mode_end_to_end_on_tiny_idx_data(bench, tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "data", n_train=64, n_test=32)
    monkeypatch.setitem(
        bench.SWEEPS,
        "quick",
        {**bench.SWEEPS["quick"], "train": 64, "test": 32, "epochs": 1},
    )
    out = tmp_path / "out"
    code = bench.main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--quick",
            "--output-dir",
            str(out),
            "--batch-size",
            "16",
        ]
    )
    assert code == 0
    with open(out / "results.json") as f:
        saved = json.load(f)
    runs = saved["runs"]
    assert {r["regularizer"] for r in runs} == {"none", "l1", "kl", "topk"}
    for run in runs:
        for key in (
            "test_mse",
            "mean_activation",
            "active_fraction",
            "dead_units",
            "probe_accuracy",
            "step_time_ms",
            "firing_rate_std",
            "wall_seconds",
        ):
            assert run[key] is not None and np.isfinite(run[key]), key
    assert saved["meta"]["raw_probe_accuracy"] is not None
    for name in (
        "report.md",
        "pareto_mse_vs_mean_activation.png",
        "pareto_mse_vs_active_fraction.png",
        "firing_rates_matched.png",
    ):
        assert os.path.getsize(out / name) > 0
    os.remove(out / "report.md")
    assert bench.main(["--from-results", str(out / "results.json")]) == 0
    assert "## Verdict" in (out / "report.md").read_text()
