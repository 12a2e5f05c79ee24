"""What needs a fresh process, with one process per backend.

The session saves a model here; then `fresh_checks.py` runs once for each
installed backend, all at once, and each test reads its results: the
package imports no backend, the model loads on every backend (outputs,
losses, a `beta` changed before saving, one more training step), and the
data-parallel regimes that run in one process (`MirroredStrategy` on two
logical CPUs, JAX `DataParallel` on two host devices) train against their
references. They run in the session of the first installed backend of
TensorFlow, JAX and PyTorch (once per environment, since they cover every
backend).
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, SparseDense

import regimes
from conftest import ROOT, to_numpy

BACKEND = keras.backend.backend()
INSTALLED = [
    name
    for name in ("tensorflow", "jax", "torch")
    if importlib.util.find_spec(name) is not None
]
pytestmark = pytest.mark.skipif(
    BACKEND != INSTALLED[0],
    reason=f"runs in the {INSTALLED[0]} session, for every backend",
)


def build_model():
    inputs = keras.Input((20,))
    code = SparseDense(
        8,
        rho=0.05,
        beta=3.0,
        kernel_regularizer=keras.regularizers.L2(5e-4),
        name="code",
    )(inputs)
    hidden = keras.layers.Dense(
        12,
        activation="tanh",
        activity_regularizer=KLSparsityRegularizer(
            0.1, 2.0, value_range=(-1, 1)
        ),
    )(code)
    outputs = keras.layers.Dense(
        20,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.2, 0.5),
    )(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


@pytest.fixture(scope="session")
def fresh(tmp_path_factory):
    """Saves the model, runs the fresh processes; their results by backend,
    and what the model gave here."""
    folder = tmp_path_factory.mktemp("fresh")
    x = np.random.default_rng(0).random((32, 20)).astype("float32")
    model = build_model()
    for _ in range(3):
        model.train_on_batch(x, x)
    model.get_layer("code").beta = 0.07  # a schedule's value, saved
    model.save(folder / "model.keras")
    np.savez(folder / "model.npz", x=x)
    here = {
        "outputs": to_numpy(model(x)),
        "losses": [float(to_numpy(v)) for v in model.losses],
    }
    model.train_on_batch(x, x)
    here["weights"] = model.get_weights()

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # Two host devices for JAX's DataParallel; ignored elsewhere.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    script = os.path.join(ROOT, "tests", "fresh_checks.py")
    processes = {}
    for backend in INSTALLED:
        # A file, not a pipe: a pipe nobody reads blocks its writer.
        with open(folder / f"{backend}.log", "w") as log:
            processes[backend] = subprocess.Popen(
                [sys.executable, script, str(folder)],
                env={**env, "KERAS_BACKEND": backend},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    results = {}
    for backend, process in processes.items():
        try:
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
        log = (folder / f"{backend}.log").read_text()
        assert process.returncode == 0, f"{backend}: {log[-3000:]}"
        with open(folder / f"{backend}.json") as f:
            results[backend] = json.load(f)
    return results, here


@pytest.mark.parametrize("backend", INSTALLED)
def test_importing_the_package_imports_no_backend_keras_did_not(backend, fresh):
    results, _ = fresh
    assert results[backend]["backend"] == backend
    assert results[backend]["import_added"] == []


@pytest.mark.parametrize("backend", INSTALLED)
def test_the_saved_model_loads_and_trains_in_a_fresh_process(backend, fresh):
    results, here = fresh
    loaded = results[backend]["models"]["model.keras"]
    assert loaded["iterations"] == 3
    assert loaded["settings"] == [0.05, 0.07]
    assert len(loaded["losses"]) == 4  # L2 on the kernel, three KL penalties
    np.testing.assert_allclose(loaded["outputs"], here["outputs"], atol=1e-6)
    np.testing.assert_allclose(loaded["losses"], here["losses"], rtol=1e-5)
    assert len(loaded["weights"]) == len(here["weights"])
    for got, expected in zip(loaded["weights"], here["weights"]):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def assert_trained_like_the_reference(run):
    """Every step applied, the logged loss the float64 one, and the weights
    the one-device reference's (`fresh_checks.compare`)."""
    assert run["steps"] == regimes.STEPS
    np.testing.assert_allclose(run["logged"], run["expected_logged"], rtol=1e-5)
    assert run["weight_difference"] < 1e-5


@pytest.mark.skipif("tensorflow" not in INSTALLED, reason="no TensorFlow")
def test_mirrored_strategy_trains_each_replica_on_its_own_share(fresh):
    # Two replicas in one process: the default penalizes each replica's
    # share (Keras's per-layer losses are shared between the replica
    # threads, so a global all-reduce in the forward pass would corrupt
    # them); the L1 and L2 terms and the logged loss stay exact.
    assert_trained_like_the_reference(fresh[0]["tensorflow"]["mirrored"])


@pytest.mark.skipif("tensorflow" not in INSTALLED, reason="no TensorFlow")
def test_mirrored_strategy_refuses_the_global_batch(fresh):
    error = fresh[0]["tensorflow"]["mirrored_global_error"]
    assert error is not None
    assert "cross_replica=True" in error and "MirroredStrategy" in error
    assert "cross_replica=None (the default) or False" in error


@pytest.mark.skipif("jax" not in INSTALLED, reason="no JAX")
def test_jax_data_parallel_trains_on_the_global_batch(fresh):
    data_parallel = fresh[0]["jax"]["data_parallel"]
    assert data_parallel["devices"] == 2
    assert_trained_like_the_reference(data_parallel)


@pytest.mark.skipif("jax" not in INSTALLED, reason="no JAX")
def test_the_eager_jax_reproduction_logs_the_sum_or_one_term_off(fresh):
    # docs/backends.md: Keras's eager JAX steps now and then drop one
    # layer's activity loss, or count another's in its place. Whether it
    # happens in a run varies; what the page says of each logged value must
    # hold: most are the sum of the terms, and any other is that sum with
    # each activity loss left out, kept, or counted twice.
    lines = fresh[0]["jax"]["jax_repro"].splitlines()
    terms = ast.literal_eval(lines[0].split(":", 1)[1].strip())
    total = float(lines[1].split(":", 1)[1])
    counts = ast.literal_eval(lines[2].split(":", 1)[1].strip())
    assert len(terms) == 3 and abs(total - sum(terms)) < 2e-4
    assert sum(counts.values()) == 500
    assert abs(max(counts, key=counts.get) - total) < 2e-4
    offsets = [
        a * terms[1] + b * terms[2] for a in (-1, 0, 1) for b in (-1, 0, 1)
    ]
    for value in counts:
        assert min(abs(value - total - o) for o in offsets) < 3e-4


@pytest.mark.skipif("tensorflow" not in INSTALLED, reason="no TensorFlow")
def test_the_mirrored_strategy_reproduction_prints_what_the_page_shows(fresh):
    # docs/backends.md shows Keras's shared loss lists under
    # MirroredStrategy with Keras alone, and the output it prints.
    with open(os.path.join(ROOT, "docs", "backends.md")) as f:
        page = f.read()
    shown = page.split("CI runs it and compares):\n\n```text\n")[1]
    assert fresh[0]["tensorflow"]["repro"] == shown.split("```")[0]
