"""KLSparsityRegularizer against a float64 NumPy reference of the formula."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import keras_sparsity
from keras_sparsity import KLSparsityRegularizer
from keras_sparsity.regularizers import (
    _KERAS_DIVIDES_ACTIVITY_LOSS,
    _keras_version,
)

from conftest import (
    gradient,
    kl_gradient_reference,
    kl_penalty_reference,
    to_numpy,
)

SHAPES = [(1, 3), (7, 5), (256, 20), (4, 6, 3), (2, 5, 5, 4), (3, 2, 2, 2, 6)]
RHO_BETA = [(0.05, 3.0), (0.01, 3.0), (0.2, 0.5), (0.5, 1.0), (0.9, 10.0)]


def sigmoid_activations(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (1.0 / (1.0 + np.exp(-rng.normal(-1.0, 2.0, shape)))).astype(
        "float32"
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rho,beta", RHO_BETA)
def test_penalty_matches_float64_reference(shape, rho, beta):
    x = sigmoid_activations(shape, seed=len(shape))
    regularizer = KLSparsityRegularizer(rho=rho, beta=beta)
    got = to_numpy(regularizer.penalty(x))
    assert got.dtype == np.float32
    np.testing.assert_allclose(
        got, kl_penalty_reference(x, rho, beta), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("axis", [1, 2, -2])
def test_penalty_over_other_feature_axes(axis):
    x = sigmoid_activations((4, 3, 5), seed=3)
    regularizer = KLSparsityRegularizer(rho=0.1, beta=2.0, axis=axis)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x)),
        kl_penalty_reference(x, 0.1, 2.0, axis=axis),
        rtol=1e-5,
    )


def test_rho_hat_is_a_per_unit_batch_mean_not_a_scalar_mean():
    # Unit 0 fires always and unit 1 never: the layer-wide mean is 0.5, which
    # a scalar `mean(activations)` would score as 2 * KL(0.5 || 0.5) = 0.
    x = np.array([[1.0, 0.0]] * 4, dtype="float32")
    penalty = float(to_numpy(KLSparsityRegularizer(0.5, 1.0).penalty(x)))
    assert penalty == pytest.approx(kl_penalty_reference(x, 0.5, 1.0), 1e-4)
    assert penalty > 10.0


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 6.0), (-2, 3)])
def test_value_range_maps_onto_unit_interval(value_range):
    low, high = value_range
    x = sigmoid_activations((16, 8), seed=5) * (high - low) + low
    regularizer = KLSparsityRegularizer(0.1, 3.0, value_range=value_range)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x)),
        kl_penalty_reference(x, 0.1, 3.0, value_range=value_range),
        rtol=1e-5,
    )


def test_mask_leaves_padded_positions_out():
    x = sigmoid_activations((3, 4, 5), seed=6)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x, mask=mask)),
        kl_penalty_reference(x, 0.05, 3.0, mask=mask),
        rtol=1e-5,
    )


@pytest.mark.parametrize("shape", [(9, 4), (3, 5, 2), (2, 3, 3, 4)])
@pytest.mark.parametrize("rho,beta", [(0.05, 3.0), (0.3, 0.7)])
def test_gradient_matches_closed_form(shape, rho, beta):
    # Ng's notes: d/da_bj = beta / N * (-rho / rho_hat_j
    #                                   + (1 - rho) / (1 - rho_hat_j)).
    x = sigmoid_activations(shape, seed=7)
    regularizer = KLSparsityRegularizer(rho=rho, beta=beta)
    got = gradient(regularizer.penalty, x)
    np.testing.assert_allclose(
        got, kl_gradient_reference(x, rho, beta), rtol=1e-4, atol=1e-7
    )


def test_gradient_scales_with_the_upstream_gradient():
    # Inside a loss the penalty's gradient arrives multiplied (by Keras's
    # 1 / batch size, by a loss weight): the chain rule must carry it.
    x = sigmoid_activations((9, 4), seed=22)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    got = gradient(lambda v: 0.37 * regularizer.penalty(v), x)
    np.testing.assert_allclose(
        got, 0.37 * kl_gradient_reference(x, 0.05, 3.0), rtol=1e-4
    )


def test_masked_gradient_is_the_formula_on_kept_positions_and_zero_elsewhere():
    x = sigmoid_activations((3, 4, 5), seed=23)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    got = gradient(lambda v: 0.5 * regularizer.penalty(v, mask=mask), x)
    kept = x[mask].astype(np.float64)  # (7, 5): the positions rho_hat covers
    expected = np.zeros(x.shape)
    expected[mask] = 0.5 * kl_gradient_reference(kept, 0.05, 3.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("rho", [0.25, 0.75])
def test_gradient_near_the_target_does_not_cancel(rho):
    # Each unit's mean lies a few float32 steps from rho (exact in float32,
    # like rho): the gradient is tiny there. Written as the difference of
    # -rho / q and (1 - rho) / (1 - q), two numbers near 1, it would keep
    # only a few correct digits.
    steps = np.array([2.0**-22, -(2.0**-21), 2.0**-16, -(2.0**-12)])
    x = np.tile(rho + steps, (4, 1)).astype("float32")
    got = gradient(KLSparsityRegularizer(rho, 2.0).penalty, x)
    np.testing.assert_allclose(
        got, kl_gradient_reference(x, rho, 2.0), rtol=2e-6
    )


def test_gradient_with_value_range_follows_the_chain_rule():
    x = sigmoid_activations((6, 4), seed=8) * 2.0 - 1.0
    regularizer = KLSparsityRegularizer(0.1, 2.0, value_range=(-1, 1))
    got = gradient(regularizer.penalty, x)
    np.testing.assert_allclose(
        got,
        kl_gradient_reference(x, 0.1, 2.0, value_range=(-1, 1)),
        rtol=1e-4,
    )


AWKWARD = {
    "zeros": np.zeros((8, 5), "float32"),
    "ones": np.ones((8, 5), "float32"),
    "above_one": np.full((8, 5), 3.5, "float32"),
    "negative": np.full((8, 5), -2.0, "float32"),
    "mixed": np.array([[0.0, 1.0, -4.0, 9.0, 0.5]] * 8, "float32"),
    "one_example": np.array([[0.0, 1.0, 0.2, 0.7, 1.0]], "float32"),
}


@pytest.mark.parametrize("name", sorted(AWKWARD))
def test_awkward_inputs_give_finite_penalty_and_gradient(name):
    x = AWKWARD[name]
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    penalty = to_numpy(regularizer.penalty(x))
    grad = gradient(regularizer.penalty, x)
    assert np.isfinite(penalty)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        penalty, kl_penalty_reference(x, 0.05, 3.0), rtol=1e-4
    )


@pytest.mark.parametrize("shape", [(0, 5), (0, 3, 4), (2, 0, 4)])
def test_empty_batch_gives_zero_penalty_and_finite_gradient(shape):
    x = np.zeros(shape, "float32")
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    assert float(to_numpy(regularizer.penalty(x))) == 0.0
    assert float(to_numpy(regularizer(x))) == 0.0
    grad = gradient(regularizer.penalty, x)
    assert grad.shape == shape and np.all(np.isfinite(grad))


def test_empty_batch_through_a_layer_adds_zero_loss():
    layer = keras.layers.Dense(
        4, activation="sigmoid", activity_regularizer=KLSparsityRegularizer()
    )
    layer(np.zeros((0, 3), "float32"))
    assert [float(to_numpy(loss)) for loss in layer.losses] == [0.0]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_activations_are_computed_in_float32(dtype):
    x32 = sigmoid_activations((512, 30), seed=9) * 0.2
    x = ops.cast(x32, dtype)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    got = regularizer.penalty(x)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    rounded = to_numpy(ops.cast(x, "float32"))
    np.testing.assert_allclose(
        to_numpy(got), kl_penalty_reference(rounded, 0.05, 3.0), rtol=1e-4
    )
    grad = gradient(lambda v: regularizer.penalty(ops.cast(v, dtype)), x32)
    assert np.all(np.isfinite(grad))


def test_float16_sum_of_a_large_batch_does_not_overflow():
    # 80000 activations near 0.9 sum to about 72000, past float16's maximum
    # (65504); float32 accumulation keeps rho_hat within about 1e-4.
    rng = np.random.default_rng(10)
    x = ops.cast(rng.uniform(0.8, 1.0, (80000, 2)).astype("float32"), "float16")
    penalty = to_numpy(KLSparsityRegularizer(0.05, 1.0).penalty(x))
    rounded = to_numpy(ops.cast(x, "float32"))
    np.testing.assert_allclose(
        penalty, kl_penalty_reference(rounded, 0.05, 1.0), rtol=1e-3
    )


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(-0.5, 1.5, width=32),
    ),
    rho=st.floats(1e-3, 1 - 1e-3),
    beta=st.floats(0.0, 100.0),
)
def test_penalty_is_never_negative(x, rho, beta):
    penalty = float(to_numpy(KLSparsityRegularizer(rho, beta).penalty(x)))
    assert math.isfinite(penalty)
    assert penalty >= 0.0


@settings(max_examples=60, deadline=None)
@given(
    log2_batch=st.integers(1, 8),
    data=st.data(),
    units=st.integers(1, 6),
    beta=st.floats(0.0, 100.0),
)
def test_penalty_is_exactly_zero_when_every_rho_hat_equals_rho(
    log2_batch, data, units, beta
):
    # rho = k / 2**m is exact in float32, and so is the mean of a column of
    # k ones among 2**m entries: every rho_hat_j equals rho exactly.
    batch = 2**log2_batch
    ones = data.draw(st.integers(1, batch - 1))
    rho = ones / batch
    columns = [
        data.draw(st.permutations([1.0] * ones + [0.0] * (batch - ones)))
        for _ in range(units)
    ]
    x = np.array(columns, dtype="float32").T
    penalty = float(to_numpy(KLSparsityRegularizer(rho, beta).penalty(x)))
    assert penalty == 0.0


@settings(max_examples=40, deadline=None)
@given(rho=st.floats(0.01, 0.99), units=st.integers(1, 8))
def test_penalty_is_near_zero_for_constant_activations_at_rho(rho, units):
    x = np.full((5, units), rho, dtype="float32")
    penalty = float(to_numpy(KLSparsityRegularizer(rho, 3.0).penalty(x)))
    assert 0.0 <= penalty < 1e-5


# --- __call__, Keras's batch-size division and the exact contract ---------


def test_version_parsing():
    assert _keras_version("3.13.2") == (3, 13)
    assert _keras_version("3.14.0") == (3, 14)
    assert _keras_version("3.14.0.dev2026011700") == (3, 14)
    assert _keras_version("3.15rc1") == (3, 15)


def test_version_flag_matches_what_the_installed_keras_does():
    # Probe Keras with a plain function that always returns 1: Keras >= 3.14
    # divides it by the batch size, earlier Keras 3 does not.
    layer = keras.layers.Dense(
        2, activity_regularizer=lambda x: ops.cast(1.0, "float32")
    )
    layer(np.ones((4, 3), "float32"))
    added = float(to_numpy(layer.losses[0]))
    assert added == (0.25 if _KERAS_DIVIDES_ACTIVITY_LOSS else 1.0)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_call_compensates_for_keras_batch_division(batch_size):
    x = sigmoid_activations((batch_size, 6), seed=batch_size)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    scale = batch_size if _KERAS_DIVIDES_ACTIVITY_LOSS else 1
    np.testing.assert_allclose(
        to_numpy(regularizer(x)),
        scale * kl_penalty_reference(x, 0.05, 3.0),
        rtol=1e-5,
    )


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_layer_losses_equal_the_formula_for_every_batch_size(batch_size):
    rng = np.random.default_rng(batch_size)
    inputs = rng.random((batch_size, 10)).astype("float32")
    layer = keras.layers.Dense(
        5,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.05, 3.0),
    )
    outputs = to_numpy(layer(inputs))
    (loss,) = layer.losses
    np.testing.assert_allclose(
        to_numpy(loss), kl_penalty_reference(outputs, 0.05, 3.0), rtol=1e-5
    )


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_training_loss_is_mse_plus_the_exact_penalty(batch_size):
    # What the optimizer minimizes, as `evaluate` reports it for one batch:
    # the compiled MSE plus exactly the penalty, not penalty / batch_size.
    rng = np.random.default_rng(batch_size)
    x = rng.random((batch_size, 12)).astype("float32")
    inputs = keras.Input((12,))
    code = keras.layers.Dense(
        6,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.05, 3.0),
        name="code",
    )(inputs)
    outputs = keras.layers.Dense(12, activation="sigmoid")(code)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    loss = model.evaluate(x, x, batch_size=batch_size, verbose=0)
    encoder = keras.Model(inputs, code)
    codes = to_numpy(encoder(x)).astype(np.float64)
    mse = np.mean((to_numpy(model(x)).astype(np.float64) - x) ** 2)
    np.testing.assert_allclose(
        loss, mse + kl_penalty_reference(codes, 0.05, 3.0), rtol=1e-5
    )


# --- configuration and validation -----------------------------------------


def test_get_config_round_trip_and_registration():
    regularizer = KLSparsityRegularizer(0.02, 4, value_range=(-1, 1), axis=1)
    config = regularizer.get_config()
    assert config == {
        "rho": 0.02,
        "beta": 4.0,
        "value_range": [-1.0, 1.0],
        "axis": 1,
        "cross_replica": None,
    }
    assert all(type(v) is float for v in (config["rho"], config["beta"]))
    clone = KLSparsityRegularizer.from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(regularizer)
    assert serialized["registered_name"] == (
        "keras_sparsity>KLSparsityRegularizer"
    )
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, KLSparsityRegularizer)
    assert restored.get_config() == config
    assert keras.regularizers.get(serialized).get_config() == config


def test_defaults_and_public_names():
    regularizer = KLSparsityRegularizer()
    assert (regularizer.rho, regularizer.beta) == (0.05, 0.02)
    assert regularizer.value_range is None and regularizer.axis == -1
    assert isinstance(keras_sparsity.__version__, str)
    assert repr(regularizer) == (
        "KLSparsityRegularizer(rho=0.05, beta=0.02, value_range=None, "
        "axis=-1, cross_replica=None)"
    )


RHO_MSG = "a float strictly between 0 and 1"


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (
            {"rho": 1.5},
            ValueError,
            "Invalid value for argument `rho`: expected "
            + RHO_MSG
            + ". Received: rho=1.5",
        ),
        (
            {"rho": 0},
            ValueError,
            "Invalid value for argument `rho`: expected "
            + RHO_MSG
            + ". Received: rho=0.0",
        ),
        (
            {"rho": 1.0},
            ValueError,
            "Invalid value for argument `rho`: expected "
            + RHO_MSG
            + ". Received: rho=1.0",
        ),
        (
            {"rho": float("nan")},
            ValueError,
            "Invalid value for argument `rho`: expected "
            + RHO_MSG
            + ". Received: rho=nan",
        ),
        (
            {"rho": "0.05"},
            TypeError,
            "Invalid type for argument `rho`: expected a float. "
            "Received: rho='0.05' (of type str)",
        ),
        (
            {"rho": True},
            TypeError,
            "Invalid type for argument `rho`: expected a float. "
            "Received: rho=True (of type bool)",
        ),
        (
            {"rho": None},
            TypeError,
            "Invalid type for argument `rho`: expected a float. "
            "Received: rho=None (of type NoneType)",
        ),
        (
            {"beta": -1},
            ValueError,
            "Invalid value for argument `beta`: expected a float >= 0. "
            "Received: beta=-1.0",
        ),
        (
            {"beta": float("inf")},
            ValueError,
            "Invalid value for argument `beta`: expected a float >= 0. "
            "Received: beta=inf",
        ),
        (
            {"beta": [3.0]},
            TypeError,
            "Invalid type for argument `beta`: expected a float. "
            "Received: beta=[3.0] (of type list)",
        ),
        (
            {"value_range": (1, 0)},
            ValueError,
            "Invalid value for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high. "
            "Received: value_range=(1, 0)",
        ),
        (
            {"value_range": (0, float("inf"))},
            ValueError,
            "Invalid value for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high. "
            "Received: value_range=(0, inf)",
        ),
        (
            {"value_range": (0.0,)},
            TypeError,
            "Invalid type for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high. "
            "Received: value_range=(0.0,)",
        ),
        (
            {"value_range": "tanh"},
            TypeError,
            "Invalid type for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high. "
            "Received: value_range='tanh'",
        ),
        (
            {"cross_replica": 1},
            TypeError,
            "Invalid type for argument `cross_replica`: expected a bool or "
            "None. Received: cross_replica=1 (of type int)",
        ),
        (
            {"axis": 0},
            ValueError,
            "Invalid value for argument `axis`: expected a non-zero int from "
            "-4 to 4, the feature axis of an output of rank 2 to 5 (axis 0 is "
            "the batch axis). Received: axis=0",
        ),
        (
            {"axis": 5},
            ValueError,
            "Invalid value for argument `axis`: expected a non-zero int from "
            "-4 to 4, the feature axis of an output of rank 2 to 5 (axis 0 is "
            "the batch axis). Received: axis=5",
        ),
        (
            {"value_range": np.array([1.0, 2.0, 3.0])},
            TypeError,
            "Invalid type for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high. "
            "Received: value_range=array([1., 2., 3.])",
        ),
        (
            {"axis": True},
            TypeError,
            "Invalid type for argument `axis`: expected an int. "
            "Received: axis=True (of type bool)",
        ),
        (
            {"axis": 1.0},
            TypeError,
            "Invalid type for argument `axis`: expected an int. "
            "Received: axis=1.0 (of type float)",
        ),
    ],
)
def test_validation_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        KLSparsityRegularizer(**kwargs)
    assert str(info.value) == message


def test_a_saved_config_with_an_impossible_axis_is_refused_when_loaded():
    config = KLSparsityRegularizer(axis=-1).get_config()
    with pytest.raises(ValueError, match="argument `axis`.*axis=5"):
        KLSparsityRegularizer.from_config({**config, "axis": 5})
    with pytest.raises(ValueError, match="argument `axis`.*axis=5"):
        keras.regularizers.get(
            {
                "module": None,
                "class_name": "KLSparsityRegularizer",
                "registered_name": "keras_sparsity>KLSparsityRegularizer",
                "config": {**config, "axis": 5},
            }
        )


def test_gradient_under_data_parallelism_is_the_global_penalty_s(monkeypatch):
    # Two replicas holding the same activations: the global batch has the
    # same means, and the averaged replica gradients must be one device's.
    # Each replica's gradient is the global penalty's times the replica
    # count; without that factor training would be twice too weak.
    from keras_sparsity import _replicas

    def all_reduce(value):
        return value * 2.0

    monkeypatch.setattr(
        _replicas, "current", lambda cross_replica: (2, all_reduce)
    )
    x = sigmoid_activations((9, 4), seed=26)
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x)),
        kl_penalty_reference(x, 0.05, 3.0),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        gradient(regularizer.penalty, x),
        kl_gradient_reference(x, 0.05, 3.0),
        rtol=1e-4,
    )


def test_numpy_scalars_and_array_likes_are_accepted():
    regularizer = KLSparsityRegularizer(
        np.float32(0.25), np.int64(2), value_range=np.array([-1, 1])
    )
    assert (regularizer.rho, regularizer.beta) == (0.25, 2.0)
    assert regularizer.value_range == (-1.0, 1.0)
    assert regularizer.get_config()["value_range"] == [-1.0, 1.0]
    assert type(regularizer.get_config()["value_range"][0]) is float


def test_rho_and_beta_are_held_as_float32_numbers():
    # The shortest decimal of the float32 value: what the user typed when it
    # has at most 7 significant digits, and a stable config round trip.
    regularizer = KLSparsityRegularizer(0.1234567891, 1 / 3)
    assert (regularizer.rho, regularizer.beta) == (0.12345679, 0.33333334)
    assert np.float32(regularizer.rho) == np.float32(0.1234567891)
    clone = KLSparsityRegularizer.from_config(regularizer.get_config())
    assert clone.get_config() == regularizer.get_config()


def test_rank_and_axis_errors_at_call_time():
    with pytest.raises(ValueError) as info:
        KLSparsityRegularizer().penalty(np.ones((4,), "float32"))
    assert str(info.value) == (
        "KLSparsityRegularizer expects activations of rank >= 2 "
        "(batch, ..., features). Received: x.shape=(4,)"
    )
    for axis in (2, -2):
        with pytest.raises(ValueError) as info:
            KLSparsityRegularizer(axis=axis).penalty(np.ones((4, 3), "float32"))
        assert str(info.value) == (
            f"Invalid axis {axis} for activations of rank 2: expected a "
            "feature axis from -1 to 1 (not the batch axis). "
            "Received: x.shape=(4, 3)"
        )
    with pytest.raises(ValueError) as info:
        KLSparsityRegularizer(axis=1).penalty(
            np.ones((4, 3, 2), "float32"), mask=np.ones((4, 3), bool)
        )
    assert str(info.value) == (
        "A `mask` needs the feature axis last (axis=-1). Received: axis=1"
    )


def test_arguments_set_after_construction_are_checked():
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    regularizer.beta = 0.5
    regularizer.rho = 0.2
    assert regularizer.get_config()["beta"] == 0.5
    x = sigmoid_activations((16, 4), seed=11)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x)),
        kl_penalty_reference(x, 0.2, 0.5),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="argument `beta`.*beta=-1.0"):
        regularizer.beta = -1
    with pytest.raises(ValueError, match="argument `rho`.*rho=1.5"):
        regularizer.rho = 1.5
    assert (regularizer.rho, regularizer.beta) == (0.2, 0.5)
    # The rest is settled at construction: a compiled step could not see a
    # change of the computation itself.
    for name, value in [
        ("cross_replica", False),
        ("value_range", (0, 2)),
        ("axis", 1),
    ]:
        with pytest.raises(AttributeError):
            setattr(regularizer, name, value)


# --- numerics: every accepted argument gives the float64 numbers ----------

EXTREME_RHO = [1.2e-38, 1e-30, 1e-9, 0.5, 1 - 1e-7, 1 - 2**-24]
EXTREME_BETA = [0.0, 1e-9, 3.0, 1e12]


@pytest.mark.parametrize("rho", EXTREME_RHO)
@pytest.mark.parametrize("beta", EXTREME_BETA)
def test_every_accepted_rho_and_beta_is_finite_and_exact(rho, beta):
    x = sigmoid_activations((32, 5), seed=12)
    x[:, 0] = 0.0  # a silent unit
    x[:, 1] = 1.0  # a saturated one
    regularizer = KLSparsityRegularizer(rho, beta)
    rho = float(np.float32(rho))  # what the penalty holds
    penalty = to_numpy(regularizer.penalty(x))
    grad = gradient(regularizer.penalty, x)
    assert np.isfinite(penalty) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        penalty, kl_penalty_reference(x, rho, beta), rtol=1e-4
    )
    # Units 2 to 4 have means inside (1e-12, 1): the formula's gradient.
    np.testing.assert_allclose(
        grad[:, 2:],
        kl_gradient_reference(x, rho, beta)[:, 2:],
        rtol=1e-4,
        atol=1e-30,
    )
    # Silent units are pushed up, saturated ones down, unless rho itself
    # lies beyond the clip points (1e-12 and 1 - 2**-24).
    if beta > 0 and 1e-12 < rho < 1 - 1e-7:
        assert np.all(grad[:, 0] < 0) and np.all(grad[:, 1] > 0)


@pytest.mark.parametrize(
    "value_range", [(-5e36, 5e36), (1e6, 1e6 + 1.0), (0.0, 1e-30)]
)
def test_extreme_value_ranges_are_finite_and_exact(value_range):
    low, high = value_range
    unit = sigmoid_activations((64, 3), seed=13).astype(np.float64)
    x = (low + unit * (high - low)).astype("float32")
    regularizer = KLSparsityRegularizer(0.1, 2.0, value_range=value_range)
    penalty = to_numpy(regularizer.penalty(x))
    grad = gradient(regularizer.penalty, x)
    assert np.isfinite(penalty) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        penalty,
        kl_penalty_reference(x, 0.1, 2.0, value_range=value_range),
        rtol=1e-4,
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"rho": 1e-39},
            "Invalid value for argument `rho`: expected a float from "
            "1.1754944e-38 (the smallest normal float32) to 0.99999994 (the "
            "largest float32 below 1), since the penalty is computed in "
            "float32. Received: rho=1e-39",
        ),
        (
            {"rho": 1 - 1e-9},
            "Invalid value for argument `rho`: expected a float from "
            "1.1754944e-38 (the smallest normal float32) to 0.99999994 (the "
            "largest float32 below 1), since the penalty is computed in "
            "float32. Received: rho=0.999999999",
        ),
        (
            {"beta": 1e13},
            "Invalid value for argument `beta`: expected a float <= 1e+12, "
            "since a larger weight overflows float32 in the gradient. "
            "Received: beta=10000000000000.0",
        ),
        (
            {"value_range": (-6e36, 6e36)},
            "Invalid value for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high, at most 1e37 in "
            "size and apart, and at least 1.2e-38 apart, so that float32 "
            "holds the mapped activations. Received: value_range=(-6e+36, "
            "6e+36)",
        ),
        (
            {"value_range": (0.0, 1e-40)},
            "Invalid value for argument `value_range`: expected a pair "
            "(low, high) of finite floats with low < high, at most 1e37 in "
            "size and apart, and at least 1.2e-38 apart, so that float32 "
            "holds the mapped activations. Received: value_range=(0.0, "
            "1e-40)",
        ),
    ],
)
def test_values_float32_cannot_hold_are_refused(kwargs, message):
    with pytest.raises(ValueError) as info:
        KLSparsityRegularizer(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "shape",
    [(1 << 24, 1), (1 << 22, 3), (256, 128, 128, 2), (4096, 4096, 1)],
)
def test_rho_hat_is_exact_over_millions_of_positions(shape):
    # The penalty's relative error follows rho_hat's (here rho_hat is near
    # 0.5 and far from rho): 1e-5 against float64 needs an accurate sum.
    rng = np.random.default_rng(14)
    x = rng.random(shape, dtype=np.float32)
    regularizer = KLSparsityRegularizer(0.05, 1.0)
    np.testing.assert_allclose(
        to_numpy(regularizer.penalty(x)),
        kl_penalty_reference(x, 0.05, 1.0),
        rtol=1e-5,
    )


def test_a_million_rows_at_rho_give_the_float64_penalty_of_about_zero():
    # float32(0.05) is 7e-10 above 0.05: float64 says about 1e-17. A plain
    # float32 sum on TensorFlow gave 2e-5, and a ratio near 1 rounded in
    # the KL gave 1e-7 for any number of rows.
    x = np.full((1_000_000, 3), 0.05, dtype="float32")
    penalty = float(to_numpy(KLSparsityRegularizer(0.05, 3.0).penalty(x)))
    expected = kl_penalty_reference(x, 0.05, 3.0)
    assert expected < 1e-16
    assert abs(penalty - expected) < 1e-10


@pytest.mark.parametrize("rho_hat", [1e-3, 1e-6, 1e-9, 1e-12])
def test_gradient_follows_the_formula_for_nearly_silent_units(rho_hat):
    # Issue: clipping rho_hat at 1e-7 gave exactly zero gradient below it,
    # so a unit that fell silent could never come back.
    x = np.full((8, 2), rho_hat, dtype="float32")
    x[:, 1] = 0.3
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    got = gradient(regularizer.penalty, x)
    np.testing.assert_allclose(
        got, kl_gradient_reference(x, 0.05, 3.0), rtol=0.1
    )


@pytest.mark.parametrize("z", [-16.0, -16.2, -20.0, -27.0])
def test_gradient_through_a_sigmoid_keeps_pushing_a_dead_unit(z):
    # dP/dz = sigmoid'(z) * dP/da, which the formula keeps at about
    # -beta * rho / N for a unit that is off on every example.
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    z = np.full((4, 1), z, dtype="float32")

    def penalty_of_z(v):
        return regularizer.penalty(ops.sigmoid(v))

    got = gradient(penalty_of_z, z)
    a = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    expected = kl_gradient_reference(a, 0.05, 3.0) * a * (1 - a)
    np.testing.assert_allclose(got, expected, rtol=0.1)
    assert np.all(got < -0.03)


def test_penalty_brings_a_dead_unit_back_in_training():
    # Started at bias -30 (mean activation about 1e-13), the unit is
    # pulled back towards rho by the penalty alone.
    x = np.random.default_rng(15).random((64, 4)).astype("float32")
    layer = keras.layers.Dense(
        2,
        activation="sigmoid",
        bias_initializer=keras.initializers.Constant(-30.0),
        activity_regularizer=KLSparsityRegularizer(0.05, 1.0),
    )
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.5), loss=lambda y, p: 0.0)
    before = to_numpy(model(x)).mean()
    repeated = np.tile(x, (150, 1))  # one epoch of 150 steps
    model.fit(repeated, repeated[:, :2], batch_size=64, epochs=1, verbose=0)
    after = to_numpy(model(x)).mean(axis=0)
    assert before < 1e-12
    assert np.all(after > 0.01), after


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_activations_give_a_nan_penalty_and_gradient(bad):
    # A clip would turn +inf into a mean activation near 1: a finite
    # penalty that hides the overflow upstream.
    x = sigmoid_activations((8, 3), seed=16)
    x[2, 1] = bad
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    assert np.isnan(to_numpy(regularizer.penalty(x)))
    grad = gradient(regularizer.penalty, x)
    assert np.all(np.isnan(grad[:, 1])) and np.all(np.isfinite(grad[:, 0]))


def gradient_bound(rho, beta, positions):
    """The documented bound of the gradient per activation."""
    return beta * max(rho * 1e12, (1 - rho) * 2.0**24) / positions


@pytest.mark.parametrize("level", [-2.0, 0.0, 1.0, 3.0, 1e30])
def test_gradient_outside_the_range_stays_within_the_documented_bound(level):
    # ReLU or softplus codes fed to the penalty without a value range: the
    # means are clipped into (0, 1), the penalty is a constant, and the
    # gradient is the formula's at the clip point, within the bound.
    x = np.full((16, 3), level, dtype="float32")
    regularizer = KLSparsityRegularizer(0.05, 0.5)
    penalty = float(to_numpy(regularizer.penalty(x)))
    grad = gradient(regularizer.penalty, x)
    assert np.isfinite(penalty) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        penalty, kl_penalty_reference(x, 0.05, 0.5), rtol=1e-4
    )
    bound = gradient_bound(0.05, 0.5, 16)
    assert np.max(np.abs(grad)) <= bound * (1 + 1e-6)
    # Pushed back towards the range: up from below, down from above.
    assert np.all(np.sign(grad) == (1.0 if level >= 1.0 else -1.0))


def test_float16_gradient_saturates_instead_of_overflowing():
    # A silent unit's slope is about rho / 1e-12 / N: past float16's
    # largest value. As inf it would make a loss-scale optimizer skip every
    # step; it saturates at 65504, with the formula's sign.
    x = sigmoid_activations((8, 4), seed=25)
    x[:, 0] = 0.0  # silent
    x[:, 1] = 1.0  # saturated
    regularizer = KLSparsityRegularizer(0.05, 0.02)

    def penalty_of_float16(v):
        return 1024.0 * regularizer.penalty(ops.cast(v, "float16"))

    x16 = to_numpy(ops.cast(x, "float16")).astype("float32")
    grad = gradient(penalty_of_float16, x16)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[:, 0] == -65504.0) and np.all(grad[:, 1] == 65504.0)
    np.testing.assert_allclose(
        grad[:, 2:],
        1024.0 * kl_gradient_reference(x16, 0.05, 0.02)[:, 2:],
        rtol=2e-3,
    )


@pytest.mark.parametrize(
    "mask_shape", [(4, 1), (1, 5), (4,), (4, 5, 1), (4, 5, 3)]
)
def test_mask_of_another_shape_is_refused(mask_shape):
    x = sigmoid_activations((4, 5, 3), seed=17)
    mask = np.ones(mask_shape, dtype=bool)
    with pytest.raises(ValueError) as info:
        KLSparsityRegularizer().penalty(x, mask=mask)
    assert str(info.value) == (
        "Invalid shape for argument `mask`: expected exactly x.shape[:-1] = "
        f"(4, 5) (masks are not broadcast). Received: mask.shape={mask_shape}"
    )
