"""Shared test helpers: a float64 NumPy reference and backend gradients."""

import importlib.util
import json
import os
import sys

import keras
import numpy as np
import pytest

# The clip of the formula: only exact 0 and 1 (in float32) are moved, to
# float32's smallest normal number and to the largest float32 below 1.
REFERENCE_LOWER = float(np.finfo(np.float32).tiny)
REFERENCE_UPPER = 1.0 - 2.0**-24


def kl_penalty_reference(x, rho, beta, value_range=None, axis=-1, mask=None):
    """The KL sparsity penalty in NumPy float64, written from the formula."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    features = x.shape[-1]
    x = x.reshape(-1, features)
    if mask is not None:
        x = x[np.asarray(mask, dtype=bool).reshape(-1)]
    if x.shape[0] == 0:
        return 0.0
    rho_hat = x.mean(axis=0)
    if value_range is not None:
        low, high = value_range
        rho_hat = (rho_hat - low) / (high - low)
    rho_hat = np.clip(rho_hat, REFERENCE_LOWER, REFERENCE_UPPER)
    kl = rho * np.log(rho / rho_hat) + (1 - rho) * np.log(
        (1 - rho) / (1 - rho_hat)
    )
    return float(beta * kl.sum())


def kl_gradient_reference(x, rho, beta, value_range=None):
    """Ng's closed-form gradient of the penalty w.r.t. each activation."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    width = 1.0
    rho_hat = flat.mean(axis=0)
    if value_range is not None:
        low, high = value_range
        width = high - low
        rho_hat = (rho_hat - low) / width
    with np.errstate(divide="ignore", invalid="ignore"):  # inf at 0 and 1
        d_rho_hat = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    return np.broadcast_to(d_rho_hat / (flat.shape[0] * width), x.shape)


def gradient(fn, x):
    """Gradient of the scalar `fn(x)` with respect to `x`, on any backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v))(np.asarray(x)))
    if backend == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        fn(x).backward()
        return x.grad.detach().cpu().numpy()
    raise NotImplementedError(f"No gradient helper for backend {backend}")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def subprocess_env(tmp_path):
    """Environment for a fresh Python process that imports this checkout."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


EXAMPLES = os.path.join(ROOT, "examples")
if EXAMPLES not in sys.path:
    # The scripts' shared modules (data, runs, quiet), as the scripts see
    # them when run from the command line.
    sys.path.insert(0, EXAMPLES)


def load_script(relative_path, name):
    """Imports a script of the repository (examples/, benchmarks/) by path.

    Its folder goes on `sys.path` first, as when Python runs the script, so
    it finds its neighbours (`benchmarks/common.py`) whatever ran before.
    """
    path = os.path.join(ROOT, relative_path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(main, argv, capsys):
    """A script's command line in this process: (exit status, stderr)."""
    import runs

    with pytest.raises(SystemExit) as info:
        runs.run(lambda: main(argv))
    return info.value.code, capsys.readouterr().err


def read_metrics(folder):
    """The `metrics.json` a script wrote in `folder`."""
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


def earlier_run(folder, names):
    """A folder holding the results of an earlier run; returns their bytes."""
    os.makedirs(folder)
    files = {name: f"earlier {name}".encode() for name in names}
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)
    return files


def unchanged(folder, files):
    """Whether every file `earlier_run` wrote still holds its bytes."""
    for name, content in files.items():
        with open(os.path.join(folder, name), "rb") as f:
            if f.read() != content:
                return False
    return True


def check_bad_flag(main, flags, message, folder, outputs, capsys):
    """A bad flag gets one line naming it and exit status 2, and the
    results of an earlier run in `folder` stay as they were."""
    files = earlier_run(folder, outputs)
    code, err = run_cli(main, flags + ["--output-dir", str(folder)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "(see --help)" in err
    assert unchanged(folder, files)


def check_earlier_run_is_kept(main, argv, folder, outputs, capsys):
    """Without `--overwrite`, a run refuses a `folder` that holds results:
    one line, exit status 2, every file unchanged. Returns their bytes."""
    files = earlier_run(folder, outputs)
    code, err = run_cli(main, argv + ["--output-dir", str(folder)], capsys)
    assert code == 2
    assert err == (
        f"error: {folder} already holds results ({', '.join(outputs)}); "
        "pass --overwrite to replace them, or choose another --output-dir\n"
    )
    assert unchanged(folder, files)
    return files


def pytest_sessionfinish(session, exitstatus):
    """With KERAS_SPARSITY_FORBID_TENSORFLOW=1 (CI's JAX-only environment),
    the run fails if anything imported TensorFlow."""
    if os.environ.get("KERAS_SPARSITY_FORBID_TENSORFLOW") == "1":
        if "tensorflow" in sys.modules:
            print("\nTensorFlow was imported in a run that forbids it.")
            session.exitstatus = 1
