"""SparseDense: a harness of public Keras APIs and float64 references."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_sparsity import KLSparsityRegularizer, SparseDense
from keras_sparsity.regularizers import _KERAS_DIVIDES_ACTIVITY_LOSS

from conftest import (
    gradient,
    kl_gradient_reference,
    kl_penalty_reference,
    to_numpy,
)


def dense_reference(layer, x):
    """The layer's forward pass in NumPy float64 from its own weights."""
    kernel = to_numpy(layer.kernel).astype(np.float64)
    y = np.asarray(x, np.float64) @ kernel
    if layer.use_bias:
        y = y + to_numpy(layer.bias).astype(np.float64)
    return y


def sigmoid(y):
    return 1.0 / (1.0 + np.exp(-y))


@pytest.mark.parametrize("shape", [(7, 10), (3, 4, 10), (2, 3, 3, 10)])
@pytest.mark.parametrize("batch_scale", [1, 37])
def test_outputs_and_loss_match_the_reference(shape, batch_scale):
    shape = (shape[0] * batch_scale,) + shape[1:]
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    layer = SparseDense(6, rho=0.05, beta=3.0)
    outputs = to_numpy(layer(x))
    expected = sigmoid(dense_reference(layer, x))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    (loss,) = layer.losses
    np.testing.assert_allclose(
        to_numpy(loss), kl_penalty_reference(expected, 0.05, 3.0), rtol=1e-5
    )


def test_loss_equals_dense_with_the_regularizer():
    x = np.random.default_rng(2).random((33, 8)).astype("float32")
    sparse = SparseDense(5, rho=0.1, beta=2.0, kernel_initializer="ones")
    dense = keras.layers.Dense(
        5,
        activation="sigmoid",
        kernel_initializer="ones",
        activity_regularizer=KLSparsityRegularizer(0.1, 2.0),
    )
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(dense(x)))
    np.testing.assert_allclose(
        to_numpy(sparse.losses[0]), to_numpy(dense.losses[0]), rtol=1e-6
    )


@pytest.mark.parametrize(
    "activation,value_range,act",
    [
        ("tanh", (-1.0, 1.0), np.tanh),
        ("softsign", (-1.0, 1.0), lambda y: y / (1 + np.abs(y))),
        ("relu6", (0.0, 6.0), lambda y: np.clip(y, 0, 6)),
    ],
)
def test_bounded_activations_are_mapped_onto_unit_interval(
    activation, value_range, act
):
    x = np.random.default_rng(3).normal(size=(16, 9)).astype("float32")
    layer = SparseDense(4, rho=0.2, beta=1.5, activation=activation)
    assert layer.sparsity_regularizer.value_range == value_range
    outputs = to_numpy(layer(x))
    expected = act(dense_reference(layer, x))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]),
        kl_penalty_reference(expected, 0.2, 1.5, value_range=value_range),
        rtol=1e-5,
    )


def test_custom_bounded_activation_with_value_range():
    def scaled_sigmoid(y):
        return 2.0 * ops.sigmoid(y)

    layer = SparseDense(
        3, beta=3.0, activation=scaled_sigmoid, value_range=(0, 2)
    )
    x = np.random.default_rng(4).normal(size=(5, 2)).astype("float32")
    layer(x)
    expected = 2.0 * sigmoid(dense_reference(layer, x))
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]),
        kl_penalty_reference(expected, 0.05, 3.0, value_range=(0, 2)),
        rtol=1e-5,
    )


def test_gradient_of_the_loss_reaches_the_kernel():
    # The gradient of the loss SparseDense adds, taken through the layer's
    # own call (`stateless_call`), against Ng's closed form:
    # d penalty / d kernel = x^T (dP/da * sigmoid'(z)).
    x = np.random.default_rng(5).random((12, 4)).astype("float32")
    layer = SparseDense(3, rho=0.05, beta=3.0, use_bias=False)
    layer.build(x.shape)
    kernel = to_numpy(layer.kernel)

    settings = [v.value for v in layer.non_trainable_variables]

    def loss_of_kernel(k):
        _, _, losses = layer.stateless_call(
            [k], settings, x, return_losses=True
        )
        (loss,) = losses
        return loss

    got = gradient(loss_of_kernel, kernel)
    a = sigmoid(x.astype(np.float64) @ kernel)
    expected = x.T @ (kl_gradient_reference(a, 0.05, 3.0) * a * (1 - a))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_masked_sequences_leave_padding_out_of_rho_hat():
    x = np.random.default_rng(6).random((3, 5, 4)).astype("float32")
    x[0, 3:] = 0.0
    x[2, 1:] = 0.0
    inputs = keras.Input((5, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    outputs = SparseDense(6, beta=3.0, name="sparse")(masked)
    model = keras.Model(inputs, outputs)
    y = to_numpy(model(x))
    mask = np.any(x != 0.0, axis=-1)
    np.testing.assert_allclose(
        to_numpy(model.losses[0]),
        kl_penalty_reference(y, 0.05, 3.0, mask=mask),
        rtol=1e-5,
    )


def test_extra_activity_regularizer_is_added_on_top():
    x = np.random.default_rng(7).random((4, 3)).astype("float32")
    layer = SparseDense(
        2, beta=3.0, activity_regularizer=keras.regularizers.L1(0.01)
    )
    y = to_numpy(layer(x))
    kinds = sorted(float(to_numpy(v)) for v in layer.losses)
    l1 = 0.01 * np.abs(y).sum()
    if _KERAS_DIVIDES_ACTIVITY_LOSS:
        l1 = l1 / 4
    np.testing.assert_allclose(
        kinds, sorted([kl_penalty_reference(y, 0.05, 3.0), l1]), rtol=1e-5
    )


def test_weight_regularizers_and_constraints_are_applied():
    layer = SparseDense(
        3,
        kernel_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.5),
        bias_regularizer=keras.regularizers.L1(0.25),
        bias_initializer=keras.initializers.Constant(2.0),
        kernel_constraint=keras.constraints.NonNeg(),
    )
    layer.build((None, 4))
    assert layer.kernel.constraint is layer.kernel_constraint
    weight_losses = sorted(
        float(to_numpy(v)) for v in layer.losses
    )  # no call yet: only the weight penalties
    assert weight_losses == [0.25 * 2.0 * 3, 0.5 * 12]


# --- the harness: symbolic and eager calls, config, training --------------


def test_symbolic_call_and_output_shape():
    layer = SparseDense(7)
    outputs = layer(keras.Input((5, 11)))
    assert tuple(outputs.shape) == (None, 5, 7)
    assert layer.compute_output_shape((None, 5, 11)) == (None, 5, 7)
    assert [w.name for w in layer.weights] == ["kernel", "bias", "rho", "beta"]
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    assert SparseDense(3, use_bias=False)(np.ones((2, 4))).shape == (2, 3)


def test_rank_one_inputs_are_refused():
    with pytest.raises(ValueError, match="expected min_ndim=2, found ndim=1"):
        SparseDense(3)(np.ones((4,), "float32"))


def test_config_round_trip():
    layer = SparseDense(
        12,
        rho=0.02,
        beta=4.0,
        activation="tanh",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(5e-4),
        activity_regularizer=keras.regularizers.L1(1e-3),
        kernel_constraint=keras.constraints.MaxNorm(2.0),
        name="code",
    )
    config = layer.get_config()
    assert config["units"] == 12 and config["activation"] == "tanh"
    assert (config["rho"], config["beta"]) == (0.02, 4.0)
    assert config["value_range"] is None
    clone = SparseDense.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "keras_sparsity>SparseDense"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, SparseDense)
    assert restored.get_config() == config
    assert restored.sparsity_regularizer.value_range == (-1.0, 1.0)


def test_config_keeps_an_explicit_value_range():
    layer = SparseDense(2, activation=keras.activations.sigmoid)
    assert layer.get_config()["value_range"] is None
    layer = SparseDense(2, activation="tanh", value_range=(-2, 2))
    assert layer.get_config()["value_range"] == [-2.0, 2.0]
    clone = SparseDense.from_config(layer.get_config())
    assert clone.sparsity_regularizer.value_range == (-2.0, 2.0)


def test_eager_training_step_lowers_the_loss():
    rng = np.random.default_rng(8)
    x = rng.random((64, 16)).astype("float32")
    model = keras.Sequential(
        [keras.Input((16,)), SparseDense(8, beta=3.0), keras.layers.Dense(16)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    before = model.evaluate(x, x, verbose=0)
    for _ in range(5):
        model.train_on_batch(x, x)
    after = model.evaluate(x, x, verbose=0)
    assert np.isfinite(after) and after < before


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x = np.random.default_rng(9).random((32, 10)).astype("float32")
    layer = SparseDense(6, dtype=policy)
    layer32 = SparseDense(6)
    outputs = layer(x)
    layer32.build(x.shape)
    layer32.set_weights(layer.get_weights())
    assert keras.backend.standardize_dtype(outputs.dtype) == policy[6:]
    loss = layer.losses[0]
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    layer32(x)
    tolerance = 2e-2 if policy == "mixed_bfloat16" else 2e-3
    np.testing.assert_allclose(
        to_numpy(loss), to_numpy(layer32.losses[0]), rtol=tolerance
    )


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "units,error,message",
    [
        (
            0,
            ValueError,
            "Invalid value for argument `units`: expected a positive int. "
            "Received: units=0",
        ),
        (
            -3,
            ValueError,
            "Invalid value for argument `units`: expected a positive int. "
            "Received: units=-3",
        ),
        (
            2.5,
            TypeError,
            "Invalid type for argument `units`: expected a positive int. "
            "Received: units=2.5 (of type float)",
        ),
        (
            True,
            TypeError,
            "Invalid type for argument `units`: expected a positive int. "
            "Received: units=True (of type bool)",
        ),
    ],
)
def test_units_validation(units, error, message):
    with pytest.raises(error) as info:
        SparseDense(units)
    assert str(info.value) == message


BOUNDED = (
    "['hard_sigmoid', 'hard_tanh', 'relu6', 'sigmoid', 'softsign', "
    "'sparse_sigmoid', 'tanh']"
)


@pytest.mark.parametrize("activation", ["relu", None, "linear", "softmax"])
def test_unbounded_activations_are_refused(activation):
    name = "linear" if activation is None else activation
    with pytest.raises(ValueError) as info:
        SparseDense(4, activation=activation)
    assert str(info.value) == (
        "Invalid value for argument `activation`: the KL sparsity penalty "
        "needs a bounded activation, since `rho` is a firing probability. "
        f"Use one of {BOUNDED}, or pass the output range of a custom "
        "bounded activation as `value_range=(low, high)`. "
        f"Received: activation='{name}'"
    )


def test_rho_and_beta_are_validated():
    with pytest.raises(ValueError) as info:
        SparseDense(4, rho=2.0)
    assert str(info.value) == (
        "Invalid value for argument `rho`: expected a float strictly between "
        "0 and 1. Received: rho=2.0"
    )
    with pytest.raises(ValueError) as info:
        SparseDense(4, beta=float("nan"))
    assert str(info.value) == (
        "Invalid value for argument `beta`: expected a float >= 0. "
        "Received: beta=nan"
    )


# --- one source of truth ----------------------------------------------------


def layer_and_input(**kwargs):
    x = np.random.default_rng(10).random((16, 5)).astype("float32")
    layer = SparseDense(4, **kwargs)
    layer(x)
    return layer, x


def test_rho_and_beta_set_after_construction_change_loss_and_config():
    layer, x = layer_and_input(rho=0.05, beta=3.0)
    layer.beta = 0.0
    layer.rho = 0.2
    outputs = to_numpy(layer(x))
    assert float(to_numpy(layer.losses[0])) == 0.0
    config = layer.get_config()
    assert (config["beta"], config["rho"]) == (0.0, 0.2)
    layer.beta = 2.0
    layer(x)
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]),
        kl_penalty_reference(outputs, 0.2, 2.0),
        rtol=1e-5,
    )
    # One fact: the layer's variables, which the regularizer reads.
    assert [float(to_numpy(v)) for v in layer.non_trainable_weights] == [
        np.float32(0.2),
        2.0,
    ]
    assert layer.sparsity_regularizer.get_config()["beta"] == 2.0
    clone = SparseDense.from_config(layer.get_config())
    assert clone.sparsity_regularizer.get_config() == (
        layer.sparsity_regularizer.get_config()
    )


def test_settings_are_float32_variables_whatever_the_policy():
    layer = SparseDense(3, dtype="mixed_float16")
    layer.build((None, 4))
    for variable in layer.non_trainable_weights:
        assert keras.backend.standardize_dtype(variable.dtype) == "float32"
        assert not variable.trainable


def test_what_a_compiled_step_cannot_see_is_settled_at_construction():
    layer, x = layer_and_input(activation="tanh")
    with pytest.raises(AttributeError, match="settled when the layer"):
        layer.activation = "sigmoid"
    with pytest.raises(AttributeError):
        layer.sparsity_regularizer.value_range = (0, 1)
    assert layer.sparsity_regularizer.value_range == (-1.0, 1.0)


@pytest.mark.parametrize(
    "name,value,error,fragment",
    [
        ("beta", -1.0, ValueError, "argument `beta`.*beta=-1.0"),
        ("rho", 0.0, ValueError, "argument `rho`.*rho=0.0"),
        ("rho", "0.1", TypeError, "argument `rho`.*rho='0.1'"),
    ],
)
def test_invalid_settings_after_construction_are_refused(
    name, value, error, fragment
):
    layer, x = layer_and_input(rho=0.05, beta=3.0)
    before = layer.get_config()
    with pytest.raises(error, match=fragment):
        setattr(layer, name, value)
    assert layer.get_config() == before


def test_value_range_takes_array_likes():
    layer = SparseDense(2, activation="tanh", value_range=np.array([-2, 2]))
    assert layer.get_config()["value_range"] == [-2.0, 2.0]
    assert layer.sparsity_regularizer.value_range == (-2.0, 2.0)


def test_it_is_a_dense_layer_and_keeps_its_penalty_under_lora():
    layer, x = layer_and_input(rho=0.1, beta=2.0)
    assert isinstance(layer, keras.layers.Dense)
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.ones((2, 4), "float32"))
    outputs = to_numpy(layer(x))
    kernel = to_numpy(layer.kernel).astype(np.float64)  # with the LoRA delta
    expected = sigmoid(
        x.astype(np.float64) @ kernel + to_numpy(layer.bias).astype(np.float64)
    )
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]),
        kl_penalty_reference(expected, 0.1, 2.0),
        rtol=1e-5,
    )


# --- documented behaviours ----------------------------------------------------


def test_time_distributed_adds_one_penalty_per_time_step():
    x = np.random.default_rng(11).random((4, 3, 5)).astype("float32")
    wrapper = keras.layers.TimeDistributed(SparseDense(2, rho=0.1, beta=2.0))
    outputs = to_numpy(wrapper(x))
    losses = sorted(float(to_numpy(v)) for v in wrapper.losses)
    expected = sorted(
        kl_penalty_reference(outputs[:, t], 0.1, 2.0) for t in range(3)
    )
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    # SparseDense on the sequence itself: one penalty over batch and steps.
    layer = SparseDense(2, rho=0.1, beta=2.0)
    outputs = to_numpy(layer(x))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(
        to_numpy(layer.losses[0]),
        kl_penalty_reference(outputs, 0.1, 2.0),
        rtol=1e-5,
    )


def test_keras_time_distributed_drops_activity_regularizers():
    x = np.random.default_rng(12).random((4, 3, 5)).astype("float32")
    wrapper = keras.layers.TimeDistributed(
        keras.layers.Dense(
            2,
            activation="sigmoid",
            activity_regularizer=KLSparsityRegularizer(0.1, 2.0),
        )
    )
    wrapper(x)
    assert wrapper.losses == []


def test_sample_weight_weights_the_loss_but_not_the_penalty():
    x = np.random.default_rng(13).random((8, 5)).astype("float32")
    weights = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    inputs = keras.Input((5,))
    code = SparseDense(3, rho=0.1, beta=2.0, name="code")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(5)(code))
    model.compile(optimizer="sgd", loss="mse")
    loss = model.evaluate(x, x, sample_weight=weights, batch_size=8, verbose=0)
    reconstructions = to_numpy(model(x)).astype(np.float64)
    per_example = np.mean((reconstructions - x) ** 2, axis=1)
    # Keras's "sum_over_batch_size" reduction of the weighted loss.
    weighted_mse = np.sum(per_example * weights) / len(x)
    codes = to_numpy(keras.Model(inputs, code)(x))
    penalty = kl_penalty_reference(codes, 0.1, 2.0)  # all 8 examples
    np.testing.assert_allclose(loss, weighted_mse + penalty, rtol=1e-5)
