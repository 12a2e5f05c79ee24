"""The benchmarks' model: the seed notebook's 784-200-784 autoencoder.

Imported once a benchmark has parsed its command line, after `common`: it
starts Keras quietly with `examples/quiet.py`. `build_autoencoder(run)`
builds the model with the penalty of a `common.config()`;
`code_and_reconstruction(model)` measures it.
"""

import quiet  # noqa: F401, I001  (first: Keras without TensorFlow's noise)

import keras
import numpy as np
from keras import ops

from keras_sparsity import KLSparsityRegularizer, SparseDense

CODE_UNITS = 200
IMAGE_PIXELS = 784
OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "sgd": lambda: keras.optimizers.SGD(0.01),
}
KL_OWN = ("kl", "sparse_dense")  # the penalties that take cross_replica
_MAJOR_MINOR = tuple(int(part) for part in keras.__version__.split(".")[:2])


class PeerKL(keras.regularizers.Regularizer):
    """The KL penalty as people copy it today: the peer to beat.

    Géron's regularizer ("Hands-On Machine Learning", ch. 17) ported to
    `keras.ops`: `beta * sum(rho * log(rho / rho_hat) + (1 - rho) *
    log((1 - rho) / (1 - rho_hat)))`, `rho_hat = mean(x, axis=0)` clipped
    to `[epsilon, 1 - epsilon]`; times the batch size on Keras >= 3.14,
    which divides an activity regularizer's loss by it.
    """

    def __init__(self, rho, beta):
        self.rho = rho
        self.beta = beta

    def __call__(self, x):
        epsilon = keras.config.epsilon()
        rho_hat = ops.clip(ops.mean(x, axis=0), epsilon, 1 - epsilon)
        rho = self.rho
        kl = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log(
            (1 - rho) / (1 - rho_hat)
        )
        penalty = self.beta * ops.sum(kl)
        if _MAJOR_MINOR >= (3, 14):
            penalty = penalty * ops.cast(ops.shape(x)[0], penalty.dtype)
        return penalty

    def get_config(self):
        return {"rho": self.rho, "beta": self.beta}


class TopK(keras.layers.Layer):
    """Keeps the `k` largest activations of each example (and ties with
    the k-th), zeroes the rest: Makhzani and Frey's k-sparse code (2013)
    without their schedule on `k`."""

    def __init__(self, k, **kwargs):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                "Invalid value for argument `k`: expected an integer >= 1. "
                f"Received: k={k!r}"
            )
        super().__init__(**kwargs)
        self.k = k

    def call(self, x):
        kth = ops.top_k(x, self.k)[0][..., -1:]
        return ops.where(x >= kth, x, ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def _dense(run, units, name, penalized, cross_replica):
    """One sigmoid layer of the autoencoder, penalized as `run` says."""
    kind = run["regularizer"] if penalized else "none"
    kl = {"rho": run["rho"], "beta": run["strength"]}
    if kind == "sparse_dense":
        return SparseDense(units, **kl, cross_replica=cross_replica, name=name)
    activity = {
        "none": lambda: None,
        "topk": lambda: None,
        "l1": lambda: keras.regularizers.L1(run["strength"]),
        "kl": lambda: KLSparsityRegularizer(**kl, cross_replica=cross_replica),
        "peer": lambda: PeerKL(run["rho"], run["strength"]),
    }[kind]()
    return keras.layers.Dense(
        units, activation="sigmoid", activity_regularizer=activity, name=name
    )


def build_autoencoder(
    run,
    penalize="code",
    optimizer="adam",
    jit_compile="auto",
    cross_replica=None,
):
    """The seed's 784-200-784 sigmoid autoencoder, compiled with MSE.

    Args:
        run: A `common.config()` dict: the penalty and its parameters.
        penalize: `"code"` (the penalty on the 200-unit code layer, named
            `"code"`) or `"both"` (on the output layer, `"reconstruction"`,
            too, as in the seed notebook). A top-k code (its layer:
            `"top_k"`) is never penalized.
        optimizer: `"adam"` (Adam(1e-3)) or `"sgd"` (SGD(0.01)).
        jit_compile: Passed to `Model.compile`.
        cross_replica: The `cross_replica` argument of the penalties of
            `kl` and `sparse_dense` runs; the other penalties have none.
    """
    if penalize not in ("code", "both"):
        raise ValueError(f"penalize must be 'code' or 'both', not {penalize!r}")
    if cross_replica is not None and run["regularizer"] not in KL_OWN:
        raise ValueError(
            f"cross_replica={cross_replica} is for {KL_OWN} runs, not "
            f"{run['regularizer']!r}"
        )
    inputs = keras.Input((IMAGE_PIXELS,), name="image")
    code = _dense(run, CODE_UNITS, "code", True, cross_replica)(inputs)
    if run["regularizer"] == "topk":
        code = TopK(run["k"], name="top_k")(code)
    outputs = _dense(
        run, IMAGE_PIXELS, "reconstruction", penalize == "both", cross_replica
    )(code)
    model = keras.Model(inputs, outputs, name="autoencoder")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](), loss="mse", jit_compile=jit_compile
    )
    return model


def training_step(model, x):
    """One training step of the autoencoder on `x`, as a callable to time."""
    return lambda: model.train_on_batch(x, x)


def code_and_reconstruction(model, batch_size=4096):
    """A function of images to the autoencoder's `(codes, reconstructions)`
    (the code after top-k, if any). It calls the model eagerly, batch by
    batch: unlike `predict`, it traces no `tf.function` per model, so many
    models in a row print no retracing warnings."""
    names = {layer.name for layer in model.layers}
    code = model.get_layer("top_k" if "top_k" in names else "code").output
    both = keras.Model(model.input, [code, model.output])

    def apply(images):
        codes, reconstructions = [], []
        for start in range(0, len(images), batch_size):
            code, reconstruction = both(
                images[start : start + batch_size], training=False
            )
            codes.append(ops.convert_to_numpy(code))
            reconstructions.append(ops.convert_to_numpy(reconstruction))
        return np.concatenate(codes), np.concatenate(reconstructions)

    return apply
