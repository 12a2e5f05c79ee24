"""Save to `.keras` here, load in a fresh process that imports the package."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, SparseDense
from keras_sparsity.regularizers import _keras_version

from conftest import to_numpy

RELOAD = textwrap.dedent(
    """
    import sys

    import keras
    import numpy as np

    import keras_sparsity  # noqa: F401  (registration is all it needs)

    model_path, data_path, out_path = sys.argv[1:]
    x = np.load(data_path)["x"]
    model = keras.saving.load_model(model_path)  # safe_mode=True
    outputs = keras.ops.convert_to_numpy(model(x))
    losses = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.train_on_batch(x, x)
    np.savez(
        out_path,
        outputs=outputs,
        losses=np.array(losses),
        iterations=iterations,
        **{f"w{i}": w for i, w in enumerate(model.get_weights())},
    )
    """
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


def test_reload_in_fresh_process_is_identical(tmp_path, subprocess_env):
    x = np.random.default_rng(0).random((32, 20)).astype("float32")
    model = build_model()
    for _ in range(3):
        model.train_on_batch(x, x)
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    outputs = to_numpy(model(x))
    losses = [float(to_numpy(v)) for v in model.losses]
    model.train_on_batch(x, x)
    weights = model.get_weights()

    np.savez(tmp_path / "data.npz", x=x)
    subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD,
            str(model_path),
            str(tmp_path / "data.npz"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=subprocess_env,
        timeout=300,
    )
    reloaded = np.load(tmp_path / "out.npz")
    assert int(reloaded["iterations"]) == 3
    assert len(losses) == 4  # L2 on the kernel and three KL penalties
    np.testing.assert_allclose(reloaded["outputs"], outputs, rtol=1e-6)
    np.testing.assert_allclose(reloaded["losses"], losses, rtol=1e-6)
    assert len(weights) == len(reloaded.files) - 3
    for i, w in enumerate(weights):
        np.testing.assert_allclose(reloaded[f"w{i}"], w, rtol=1e-6, atol=1e-7)


def test_saved_config_names_the_registered_objects(tmp_path):
    model = build_model()
    model.save(tmp_path / "model.keras")
    import json
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    text = json.dumps(config)
    assert '"registered_name": "keras_sparsity>SparseDense"' in text
    assert '"registered_name": "keras_sparsity>KLSparsityRegularizer"' in text


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# Models saved by keras_sparsity 0.1.0 (SparseDense subclassed Layer then)
# and by this version, with the Keras named in the file name; made by
# tests/data/make_saved_models.py. Keras loads files saved by its own or
# an older version, never a newer one.
SAVED = [
    "saved-0.1.0-keras3.12",
    "saved-0.1.0-keras3.15",
    "saved-0.2.0-keras3.12",
]


@pytest.mark.parametrize("stem", SAVED)
def test_models_saved_by_earlier_versions_load(stem):
    saved_with = _keras_version(stem.rsplit("keras", 1)[1])
    if saved_with > _keras_version(keras.__version__):
        pytest.skip(f"saved with a newer Keras than {keras.__version__}")
    model = keras.saving.load_model(os.path.join(DATA, stem + ".keras"))
    expected = np.load(os.path.join(DATA, stem + ".npz"))
    outputs = to_numpy(model(expected["x"]))
    losses = [float(to_numpy(v)) for v in model.losses]
    np.testing.assert_allclose(outputs, expected["outputs"], atol=1e-6)
    np.testing.assert_allclose(losses, expected["losses"], rtol=1e-5)
    code = model.get_layer("code")
    assert isinstance(code, SparseDense)
    assert (code.rho, code.beta) == (0.1, 2.0)
