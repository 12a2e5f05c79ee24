"""Saves the small model that tests/test_saving.py loads back.

Run with the keras_sparsity and Keras versions to record, for example
`PYTHONPATH=/path/to/keras_sparsity-0.1.0 python make_saved_models.py
tests/data/saved-0.1.0-keras3.12` in an environment with Keras 3.12. It
writes `<stem>.keras` and `<stem>.npz` (inputs, outputs and losses).
"""

import sys

import keras
import numpy as np

import keras_sparsity
from keras_sparsity import KLSparsityRegularizer, SparseDense

out = sys.argv[1]
keras.utils.set_random_seed(0)
inputs = keras.Input((6,))
code = SparseDense(
    4,
    rho=0.1,
    beta=2.0,
    kernel_regularizer=keras.regularizers.L2(1e-3),
    name="code",
)(inputs)
hidden = keras.layers.Dense(
    5,
    activation="tanh",
    activity_regularizer=KLSparsityRegularizer(0.2, 0.5, value_range=(-1, 1)),
    name="hidden",
)(code)
outputs = keras.layers.Dense(6, activation="sigmoid", name="out")(hidden)
model = keras.Model(inputs, outputs)
model.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).random((8, 6)).astype("float32")
model.fit(x, x, epochs=2, verbose=0)
model.save(out + ".keras")
y = keras.ops.convert_to_numpy(model(x))
losses = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
np.savez(out + ".npz", x=x, outputs=y, losses=np.array(losses))
print(keras.__version__, keras_sparsity.__version__, losses)
