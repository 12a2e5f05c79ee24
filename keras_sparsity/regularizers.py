"""The KL-divergence sparsity penalty of the sparse autoencoder."""

import math
import numbers
import re

import keras
import numpy as np
from keras import ops

EPSILON = 1e-7
"""Clip bound for the mean activations: `rho_hat` lies in
`[EPSILON, 1 - EPSILON]` before the logarithms, so the penalty and its
gradient stay finite for zeros, ones and values outside the range."""


def _keras_version(version):
    """Returns `(major, minor)` of a Keras version string like `3.14.0.dev1`."""
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


KERAS_DIVIDES_ACTIVITY_LOSS = _keras_version(keras.__version__) >= (3, 14)
"""Whether the installed Keras divides each activity-regularizer loss by the
batch size (Keras >= 3.14, keras-team/keras PR #22021)."""


def _check_float(name, value, is_valid, expected):
    """Returns `value` as a float, or raises naming the argument `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Invalid type for argument `{name}`: expected a float. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    value = float(value)
    if not (math.isfinite(value) and is_valid(value)):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {expected}. "
            f"Received: {name}={value!r}"
        )
    return value


def _check_value_range(value_range):
    """Returns `value_range` as a `(low, high)` tuple of floats, or `None`."""
    if value_range is None:
        return None
    expected = "a pair (low, high) of finite floats with low < high"
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or any(
            isinstance(v, bool) or not isinstance(v, numbers.Real)
            for v in value_range
        )
    ):
        raise TypeError(
            f"Invalid type for argument `value_range`: expected {expected}. "
            f"Received: value_range={value_range!r}"
        )
    low, high = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            f"Invalid value for argument `value_range`: expected {expected}. "
            f"Received: value_range={value_range!r}"
        )
    return low, high


def _replica_context():
    """The `tf.distribute` replica context when there are several replicas.

    Keras has no backend-neutral cross-replica reduction, so this is the one
    place where the library reaches for TensorFlow, and only when the
    TensorFlow backend runs it. JAX's `keras.distribution` needs nothing:
    its arrays are global, so batch means already cover every device.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def _all_reduce_sum(context, value):
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@keras.saving.register_keras_serializable(package="keras_sparsity")
class KLSparsityRegularizer(keras.regularizers.Regularizer):
    """KL-divergence sparsity penalty on the mean activation of each unit.

    The penalty of the sparse autoencoder (Ng, CS294A notes):
    `beta * sum_j [rho * log(rho / rho_hat_j)
    + (1 - rho) * log((1 - rho) / (1 - rho_hat_j))]`,
    where `rho_hat_j` is the mean activation of feature `j` over every axis
    but the feature axis: over the batch for `Dense` outputs, over the batch
    and the time steps for sequences, and over the batch and the pixels of
    each channel for convolutional feature maps.

    Use it as the `activity_regularizer` of a layer with a bounded
    activation. The loss that the layer adds to `layer.losses` is exactly
    the penalty above, on every supported Keras and for every batch size:
    Keras >= 3.14 divides each activity-regularizer loss by the batch size
    (keras-team/keras PR #22021) and earlier Keras 3 does not, so when it is
    called as a function, `__call__` returns the penalty multiplied by the
    batch size on Keras >= 3.14 and the penalty itself on earlier Keras.
    Call `penalty(x)` to compute the penalty of a tensor directly.

    The penalty is computed in float32 whatever the dtype of the activations
    (float16, bfloat16, mixed precision). `rho_hat` is clipped to
    `[EPSILON, 1 - EPSILON]`, so zeros, ones and values outside the range
    give a finite penalty and gradient; an empty batch gives 0.

    Args:
        rho: Target mean activation (the sparsity parameter), a float
            strictly between 0 and 1. Defaults to `0.05`.
        beta: Weight of the penalty, a float >= 0. Defaults to `3.0`.
        value_range: Optional `(low, high)` range of the activations when it
            is not `(0, 1)`, for example `(-1, 1)` for `tanh`. Mean
            activations are mapped linearly from it onto `(0, 1)` before the
            KL divergence. Defaults to `None`, meaning `(0, 1)`.
        axis: The feature axis, whose entries each get a `rho_hat_j`.
            Defaults to `-1` (channels last); use `1` for channels-first
            convolution outputs.
        cross_replica: Under a `tf.distribute` strategy with several
            replicas (`MirroredStrategy`, `MultiWorkerMirroredStrategy`),
            compute `rho_hat` over the global batch with one all-reduce, so
            that training matches one device with the same global batch.
            Defaults to `True`. `False` gives each replica the penalty of its
            own share of the batch, and Keras averages those: a different
            objective, since the KL of a mean is not the mean of the KLs.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> from keras_sparsity import KLSparsityRegularizer
    >>> regularizer = KLSparsityRegularizer(rho=0.5, beta=2.0)
    >>> activations = np.array(
    ...     [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype="float32"
    ... )
    >>> # rho_hat = [0.5, 0.25]: the first unit is on target, the second
    >>> # adds 0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75).
    >>> round(float(regularizer.penalty(activations)), 4)
    0.2877
    >>> layer = keras.layers.Dense(
    ...     3, activation="sigmoid", activity_regularizer=regularizer
    ... )
    >>> outputs = layer(np.ones((4, 5), dtype="float32"))
    >>> bool(np.isclose(layer.losses[0], regularizer.penalty(outputs)))
    True

    Reference:
        Andrew Ng, "Sparse autoencoder", CS294A Lecture notes, Stanford.
    """

    def __init__(
        self, rho=0.05, beta=3.0, value_range=None, axis=-1, cross_replica=True
    ):
        rho = _check_float(
            "rho",
            rho,
            lambda v: 0.0 < v < 1.0,
            "a float strictly between 0 and 1",
        )
        beta = _check_float("beta", beta, lambda v: v >= 0.0, "a float >= 0")
        value_range = _check_value_range(value_range)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(
                "Invalid type for argument `axis`: expected an int. "
                f"Received: axis={axis!r} (of type {type(axis).__name__})"
            )
        if not isinstance(cross_replica, bool):
            raise TypeError(
                "Invalid type for argument `cross_replica`: expected a bool. "
                f"Received: cross_replica={cross_replica!r} "
                f"(of type {type(cross_replica).__name__})"
            )
        self.rho = rho
        self.beta = beta
        self.value_range = value_range
        self.axis = int(axis)
        self.cross_replica = cross_replica

    def __call__(self, x):
        x = ops.convert_to_tensor(x)
        penalty = self.penalty(x)
        if KERAS_DIVIDES_ACTIVITY_LOSS:
            # Keras divides by this same batch size (`divide_no_nan`), so
            # the loss that reaches `layer.losses` is the penalty itself.
            penalty = penalty * ops.cast(ops.shape(x)[0], "float32")
        return penalty

    def penalty(self, x, mask=None):
        """Returns the KL sparsity penalty of the activations `x`.

        Args:
            x: Activations of rank >= 2, `(batch, ..., features)` when `axis`
                is `-1`.
            mask: Optional boolean or 0/1 tensor of shape `x.shape[:-1]`
                (for example a sequence padding mask); masked-out positions
                are left out of `rho_hat`. Only with `axis=-1`.

        Returns:
            A float32 scalar tensor, the exact penalty
            `beta * sum_j KL(rho || rho_hat_j)`, whatever the Keras version.

        Example:

        >>> import numpy as np
        >>> regularizer = KLSparsityRegularizer(rho=0.25, beta=1.0)
        >>> x = np.array([[1.0], [0.0], [0.0], [0.0]], dtype="float32")
        >>> float(regularizer.penalty(x))  # rho_hat == rho: exactly 0
        0.0
        >>> # Padding left out: the masked mean of [1, 0] is 0.5.
        >>> mask = np.array([True, True, False, False])
        >>> round(float(regularizer.penalty(x, mask=mask)), 4)
        0.1308
        """
        x = ops.convert_to_tensor(x)
        ndim = len(x.shape)
        if ndim < 2:
            raise ValueError(
                "KLSparsityRegularizer expects activations of rank >= 2 "
                f"(batch, ..., features). Received: x.shape={tuple(x.shape)}"
            )
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"Invalid axis {self.axis} for activations of rank {ndim}. "
                f"Received: x.shape={tuple(x.shape)}"
            )
        axis = self.axis % ndim
        reduced = tuple(i for i in range(ndim) if i != axis)
        x = ops.cast(x, "float32")
        if mask is None:
            # A Python int when the shape is static (eager, JAX, PyTorch):
            # fewer ops on the hot path than a tensor count.
            count = 1
            for i in reduced:
                size = x.shape[i]
                if size is None:
                    count = count * ops.cast(ops.shape(x)[i], "float32")
                else:
                    count = count * size
        else:
            if axis != ndim - 1:
                raise ValueError(
                    "A `mask` needs the feature axis last (axis=-1). "
                    f"Received: axis={self.axis}"
                )
            mask = ops.cast(mask, "float32")
            x = x * ops.expand_dims(mask, -1)
            count = ops.sum(mask)
        sums = ops.sum(x, axis=reduced)
        context = _replica_context() if self.cross_replica else None
        if context is not None:
            # One all-reduce of the per-unit sums and the count gives every
            # replica the global batch's rho_hat. Its value is the global
            # sum; its gradient is this replica's sums times the replica
            # count, which Keras's 1 / replicas loss scaling and the summed
            # replica gradients make exact, with no all-reduce backwards.
            replicas = context.num_replicas_in_sync
            count = ops.reshape(ops.cast(count, "float32"), (1,))
            packed = _all_reduce_sum(
                context, ops.stop_gradient(ops.concatenate([sums, count]))
            )
            total, count = packed[:-1], packed[-1]
            sums = ops.stop_gradient(total - replicas * sums) + replicas * sums
        if isinstance(count, int):
            if count == 0:
                return ops.sum(x) * 0.0  # an empty batch: 0, zero gradient
            rho_hat = sums / float(count)
        else:
            rho_hat = sums / ops.maximum(count, 1.0)
        if self.value_range is not None:
            low, high = self.value_range
            rho_hat = (rho_hat - low) / (high - low)
        rho_hat = ops.clip(rho_hat, EPSILON, 1.0 - EPSILON)
        # `rho` and `1 - rho` as float32 values, `1 - rho` rounded like
        # `1 - rho_hat` below, so a unit whose `rho_hat` equals `rho`
        # contributes exactly 0.
        rho = float(np.float32(self.rho))
        one_minus_rho = float(np.float32(1.0) - np.float32(self.rho))
        kl = rho * ops.log(rho / rho_hat) + one_minus_rho * ops.log(
            one_minus_rho / (1.0 - rho_hat)
        )
        # KL >= 0; the maximum drops float32 rounding below zero.
        penalty = self.beta * ops.sum(ops.maximum(kl, 0.0))
        if isinstance(count, int):
            return penalty
        return ops.where(count > 0, penalty, 0.0)

    def get_config(self):
        return {
            "rho": self.rho,
            "beta": self.beta,
            "value_range": (
                None if self.value_range is None else list(self.value_range)
            ),
            "axis": self.axis,
            "cross_replica": self.cross_replica,
        }

    def __repr__(self):
        return (
            f"KLSparsityRegularizer(rho={self.rho}, beta={self.beta}, "
            f"value_range={self.value_range}, axis={self.axis}, "
            f"cross_replica={self.cross_replica})"
        )
