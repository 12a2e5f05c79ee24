"""What a saved model holds, and files that earlier versions saved.

A model saved here and loaded in a fresh process on every backend:
`test_fresh_processes.py`."""

import os

import keras
import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, SparseDense
from keras_sparsity.regularizers import _keras_version

from conftest import to_numpy


def build_model():
    inputs = keras.Input((20,))
    code = SparseDense(8, rho=0.05, beta=3.0, name="code")(inputs)
    outputs = keras.layers.Dense(
        20,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.2, 0.5),
    )(code)
    return keras.Model(inputs, outputs)


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
