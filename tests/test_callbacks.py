"""SparsityMonitor against statistics computed by hand in NumPy."""

import csv

import keras
import numpy as np
import pytest
from conftest import kl_penalty_reference, to_numpy

from keras_sparsity import KLSparsityRegularizer, SparseDense, SparsityMonitor


def frozen_model(code_layer):
    """A model whose weights stay put (SGD with learning rate 0)."""
    inputs = keras.Input((3,))
    code = code_layer(inputs)
    outputs = keras.layers.Dense(3, name="out")(code)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def known_kernel_layer(cls, **kwargs):
    kernel = np.array([[4.0, -4.0], [0.0, -4.0], [-4.0, 1.0]])
    return cls(
        2,
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant([0.5, -1.0]),
        name="code",
        **kwargs,
    ), kernel


def hand_statistics(x, kernel, bias, rho, beta, low=0.0, high=1.0):
    z = x.astype(np.float64) @ kernel + bias
    a = 1.0 / (1.0 + np.exp(-z))
    mapped = (a - low) / (high - low)
    active = mapped > 0.5
    return {
        "code_mean_activation": mapped.mean(),
        "code_kl_penalty": kl_penalty_reference(a, rho, beta),
        "code_dead_fraction": np.mean(~active.any(axis=0)),
        "code_active_fraction": active.mean(),
    }


@pytest.mark.parametrize("kind", ["sparse_dense", "dense_kl", "dense"])
def test_logged_figures_match_hand_computation(kind, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 3)).astype("float32")
    if kind == "sparse_dense":
        layer, kernel = known_kernel_layer(SparseDense, rho=0.1, beta=2.0)
        rho, beta = 0.1, 2.0
    elif kind == "dense_kl":
        layer, kernel = known_kernel_layer(
            keras.layers.Dense,
            activation="sigmoid",
            activity_regularizer=KLSparsityRegularizer(0.2, 0.5),
        )
        rho, beta = 0.2, 0.5
    else:
        layer, kernel = known_kernel_layer(
            keras.layers.Dense, activation="sigmoid"
        )
        rho, beta = 0.05, 1.0  # the monitor's default target, unit weight
    model = frozen_model(layer)
    log_path = tmp_path / "log.csv"
    history = model.fit(
        x,
        x,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[
            SparsityMonitor(["code"], data=x[:40], batch_size=7),
            keras.callbacks.CSVLogger(str(log_path)),
        ],
    )
    expected = hand_statistics(x[:40], kernel, np.array([0.5, -1.0]), rho, beta)
    for key, value in expected.items():
        np.testing.assert_allclose(
            history.history[key], [value, value], rtol=1e-5, err_msg=key
        )
    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    np.testing.assert_allclose(
        float(rows[1]["code_kl_penalty"]),
        expected["code_kl_penalty"],
        rtol=1e-5,
    )


def test_several_layers_by_object_and_tanh_mapping():
    x = np.random.default_rng(1).random((30, 3)).astype("float32")
    inputs = keras.Input((3,))
    a = SparseDense(4, activation="tanh", name="a")(inputs)
    b = SparseDense(2, name="b")(a)
    model = keras.Model(inputs, b)
    model.compile(optimizer="sgd", loss="mse")
    monitor = SparsityMonitor([model.get_layer("a"), "b"], data=x)
    history = model.fit(x, x[:, :2], epochs=1, verbose=0, callbacks=[monitor])
    probe = keras.Model(inputs, a)
    mapped = (to_numpy(probe(x)).astype(np.float64) + 1.0) / 2.0
    np.testing.assert_allclose(
        history.history["a_mean_activation"], [mapped.mean()], rtol=1e-5
    )
    assert set(history.history) >= {
        "b_mean_activation",
        "b_kl_penalty",
        "b_dead_fraction",
        "b_active_fraction",
    }


def test_empty_layer_list_is_refused():
    with pytest.raises(ValueError) as info:
        SparsityMonitor([], data=np.zeros((1, 3)))
    assert str(info.value) == (
        "Invalid value for argument `layers`: expected a non-empty list of "
        "layers or layer names. Received: layers=[]"
    )
