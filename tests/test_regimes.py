"""Every advertised training regime trains: steps applied, logged loss and
weights against references.

The model (`regimes.py`) has a dead and a saturated code unit, an L1 activity
regularizer upstream and an L2 kernel regularizer. Each regime trains it for
a few SGD steps with `fit`; the references are a float64 computation of the
loss Keras logs, at the weights of a float32 eager run on one device, and
that run's final weights. The data-parallel regimes need fresh processes
and live in `test_distribution.py`.
"""

import keras
import numpy as np
import pytest

import regimes

BACKEND = keras.backend.backend()

# name: (how the model is built, tolerance of the logged loss (relative)
# and of the weights (absolute)).
REGIMES = {
    "float32": ({}, 1e-5, 1e-5),
    "jit_compile": ({"jit_compile": True}, 1e-5, 1e-5),
    "mixed_float16": ({"policy": "mixed_float16"}, 5e-3, 5e-3),
    "mixed_bfloat16": ({"policy": "mixed_bfloat16"}, 3e-2, 3e-2),
    "floatx_float64": ({"floatx": "float64"}, 1e-5, 1e-5),
    "floatx_float16": ({"floatx": "float16"}, 1e-2, 1e-2),
}


@pytest.fixture(scope="module")
def reference():
    x = regimes.data()
    losses, weights = regimes.reference_run(x)
    keras.backend.clear_session(free_memory=False)
    return x, float(np.mean(losses)), weights


def keras_alone_trains(floatx):
    """Whether Keras trains a plain model with an L1 activity regularizer
    under `floatx`: Keras 3.12's own `L1` fails under float64 and float16
    on TensorFlow (a float32 constant times the activations)."""
    x = np.ones((4, 2), "float32")
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(
        2, activity_regularizer=keras.regularizers.L1(0.1)
    )(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    try:
        model.fit(x, x, verbose=0)
    except TypeError:
        return False
    return True


def train(x, floatx=None, **build):
    default = keras.config.floatx()
    if floatx:
        keras.config.set_floatx(floatx)
    try:
        if floatx and not keras_alone_trains(floatx):
            pytest.skip(
                f"Keras {keras.__version__} alone cannot train an L1 "
                f"activity regularizer under floatx {floatx}"
            )
        model = regimes.build(**build)
        history = model.fit(
            x, x, batch_size=regimes.BATCH, shuffle=False, verbose=0
        )
    finally:
        keras.config.set_floatx(default)
    return model, history.history["loss"][0]


@pytest.mark.parametrize("name", sorted(REGIMES))
def test_regime_applies_every_step_and_matches_the_references(name, reference):
    build, loss_tolerance, weight_tolerance = REGIMES[name]
    if name == "jit_compile" and BACKEND == "torch":
        pytest.skip("torch.compile takes minutes: test_torch_compile (slow)")
    x, expected_loss, expected_weights = reference
    model, logged = train(x, **build)
    assert int(model.optimizer.iterations) == regimes.STEPS
    np.testing.assert_allclose(logged, expected_loss, rtol=loss_tolerance)
    difference = regimes.max_difference(
        regimes.get_weights(model), expected_weights
    )
    assert difference < weight_tolerance


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile is PyTorch's")
def test_torch_compile_applies_every_step_and_matches_the_references(
    reference, tmp_path
):
    x, expected_loss, expected_weights = reference
    model, logged = train(x, jit_compile=True)
    assert int(model.optimizer.iterations) == regimes.STEPS
    np.testing.assert_allclose(logged, expected_loss, rtol=1e-5)
    assert (
        regimes.max_difference(regimes.get_weights(model), expected_weights)
        < 1e-5
    )
    # A model saved compiled with jit_compile=True (as JAX compiles by
    # default) predicts under torch.compile once loaded.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.jit_compile is True
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_the_dead_and_saturated_units_are_what_they_claim(reference):
    x, _, weights = reference
    model = regimes.build()
    encoder = keras.Model(model.inputs, model.get_layer("code").output)
    codes = keras.ops.convert_to_numpy(encoder(x))
    assert np.all(codes[:, 0] == 0.0) and np.all(codes[:, 1] == 1.0)
    outputs = keras.ops.convert_to_numpy(model(x))
    assert np.all(outputs[:, 0] < 1e-12)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_a_new_beta_reaches_the_compiled_step(policy):
    # `layer.beta = ...` during training changes the loss of the next
    # step, whether or not TensorFlow or JAX compiled it, as the float64
    # loss at the new beta says.
    x = regimes.data()
    model = regimes.build(policy=None if policy == "float32" else policy)
    # Both steps are compiled (on TensorFlow and JAX) before beta changes.
    model.fit(x, x, batch_size=len(x), shuffle=False, verbose=0)
    model.evaluate(x, x, batch_size=len(x), verbose=0)
    code = model.get_layer("code")
    code.beta = 0.5
    weights = regimes.get_weights(model)
    expected = regimes.loss(weights, x) + regimes.kl(
        keras.ops.convert_to_numpy(
            keras.Model(model.inputs, code.output)(x)
        ).astype(np.float64),
        regimes.CODE_RHO,
        0.5 - regimes.CODE_BETA,
    )
    logged = model.evaluate(x, x, batch_size=len(x), verbose=0)
    rtol = 1e-5 if policy == "float32" else 5e-3
    np.testing.assert_allclose(logged, expected, rtol=rtol)
    history = model.fit(x, x, batch_size=len(x), shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=rtol)
