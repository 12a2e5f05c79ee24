"""Small autoencoders that really train and land their code near `rho`."""

import keras
import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, SparseDense

from conftest import to_numpy


def sparse_data(samples=2048, features=64, atoms=16, seed=0):
    """Inputs in [0, 1] made of a few active prototypes each."""
    rng = np.random.default_rng(seed)
    dictionary = rng.random((atoms, features))
    codes = rng.random((samples, atoms)) * (rng.random((samples, atoms)) < 0.2)
    x = codes @ dictionary
    return (x / x.max()).astype("float32")


def train_autoencoder(code_layer, batch_size, epochs=25):
    x = sparse_data()
    inputs = keras.Input((x.shape[1],))
    code = code_layer(inputs)
    outputs = keras.layers.Dense(x.shape[1], activation="sigmoid")(code)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, x, batch_size=batch_size, epochs=epochs, verbose=0)
    encoder = keras.Model(inputs, code)
    return to_numpy(encoder.predict(x, verbose=0)), model.evaluate(
        x, x, verbose=0
    )


def test_sparse_dense_lands_its_mean_activation_near_rho():
    codes, _ = train_autoencoder(SparseDense(32, rho=0.05, beta=3.0), 64)
    dense_codes, _ = train_autoencoder(
        keras.layers.Dense(32, activation="sigmoid"), 64
    )
    assert abs(codes.mean() - 0.05) < 0.015
    # Every unit is pulled to rho, not just the layer average.
    assert np.all(np.abs(codes.mean(axis=0) - 0.05) < 0.05)
    assert dense_codes.mean() > 0.2


@pytest.mark.parametrize("batch_size", [16, 256])
def test_regularizer_strength_does_not_depend_on_batch_size(batch_size):
    # On Keras >= 3.14 a naive regularizer would be batch_size times weaker
    # at batch 256 than its beta says, and the code would stay dense.
    code = keras.layers.Dense(
        32,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.05, 3.0),
    )
    codes, _ = train_autoencoder(code, batch_size, epochs=25)
    assert abs(codes.mean() - 0.05) < 0.015


def test_default_layers_train_a_working_sparse_code():
    # KLSparsityRegularizer() and SparseDense(units) as they come: the code
    # is sparse and the reconstructions beat predicting the mean input,
    # which the old default, beta = 3 against Keras's MSE, does not.
    x = sparse_data()
    mean_input_mse = float(np.mean((x - x.mean(axis=0)) ** 2))
    for code_layer in (
        SparseDense(32),
        keras.layers.Dense(
            32,
            activation="sigmoid",
            activity_regularizer=KLSparsityRegularizer(),
        ),
    ):
        codes, mse = train_autoencoder(code_layer, 64, epochs=10)
        assert abs(codes.mean() - 0.05) < 0.015
        assert mse < 0.6 * mean_input_mse
