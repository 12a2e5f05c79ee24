"""The model every training regime is checked on, and its references.

Shared by `test_regimes.py` (regimes that run in the test process) and by
the fresh processes of the data-parallel regimes, which import it from
`tests/` (on `PYTHONPATH`). Keras is imported by the caller first, with its
devices set up.

The model has what breaks regimes: a sigmoid layer with an L1 activity
regularizer and an L2 kernel regularizer, a `hard_sigmoid` `SparseDense`
code whose first unit is dead (bias -120: exactly 0, with a zero derivative,
in every dtype) and whose second is saturated (bias +30: exactly 1, with a
zero derivative), and a sigmoid output layer with a `KLSparsityRegularizer`
whose first unit is dead too (bias -120: 0 in float32 and float16, the
case where an unbounded float16 gradient, -inf times the sigmoid's zero
derivative, gives NaN on every backend). Its starting weights come from a
NumPy generator, the same everywhere.

The code is `hard_sigmoid`, not `sigmoid`, because a saturated sigmoid unit
is a knife edge in float32: its derivative `s * (1 - s)` is exactly 0 when
`s` rounds to 1, and 6e-8 when it rounds one step below, where the penalty's
slope (about `(1 - rho) / 2**-24`) turns it into a push of about
`(1 - rho) * beta / N` per example. Which of the two a step gets depends
on the last bit of the backend's sigmoid: two backends, or two compiled
functions, that round it differently part, after four SGD steps, by far
more than the tolerances here.
"""

import keras
import numpy as np

from keras_sparsity import KLSparsityRegularizer, SparseDense
from keras_sparsity.regularizers import _KERAS_DIVIDES_ACTIVITY_LOSS

FEATURES, HIDDEN, CODE = 12, 10, 6
L1, L2 = 1e-3, 1e-3
CODE_RHO, CODE_BETA = 0.1, 0.05
OUT_RHO, OUT_BETA = 0.3, 0.02
BATCH, STEPS = 8, 4
LEARNING_RATE = 0.5


def data(batch=BATCH, steps=STEPS):
    """`batch * steps` examples; the halves of each batch differ."""
    x = np.random.default_rng(0).random((steps, batch, FEATURES))
    x[:, : batch // 2] *= 0.2
    return x.reshape(-1, FEATURES).astype("float32")


def batches(x, batch=BATCH):
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def initial_weights():
    """Kernels and biases, float64, layer by layer."""
    rng = np.random.default_rng(1)
    code_bias = np.zeros(CODE)
    code_bias[:2] = (-120.0, 30.0)  # 0 and 1 exactly, in every dtype
    out_bias = np.zeros(FEATURES)
    out_bias[0] = -120.0  # a dead sigmoid unit: 0 in float32 and float16
    return {
        "hidden": (rng.normal(0, 0.5, (FEATURES, HIDDEN)), np.zeros(HIDDEN)),
        "code": (rng.normal(0, 0.5, (HIDDEN, CODE)), code_bias),
        "out": (rng.normal(0, 0.5, (CODE, FEATURES)), out_bias),
    }


# Keras's eager JAX steps (`jit_compile=False`) can drop or double the loss
# of one layer when several layers add losses (`docs/backends.md`, "A Keras
# bug on JAX"): on JAX the model is always compiled, as JAX's default is.
JAX = keras.backend.backend() == "jax"


def build(policy=None, jit_compile=JAX, cross_replica=None):
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(
        HIDDEN,
        activation="sigmoid",
        kernel_regularizer=keras.regularizers.L2(L2),
        activity_regularizer=keras.regularizers.L1(L1),
        # Float32 under a mixed policy: on TensorFlow, Keras cannot add a
        # float16 activity-regularizer loss to the float32 compiled loss.
        name="hidden",
    )(inputs)
    code = SparseDense(
        CODE,
        activation="hard_sigmoid",
        rho=CODE_RHO,
        beta=CODE_BETA,
        cross_replica=cross_replica,
        dtype=policy,
        name="code",
    )(hidden)
    outputs = keras.layers.Dense(
        FEATURES,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(
            OUT_RHO, OUT_BETA, cross_replica=cross_replica
        ),
        dtype=policy,
        name="out",
    )(code)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss="mse",
        jit_compile=jit_compile,
    )
    set_weights(model, initial_weights())
    return model


def set_weights(model, weights):
    for name, (kernel, bias) in weights.items():
        layer = model.get_layer(name)
        layer.kernel.assign(kernel.astype(layer.kernel.dtype))
        layer.bias.assign(bias.astype(layer.bias.dtype))


def get_weights(model):
    """Kernels and biases as float64 arrays (not `rho` and `beta`)."""
    return {
        name: tuple(
            np.asarray(keras.ops.convert_to_numpy(v), np.float64)
            for v in (model.get_layer(name).kernel, model.get_layer(name).bias)
        )
        for name in ("hidden", "code", "out")
    }


def max_difference(a, b):
    return max(
        float(np.max(np.abs(u - v)))
        for name in a
        for u, v in zip(a[name], b[name])
    )


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _hard_sigmoid(z):
    return np.clip(z / 6.0 + 0.5, 0.0, 1.0)


def kl(activations, rho, beta):
    """`beta * sum_j KL(rho || rho_hat_j)` in float64, from the formula."""
    q = np.clip(
        activations.mean(axis=0), np.finfo(np.float32).tiny, 1 - 2.0**-24
    )
    terms = rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))
    return beta * float(np.sum(terms))


def loss(weights, x, replicas=1, global_penalty=True, code_beta=CODE_BETA):
    """The compiled loss plus every penalty, in float64, as Keras logs it.

    With several replicas, each takes an equal share of the batch and Keras
    logs the mean of their losses; the KL penalties are the global batch's
    (`global_penalty`) or each share's own.
    """
    shares = np.split(np.asarray(x, np.float64), replicas)
    total = 0.0
    for share in shares:
        hidden = _sigmoid(share @ weights["hidden"][0] + weights["hidden"][1])
        code = _hard_sigmoid(hidden @ weights["code"][0] + weights["code"][1])
        out = _sigmoid(code @ weights["out"][0] + weights["out"][1])
        l1 = L1 * np.sum(np.abs(hidden))
        if _KERAS_DIVIDES_ACTIVITY_LOSS:
            l1 /= len(share)
        total += (
            np.mean((out - share) ** 2)
            + l1
            + L2 * np.sum(weights["hidden"][0] ** 2)
        )
        if not global_penalty:
            total += kl(code, CODE_RHO, code_beta) + kl(out, OUT_RHO, OUT_BETA)
    if global_penalty:
        everything = np.asarray(x, np.float64)
        hidden = _sigmoid(
            everything @ weights["hidden"][0] + weights["hidden"][1]
        )
        code = _hard_sigmoid(hidden @ weights["code"][0] + weights["code"][1])
        out = _sigmoid(code @ weights["out"][0] + weights["out"][1])
        total += replicas * (
            kl(code, CODE_RHO, code_beta) + kl(out, OUT_RHO, OUT_BETA)
        )
    return total / replicas


def reference_run(x):
    """One float32 device, one `train_on_batch` per batch (not compiled,
    except on JAX).

    Returns the float64 losses at the weights before each step (what `fit`
    logs, as their mean) and the final weights.
    """
    model = build()
    losses = []
    for batch in batches(x):
        losses.append(loss(get_weights(model), batch))
        model.train_on_batch(batch, batch)
    return losses, get_weights(model)
