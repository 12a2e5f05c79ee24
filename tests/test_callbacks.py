"""SparsityMonitor against statistics computed by hand in NumPy, and
BetaWarmup against the float64 loss of the model it trains."""

import csv
import importlib.util

import keras
import numpy as np
import pytest

from keras_sparsity import (
    ACTIVE_THRESHOLD,
    BetaWarmup,
    KLSparsityRegularizer,
    SparseDense,
    SparsityMonitor,
)

import regimes
from conftest import kl_penalty_reference, to_numpy


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


def hand_statistics(x, kernel, bias, rho, beta, threshold=ACTIVE_THRESHOLD):
    z = x.astype(np.float64) @ kernel + bias
    a = 1.0 / (1.0 + np.exp(-z))
    active = a > threshold
    return {
        "code_mean_activation": a.mean(),
        "code_kl_penalty": kl_penalty_reference(a, rho, beta),
        "code_dead_fraction": np.mean(~active.any(axis=0)),
        "code_active_fraction": active.mean(),
    }


@pytest.mark.parametrize(
    "kind,threshold,rho",
    [
        ("sparse_dense", None, None),
        ("sparse_dense", 0.7, None),
        ("dense_kl", 0.3, None),
        ("dense", None, None),
        ("dense", 0.6, 0.3),
    ],
)
def test_logged_figures_match_hand_computation(kind, threshold, rho, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 3)).astype("float32")
    monitor_kwargs = {}
    if threshold is not None:
        monitor_kwargs["active_threshold"] = threshold
    if rho is not None:
        monitor_kwargs["rho"] = rho
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
        # The monitor's target (default 0.05) with unit weight.
        rho, beta = rho or 0.05, 1.0
    model = frozen_model(layer)
    log_path = tmp_path / "log.csv"
    history = model.fit(
        x,
        x,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[
            SparsityMonitor(
                ["code"], data=x[:40], batch_size=7, **monitor_kwargs
            ),
            keras.callbacks.CSVLogger(str(log_path)),
        ],
    )
    expected = hand_statistics(
        x[:40],
        kernel,
        np.array([0.5, -1.0]),
        rho,
        beta,
        threshold or ACTIVE_THRESHOLD,
    )
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
        "Invalid value for argument `layers`: expected a layer or layer "
        "name, or a non-empty list of them. Received: layers=[]"
    )


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def small_model():
    inputs = keras.Input((3,))
    code = SparseDense(2, name="code")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(code))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_one_layer_name_is_not_split_into_letters():
    x = np.random.default_rng(2).random((20, 3)).astype("float32")
    model = small_model()
    monitor = SparsityMonitor("code", data=x)
    history = model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    assert "code_kl_penalty" in history.history
    stats = monitor.statistics["code"]
    assert len(stats["firing_rates"]) == 2
    assert stats["kl_penalty"] == history.history["code_kl_penalty"][0]


@pytest.mark.parametrize(
    "layers,data_shape,fragment",
    [
        ("missing", (20, 3), "no layer named 'missing'"),
        ("code", (20, 5), r"expected model inputs of shape \[\(None, 3\)\]"),
        ("code", (0, 3), "at least one example"),
    ],
)
def test_mistakes_are_reported_before_the_first_batch(
    layers, data_shape, fragment
):
    x = np.random.default_rng(3).random((20, 3)).astype("float32")
    model = small_model()
    counter = EpochCounter()
    monitor = SparsityMonitor(layers, data=np.zeros(data_shape, "float32"))
    with pytest.raises(ValueError, match=fragment):
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor, counter])
    assert counter.batches == 0


def test_a_layer_of_another_model_is_refused():
    x = np.random.default_rng(3).random((20, 3)).astype("float32")
    other = SparseDense(2, name="elsewhere")
    other.build((None, 3))
    monitor = SparsityMonitor([other], data=x)
    with pytest.raises(ValueError, match="'elsewhere' is not a layer"):
        small_model().fit(x, x, epochs=1, verbose=0, callbacks=[monitor])


def test_subclassed_model_gets_a_message_that_says_what_to_do():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.code = SparseDense(2, name="code")
            self.out = keras.layers.Dense(3)

        def call(self, x):
            return self.out(self.code(x))

    x = np.random.default_rng(4).random((20, 3)).astype("float32")
    model = Subclassed()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="needs a functional or Sequential"):
        model.fit(
            x, x, epochs=1, verbose=0, callbacks=[SparsityMonitor("code", x)]
        )


@pytest.mark.parametrize(
    "kwargs,error,fragment",
    [
        ({"layers": 3}, TypeError, "expected layers or layer names"),
        ({"layers": [None]}, TypeError, "expected layers or layer names"),
        ({"batch_size": 0}, ValueError, "argument `batch_size`"),
        ({"active_threshold": float("nan")}, ValueError, "active_threshold"),
        ({"rho": 2.0}, ValueError, "argument `rho`"),
    ],
)
def test_arguments_are_checked_at_construction(kwargs, error, fragment):
    arguments = {"layers": "code", "data": np.zeros((2, 3)), **kwargs}
    with pytest.raises(error, match=fragment):
        SparsityMonitor(**arguments)


def test_channels_first_feature_maps_follow_the_regularizer_axis():
    # (batch, channels, height, width) maps, 3 channels on axis 1.
    x = np.random.default_rng(5).random((6, 3, 5, 5)).astype("float32")
    inputs = keras.Input((3, 5, 5))
    maps = keras.layers.Activation(
        "sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.1, 2.0, axis=1),
        name="maps",
    )(keras.layers.Dense(5)(inputs))
    model = keras.Model(inputs, maps)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = SparsityMonitor("maps", data=x)
    model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    a = to_numpy(model(x)).astype(np.float64)
    stats = monitor.statistics["maps"]
    assert stats["units"] == 3
    np.testing.assert_allclose(
        stats["firing_rates"], a.mean(axis=(0, 2, 3)), rtol=1e-5
    )
    np.testing.assert_allclose(
        stats["kl_penalty"],
        kl_penalty_reference(a, 0.1, 2.0, axis=1),
        rtol=1e-5,
    )


def test_logged_penalty_is_the_masked_one_sparse_dense_trains_on():
    x = np.random.default_rng(6).random((4, 6, 3)).astype("float32")
    x[0, 3:] = 0.0
    x[2, 1:] = 0.0
    inputs = keras.Input((6, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    code = SparseDense(5, rho=0.1, beta=2.0, name="code")(masked)
    model = keras.Model(inputs, keras.layers.Dense(3)(code))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = SparsityMonitor("code", data=x, batch_size=4)
    history = model.fit(
        x, x, batch_size=4, epochs=1, verbose=0, callbacks=[monitor]
    )
    model(x)
    (trained,) = [to_numpy(v) for v in model.losses]
    np.testing.assert_allclose(
        history.history["code_kl_penalty"], [trained], rtol=1e-5
    )
    codes = to_numpy(keras.Model(inputs, code)(x))
    mask = np.any(x != 0.0, axis=-1)
    np.testing.assert_allclose(
        monitor.statistics["code"]["firing_rates"],
        codes[mask].mean(axis=0),
        rtol=1e-5,
    )


def test_a_sequential_without_input_is_built_from_the_data():
    x = np.random.default_rng(7).random((32, 6)).astype("float32")
    model = keras.Sequential(
        [SparseDense(3, name="code"), keras.layers.Dense(6)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    monitor = SparsityMonitor("code", data=x)
    history = model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
    codes = to_numpy(model.get_layer("code")(x)).astype(np.float64)
    np.testing.assert_allclose(
        history.history["code_mean_activation"], [codes.mean()], rtol=1e-5
    )


def test_a_relu_code_is_refused_before_the_first_step():
    # The classic mistake (keras-team/keras#14460): a ReLU code with a KL
    # penalty, clipped silently by the penalty. The monitor measures before
    # training and names value_range and the alternatives.
    x = np.random.default_rng(5).random((20, 3)).astype("float32")
    inputs = keras.Input((3,))
    code = keras.layers.Dense(
        4,
        activation="relu",
        kernel_initializer="ones",
        activity_regularizer=KLSparsityRegularizer(),
        name="code",
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(code))
    model.compile(optimizer="sgd", loss="mse")
    counter = EpochCounter()
    monitor = SparsityMonitor("code", data=x)
    with pytest.raises(ValueError, match="outside the value range.*L1"):
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor, counter])
    assert counter.batches == 0


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="no tf.data"
)
def test_data_may_be_a_tf_data_dataset_or_a_py_dataset():
    import tensorflow as tf

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[10 * index : 10 * (index + 1)]

    x = np.random.default_rng(6).random((20, 3)).astype("float32")
    expected = None
    for data in (x, tf.data.Dataset.from_tensor_slices(x).batch(7), Batches()):
        model = frozen_model(known_kernel_layer(SparseDense)[0])
        monitor = SparsityMonitor("code", data=data)
        model.fit(x, x, epochs=1, verbose=0, callbacks=[monitor])
        rates = monitor.statistics["code"]["firing_rates"]
        expected = rates if expected is None else expected
        np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_a_generator_is_refused_with_what_to_pass_instead():
    data = (np.zeros((2, 3)) for _ in range(3))
    with pytest.raises(TypeError) as info:
        SparsityMonitor("code", data=data)
    assert str(info.value) == (
        "Invalid type for argument `data` of SparsityMonitor: expected "
        "model inputs that `predict` can read every epoch: an array, a list "
        "or dict of arrays, a `tf.data.Dataset` or a `keras.utils.PyDataset`."
        " An iterator or generator is used up after one epoch: wrap it in a "
        "`tf.data.Dataset` or a `PyDataset`. Received: data of type generator"
    )


class WeightsAtEpochBegin(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_begin(self, epoch, logs=None):
        self.weights.append(regimes.get_weights(self.model))


def test_beta_warmup_trains_each_epoch_with_its_beta():
    # One compiled step per epoch: each logs the float64 loss at its own
    # beta, 0, then half, then the layer's own 0.05.
    x = regimes.data()
    model = regimes.build()
    weights = WeightsAtEpochBegin()
    warmup = BetaWarmup("code", epochs=2)
    history = model.fit(
        x,
        x,
        batch_size=len(x),
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[warmup, weights],
    )
    betas = [0.0, regimes.CODE_BETA / 2, regimes.CODE_BETA]
    np.testing.assert_allclose(history.history["code_beta"], betas, rtol=1e-6)
    expected = [
        regimes.loss(w, x, code_beta=beta)
        for w, beta in zip(weights.weights, betas)
    ]
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-5)
    assert model.get_layer("code").beta == regimes.CODE_BETA


@pytest.mark.parametrize(
    "layers,epochs,error,fragment",
    [
        ("out", 2, ValueError, "'out' is a Dense, not a SparseDense"),
        ("missing", 2, ValueError, "no layer named 'missing'"),
        ("code", 0, ValueError, "argument `epochs`"),
        ("code", 1.5, ValueError, "argument `epochs`"),
        (3, 2, TypeError, "argument `layers`"),
    ],
)
def test_beta_warmup_misuse_gets_a_clear_error(layers, epochs, error, fragment):
    x = regimes.data()
    with pytest.raises(error, match=fragment):
        warmup = BetaWarmup(layers, epochs=epochs)
        regimes.build().fit(x, x, epochs=1, verbose=0, callbacks=[warmup])
