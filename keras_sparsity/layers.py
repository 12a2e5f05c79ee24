"""A densely connected layer with the KL sparsity penalty built in."""

import keras

from keras_sparsity import _checks
from keras_sparsity.regularizers import KLSparsityRegularizer

# Output ranges of the built-in bounded activations, mapped onto (0, 1)
# before the KL divergence.
_ACTIVATION_RANGES = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "sparse_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu6": (0.0, 6.0),
}


def _activation_name(activation):
    name = keras.activations.serialize(activation)
    return name if isinstance(name, str) else repr(activation)


def _penalty_range(activation, value_range):
    """The output range of `activation`: `value_range` when given, else the
    built-in one, or the error that names an unbounded activation."""
    if value_range is not None:
        return value_range
    name = _activation_name(activation)
    if name not in _ACTIVATION_RANGES:
        raise ValueError(
            "Invalid value for argument `activation`: the KL sparsity "
            "penalty needs a bounded activation, since `rho` is a firing "
            f"probability. Use one of {sorted(_ACTIVATION_RANGES)}, or pass "
            "the output range of a custom bounded activation as "
            f"`value_range=(low, high)`. Received: activation={name!r}"
        )
    return _ACTIVATION_RANGES[name]


class _PenaltySettings(keras.layers.Layer):
    """`rho` and `beta` of a `SparseDense` as float32 variables.

    The layer's `KLSparsityRegularizer` reads them at each call, so a value
    set during training reaches a step that TensorFlow or JAX has compiled
    (a schedule, such as `BetaWarmup`). They live in a layer of their own,
    so that `Dense`'s own saving and loading, which count its variables, are
    unchanged. They are saved with the weights, and in the layer's config as
    plain floats; files saved before they existed hold none, and loading
    keeps the config's values.
    """

    def __init__(self, regularizer, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.rho = self._setting("rho", regularizer.rho)
        self.beta = self._setting("beta", regularizer.beta)
        # From now on the regularizer reads and sets these variables.
        regularizer._rho, regularizer._beta = self.rho, self.beta
        self.built = True

    def _setting(self, name, value):
        return self.add_weight(
            name=name,
            shape=(),
            initializer=keras.initializers.Constant(value),
            dtype="float32",
            trainable=False,
            autocast=False,
        )

    def load_own_variables(self, store):
        if len(store.keys()):
            super().load_own_variables(store)


@keras.saving.register_keras_serializable(package="keras_sparsity")
class SparseDense(keras.layers.Dense):
    """Densely connected layer whose activations carry the KL sparsity penalty.

    A `keras.layers.Dense` (`output = activation(dot(input, kernel) + bias)`)
    that adds to `layer.losses` the penalty
    `beta * sum_j KL(rho || rho_hat_j)` of its outputs, where `rho_hat_j` is
    the mean activation of unit `j` over every axis but the last. The loss is
    added with `add_loss`, not as an activity regularizer, so it is exactly
    the penalty on every Keras version and batch size (see
    `KLSparsityRegularizer`).

    `rho` is a firing probability, so the activation must be bounded:
    `"sigmoid"`, `"hard_sigmoid"` and `"sparse_sigmoid"` are used as they
    are; `"tanh"`, `"hard_tanh"`, `"softsign"` and `"relu6"` are mapped
    from their output range onto `(0, 1)`. Unbounded activations (`"relu"`,
    `"linear"`, ...) are refused. For a custom bounded activation, pass its
    output range as `value_range`. The activation and the range are settled
    when the layer is made.

    `rho` and `beta` are non-trainable float32 variables of the layer, read
    by the penalty at each call: setting `layer.beta = 0.01` (checked as the
    constructor checks it) takes effect at the next training step, compiled
    or not, and the values are saved with the layer. `BetaWarmup` uses this
    to raise `beta` gradually.

    Args:
        units (int): Positive integer, dimensionality of the output space.
        rho (float): Target mean activation, a float strictly between 0 and 1.
            Defaults to `0.05`.
        beta (float): Weight of the sparsity penalty, a float between 0 and
            1e12. Defaults to `0.02`, which suits Keras's `"mse"` loss on
            images.
        activation (str or callable): Bounded activation function. Defaults to
            `"sigmoid"`.
        value_range (tuple of two floats or None): Optional `(low, high)` output
            range of the activation, required for a custom activation and
            overriding the built-in range otherwise.
        cross_replica (bool or None): Whether `rho_hat` covers the global batch
            under data-parallel training (see `KLSparsityRegularizer`). Defaults
            to `None`.
        **kwargs (Any): The other arguments of `keras.layers.Dense` (`use_bias`,
            `kernel_initializer`, `kernel_regularizer`,
            `activity_regularizer` for an extra penalty on top, ...) and base
            layer keyword arguments such as `name` and `dtype`.

    Call arguments:
        inputs: Input tensor.
        mask: Optional padding mask of shape `inputs.shape[:-1]`, passed by
            Keras from a masking layer; masked positions are left out of the
            mean activations `rho_hat`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., input_dim)`, N >= 2.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    Examples:
        >>> import numpy as np
        >>> from keras import ops
        >>> from keras_sparsity import SparseDense
        >>> layer = SparseDense(4, rho=0.1, beta=0.02)
        >>> outputs = layer(np.random.rand(8, 16).astype("float32"))
        >>> tuple(outputs.shape)
        (8, 4)
        >>> penalty = layer.sparsity_regularizer.penalty(outputs)
        >>> float(ops.convert_to_numpy(layer.losses[0] - penalty))
        0.0
        >>> layer.beta = 0.05  # read by the next step, compiled or not

    Reference:
        Andrew Ng, "Sparse autoencoder", CS294A Lecture notes, Stanford.
    """

    def __init__(
        self,
        units,
        rho=0.05,
        beta=0.02,
        activation="sigmoid",
        value_range=None,
        cross_replica=None,
        **kwargs,
    ):
        units = _checks.units(units)
        value_range = _checks.value_range(value_range)
        activation = keras.activations.get(activation)
        value_range = _penalty_range(activation, value_range)
        regularizer = KLSparsityRegularizer(
            rho,
            beta,
            value_range=None if value_range == (0.0, 1.0) else value_range,
            cross_replica=cross_replica,
        )
        super().__init__(units, activation=activation, **kwargs)
        self.sparsity_regularizer = regularizer
        self._penalty_settings = _PenaltySettings(regularizer)

    def __setattr__(self, name, value):
        if name == "activation" and "sparsity_regularizer" in self.__dict__:
            raise AttributeError(
                "The activation of a SparseDense layer is settled when the "
                "layer is made (its penalty maps the activation's range onto "
                "(0, 1)): make a new layer instead."
            )
        super().__setattr__(name, value)

    @property
    def rho(self):
        """The target mean activation, a float; settable during training."""
        return self.sparsity_regularizer.rho

    @rho.setter
    def rho(self, value):
        self.sparsity_regularizer.rho = value

    @property
    def beta(self):
        """The weight of the penalty, a float; settable during training."""
        return self.sparsity_regularizer.beta

    @beta.setter
    def beta(self, value):
        self.sparsity_regularizer.beta = value

    def call(self, inputs, mask=None):
        outputs = super().call(inputs)
        self.add_loss(self.sparsity_regularizer.penalty(outputs, mask=mask))
        return outputs

    def get_config(self):
        regularizer = self.sparsity_regularizer
        value_range = regularizer.value_range or (0.0, 1.0)
        builtin = _ACTIVATION_RANGES.get(_activation_name(self.activation))
        return {
            **super().get_config(),
            "rho": regularizer.rho,
            "beta": regularizer.beta,
            "value_range": (
                None if value_range == builtin else list(value_range)
            ),
            "cross_replica": regularizer.cross_replica,
        }
