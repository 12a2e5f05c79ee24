"""A densely connected layer with the KL sparsity penalty built in."""

import numbers

import keras
from keras import ops

from keras_sparsity.regularizers import KLSparsityRegularizer

ACTIVATION_RANGES = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "sparse_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
    "relu6": (0.0, 6.0),
}
"""Output ranges of the built-in bounded activations that `SparseDense`
accepts, mapped onto `(0, 1)` before the KL divergence."""


def _activation_name(activation):
    name = keras.activations.serialize(activation)
    return name if isinstance(name, str) else repr(activation)


@keras.saving.register_keras_serializable(package="keras_sparsity")
class SparseDense(keras.layers.Layer):
    """Densely connected layer whose activations carry the KL sparsity penalty.

    Computes `output = activation(dot(input, kernel) + bias)`, like
    `keras.layers.Dense`, and adds to `layer.losses` the penalty
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

    Args:
        units: Positive integer, dimensionality of the output space.
        rho: Target mean activation, a float strictly between 0 and 1.
            Defaults to `0.05`.
        beta: Weight of the sparsity penalty, a float >= 0. Defaults to
            `3.0`.
        activation: Bounded activation function. Defaults to `"sigmoid"`.
        use_bias: Boolean, whether the layer uses a bias vector.
        kernel_initializer: Initializer for the `kernel` weights matrix.
        bias_initializer: Initializer for the bias vector.
        kernel_regularizer: Regularizer function applied to the `kernel`
            weights matrix.
        bias_regularizer: Regularizer function applied to the bias vector.
        activity_regularizer: An extra regularizer applied to the output of
            the layer, on top of the sparsity penalty.
        kernel_constraint: Constraint function applied to the `kernel`
            weights matrix.
        bias_constraint: Constraint function applied to the bias vector.
        value_range: Optional `(low, high)` output range of the activation,
            required for a custom activation and overriding the built-in
            range otherwise.
        cross_replica: Compute `rho_hat` over the global batch under a
            `tf.distribute` strategy (see `KLSparsityRegularizer`). Defaults
            to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Input tensor.
        mask: Optional padding mask of shape `inputs.shape[:-1]`, passed by
            Keras from a masking layer; masked positions are left out of the
            mean activations `rho_hat`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., input_dim)`, N >= 2.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.

    Example:

    >>> import numpy as np
    >>> import keras
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
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        value_range=None,
        cross_replica=True,
        **kwargs,
    ):
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
        activation_fn = keras.activations.get(activation)
        name = _activation_name(activation_fn)
        if value_range is None and name not in ACTIVATION_RANGES:
            raise ValueError(
                "Invalid value for argument `activation`: the KL sparsity "
                "penalty needs a bounded activation, since `rho` is a firing "
                "probability. Use one of "
                f"{sorted(ACTIVATION_RANGES)}, or pass the output range of "
                "a custom bounded activation as `value_range=(low, high)`. "
                f"Received: activation={name!r}"
            )
        sparsity_regularizer = KLSparsityRegularizer(
            rho=rho,
            beta=beta,
            value_range=(
                ACTIVATION_RANGES[name] if value_range is None else value_range
            ),
            cross_replica=cross_replica,
        )
        if sparsity_regularizer.value_range == (0.0, 1.0):
            sparsity_regularizer.value_range = None
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = int(units)
        self.rho = sparsity_regularizer.rho
        self.beta = sparsity_regularizer.beta
        self.activation = activation_fn
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.value_range = (
            None if value_range is None else tuple(map(float, value_range))
        )
        self.cross_replica = cross_replica
        self.sparsity_regularizer = sparsity_regularizer
        self.input_spec = keras.InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "SparseDense expects inputs of rank >= 2 with a known last "
                f"dimension. Received: input_shape={input_shape}"
            )
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.input_spec = keras.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs, mask=None):
        outputs = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        outputs = self.activation(outputs)
        self.add_loss(self.sparsity_regularizer.penalty(outputs, mask=mask))
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "rho": self.rho,
            "beta": self.beta,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(
                self.kernel_constraint
            ),
            "bias_constraint": keras.constraints.serialize(
                self.bias_constraint
            ),
            "value_range": (
                None if self.value_range is None else list(self.value_range)
            ),
            "cross_replica": self.cross_replica,
        }
