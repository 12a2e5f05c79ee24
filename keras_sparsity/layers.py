"""A densely connected layer with the KL sparsity penalty built in."""

import numbers

import keras

from keras_sparsity.regularizers import (
    KLSparsityRegularizer,
    _check_beta,
    _check_bool,
    _check_rho,
    _check_value_range,
)

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


def _check_units(units):
    if isinstance(units, bool) or not isinstance(units, numbers.Integral):
        raise TypeError(
            "Invalid type for argument `units`: expected a positive int. "
            f"Received: units={units!r} (of type {type(units).__name__})"
        )
    if units <= 0:
        raise ValueError(
            "Invalid value for argument `units`: expected a positive int. "
            f"Received: units={units!r}"
        )
    return int(units)


def _penalty_range(activation, value_range):
    """The range mapped onto (0, 1), or the error for an unbounded one."""
    if value_range is not None:
        return value_range
    name = keras.activations.serialize(activation)
    if not isinstance(name, str):
        name = repr(activation)
    if name not in _ACTIVATION_RANGES:
        raise ValueError(
            "Invalid value for argument `activation`: the KL sparsity "
            "penalty needs a bounded activation, since `rho` is a firing "
            f"probability. Use one of {sorted(_ACTIVATION_RANGES)}, or pass "
            "the output range of a custom bounded activation as "
            f"`value_range=(low, high)`. Received: activation={name!r}"
        )
    return _ACTIVATION_RANGES[name]


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
    output range as `value_range`.

    `rho`, `beta`, `value_range`, `cross_replica` and `activation` are plain
    attributes: setting one changes the penalty and `get_config()` alike
    (a compiled model picks the change up once compiled again), and a value
    the constructor would refuse is refused.

    Args:
        units: Positive integer, dimensionality of the output space.
        rho: Target mean activation, a float strictly between 0 and 1.
            Defaults to `0.05`.
        beta: Weight of the sparsity penalty, a float between 0 and 1e12.
            Defaults to `3.0`.
        activation: Bounded activation function. Defaults to `"sigmoid"`.
        value_range: Optional `(low, high)` output range of the activation,
            required for a custom activation and overriding the built-in
            range otherwise.
        cross_replica: Compute `rho_hat` over the global batch under
            data-parallel training (see `KLSparsityRegularizer`). Defaults
            to `True`.
        **kwargs: The other arguments of `keras.layers.Dense` (`use_bias`,
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
        >>> from keras_sparsity import SparseDense
        >>> layer = SparseDense(4, rho=0.1, beta=3.0)
        >>> outputs = layer(np.random.rand(8, 16).astype("float32"))
        >>> tuple(outputs.shape)
        (8, 4)
        >>> penalty = layer.sparsity_regularizer.penalty(outputs)
        >>> bool(np.isclose(layer.losses[0], penalty))
        True

    Reference:
        Andrew Ng, "Sparse autoencoder", CS294A Lecture notes, Stanford.
    """

    def __init__(
        self,
        units,
        rho=0.05,
        beta=3.0,
        activation="sigmoid",
        value_range=None,
        cross_replica=True,
        **kwargs,
    ):
        units = _check_units(units)
        rho = _check_rho(rho)
        beta = _check_beta(beta)
        value_range = _check_value_range(value_range)
        activation = keras.activations.get(activation)
        _penalty_range(activation, value_range)
        cross_replica = _check_bool("cross_replica", cross_replica)
        super().__init__(units, activation=activation, **kwargs)
        self.rho = rho
        self.beta = beta
        self.value_range = value_range
        self.cross_replica = cross_replica

    def __setattr__(self, name, value):
        # Checked again when set after construction, so that the layer never
        # trains with, or saves, a value its constructor would refuse.
        if name in _ATTRIBUTE_CHECKS:
            value = _ATTRIBUTE_CHECKS[name](value)
        if name == "activation" and "value_range" in self.__dict__:
            value = keras.activations.get(value)
            _penalty_range(value, self.value_range)
        elif name == "value_range" and "activation" in self.__dict__:
            _penalty_range(self.activation, value)
        super().__setattr__(name, value)

    @property
    def sparsity_regularizer(self):
        """The `KLSparsityRegularizer` of the layer's current settings.

        Built from `rho`, `beta`, the activation's range and
        `cross_replica` on every access; change those attributes, not it.
        """
        value_range = _penalty_range(self.activation, self.value_range)
        return KLSparsityRegularizer(
            self.rho,
            self.beta,
            value_range=None if value_range == (0.0, 1.0) else value_range,
            cross_replica=self.cross_replica,
        )

    def call(self, inputs, mask=None):
        outputs = super().call(inputs)
        self.add_loss(self.sparsity_regularizer.penalty(outputs, mask=mask))
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "beta": self.beta,
            "value_range": (
                None if self.value_range is None else list(self.value_range)
            ),
            "cross_replica": self.cross_replica,
        }


_ATTRIBUTE_CHECKS = {
    "units": _check_units,
    "rho": _check_rho,
    "beta": _check_beta,
    "value_range": _check_value_range,
    "cross_replica": lambda value: _check_bool("cross_replica", value),
}
