"""The KL-divergence sparsity penalty of the sparse autoencoder."""

import re

import keras
from keras import ops

from keras_sparsity import _checks, _kl


def _keras_version(version):
    """Returns `(major, minor)` of a Keras version string like `3.14.0.dev1`."""
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


# Whether the installed Keras divides each activity-regularizer loss by the
# batch size (Keras >= 3.14, keras-team/keras PR #22021).
_KERAS_DIVIDES_ACTIVITY_LOSS = _keras_version(keras.__version__) >= (3, 14)


def _number(value):
    """A setting as a Python float: itself, or the value of its variable."""
    if isinstance(value, float):
        return value
    return _checks.float32(ops.convert_to_numpy(value))


def _tensor(value):
    """A setting as the penalty reads it: a Python float, or its variable's
    current value (read outside the custom gradient, as TensorFlow needs)."""
    return value if isinstance(value, float) else ops.convert_to_tensor(value)


def _check_inputs(x, axis, mask):
    """Validates the rank, the axis and the mask; returns the axis >= 0."""
    ndim = len(x.shape)
    if ndim < 2:
        raise ValueError(
            "KLSparsityRegularizer expects activations of rank >= 2 "
            f"(batch, ..., features). Received: x.shape={tuple(x.shape)}"
        )
    if not -ndim < axis < ndim:
        raise ValueError(
            f"Invalid axis {axis} for activations of rank {ndim}: expected a "
            f"feature axis from {1 - ndim} to {ndim - 1} (not the batch axis). "
            f"Received: x.shape={tuple(x.shape)}"
        )
    if mask is not None:
        if axis % ndim != ndim - 1:
            raise ValueError(
                "A `mask` needs the feature axis last (axis=-1). "
                f"Received: axis={axis}"
            )
        expected = tuple(x.shape[:-1])
        received = tuple(mask.shape)
        if len(received) != len(expected) or any(
            a is not None and b is not None and a != b
            for a, b in zip(received, expected)
        ):
            raise ValueError(
                "Invalid shape for argument `mask`: expected exactly "
                f"x.shape[:-1] = {expected} (masks are not broadcast). "
                f"Received: mask.shape={received}"
            )
    return axis % ndim


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
    (float16, bfloat16, float64, mixed precision), with means accurate to
    about 1e-6 for up to 16 million positions per unit. `rho` and `beta` are
    held as float32 numbers. Exact zeros and ones are clipped before the
    logarithms, so they give a finite penalty; the gradient is the
    formula's down to mean activations of 1e-12, so a unit that has gone
    silent is pushed back towards `rho`. Activations outside the value
    range are clipped the same way: the penalty is then meaningless (a
    constant), and its gradient per activation is at most
    `beta * max(rho * 1e12, (1 - rho) * 2**24) / N` for `N` positions per
    unit (and at most float16's largest value, 65504, in float16);
    `sparsity_statistics` and `SparsityMonitor` refuse such activations. An
    empty batch gives 0; NaN and infinite activations give a NaN penalty.

    `rho` and `beta` can be set after construction (the value is checked as
    the constructor checks it). A step that TensorFlow or JAX has already
    compiled keeps the values it was traced with: to change them during
    training, use `SparseDense`, whose `rho` and `beta` are variables that
    compiled steps read, or compile the model again.

    Args:
        rho (float): Target mean activation (the sparsity parameter), a float
            strictly between 0 and 1. Defaults to `0.05`.
        beta (float): Weight of the penalty, a float between 0 and 1e12.
            Defaults to `0.02`, which suits Keras's `"mse"` loss on images (the
            mean, not the sum, over the pixels: see the user guide).
        value_range (tuple of two floats or None): Optional `(low, high)` range
            of the activations when it is not `(0, 1)`, for example `(-1, 1)`
            for `tanh`. Mean activations are mapped linearly from it onto
            `(0, 1)` before the KL divergence. Defaults to `None`, meaning
            `(0, 1)`.
        axis (int): The feature axis, whose entries each get a `rho_hat_j`: a
            non-zero int from -4 to 4. Defaults to `-1` (channels last); use
            `1` for channels-first convolution outputs.
        cross_replica (bool or None): Under data-parallel training with several
            replicas, whether `rho_hat` covers the global batch (one all-reduce
            of the per-unit sums, so that training matches one device with the
            same global batch) or each replica's own share. `None` (the
            default): the global batch under PyTorch DDP, JAX
            `keras.distribution` and `tf.distribute` strategies with one
            replica per process (`MultiWorkerMirroredStrategy` with one
            device per worker); each replica's own share where a process
            runs several replicas (`MirroredStrategy`), since there Keras's
            per-layer loss bookkeeping is shared between replica threads
            that an all-reduce in the forward pass would interleave. `True`:
            the global batch, and an error under `MirroredStrategy`.
            `False`: each replica's own share, a different objective, since
            the KL of a mean is not the mean of the KLs.

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> from keras_sparsity import KLSparsityRegularizer
        >>> regularizer = KLSparsityRegularizer(rho=0.5, beta=2.0)
        >>> activations = np.array(
        ...     [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], "float32"
        ... )

        `rho_hat = [0.5, 0.25]`: the first unit is on target and adds 0, the
        second adds `0.5 * log(0.5 / 0.25) + 0.5 * log(0.5 / 0.75)`, times
        `beta`:

        >>> round(float(regularizer.penalty(activations)), 4)
        0.2877
        >>> layer = keras.layers.Dense(
        ...     3, activation="sigmoid", activity_regularizer=regularizer
        ... )
        >>> outputs = layer(np.ones((4, 5), dtype="float32"))
        >>> loss = layer.losses[0] - regularizer.penalty(outputs)
        >>> float(keras.ops.convert_to_numpy(loss))
        0.0

    Reference:
        Andrew Ng, "Sparse autoencoder", CS294A Lecture notes, Stanford.
    """

    def __init__(
        self, rho=0.05, beta=0.02, value_range=None, axis=-1, cross_replica=None
    ):
        rho = _checks.rho(rho)
        beta = _checks.beta(beta)
        value_range = _checks.value_range(value_range)
        axis = _checks.axis(axis)
        cross_replica = _checks.cross_replica(cross_replica)
        # Python floats, or the float32 variables of a `SparseDense`.
        self._rho = rho
        self._beta = beta
        self._value_range = value_range
        self._axis = axis
        self._cross_replica = cross_replica

    @property
    def rho(self):
        """The target mean activation, a float; settable."""
        return _number(self._rho)

    @rho.setter
    def rho(self, value):
        self._rho = self._set(self._rho, _checks.rho(value))

    @property
    def beta(self):
        """The weight of the penalty, a float; settable."""
        return _number(self._beta)

    @beta.setter
    def beta(self, value):
        self._beta = self._set(self._beta, _checks.beta(value))

    @staticmethod
    def _set(setting, value):
        if isinstance(setting, float):
            return value
        setting.assign(value)
        return setting

    @property
    def value_range(self):
        """The `(low, high)` range mapped onto (0, 1), or `None`."""
        return self._value_range

    @property
    def axis(self):
        """The feature axis."""
        return self._axis

    @property
    def cross_replica(self):
        """`True`, `False` or `None` (see the class documentation)."""
        return self._cross_replica

    def __call__(self, x):
        if not _KERAS_DIVIDES_ACTIVITY_LOSS:
            return self._penalty(x)
        # Keras divides by this same batch size (`divide_no_nan`), so the
        # loss that reaches `layer.losses` is the penalty itself.
        if not ops.is_tensor(x):
            x = ops.convert_to_tensor(x)
        batch = x.shape[0]
        if batch is None:
            batch = ops.cast(ops.shape(x)[0], "float32")
        return self._penalty(x, scale=batch)

    def penalty(self, x, mask=None):
        """Returns the KL sparsity penalty of the activations `x`.

        Args:
            x (tensor or array): Activations of rank >= 2,
                `(batch, ..., features)` when `axis` is `-1`.
            mask (tensor or array, or None): Optional boolean or 0/1 tensor of
                shape exactly `x.shape[:-1]` (for example a sequence padding
                mask); masked-out positions are left out of `rho_hat`. Only with
                `axis=-1`.

        Returns:
            tensor: A float32 scalar tensor, the exact penalty
            `beta * sum_j KL(rho || rho_hat_j)`, whatever the Keras version.

        Examples:
            >>> import numpy as np
            >>> regularizer = KLSparsityRegularizer(rho=0.25, beta=1.0)
            >>> x = np.array([[1.0], [0.0], [0.0], [0.0]], dtype="float32")
            >>> float(regularizer.penalty(x))  # rho_hat == rho: exactly 0
            0.0

            With the padding left out, `rho_hat` is the mean of `[1, 0]`:

            >>> mask = np.array([True, True, False, False])
            >>> round(float(regularizer.penalty(x, mask=mask)), 4)
            0.1308
        """
        return self._penalty(x, mask)

    def _penalty(self, x, mask=None, scale=1):
        """`scale` times the penalty of `x`, with its gradient in closed form
        (see `_kl.penalty`)."""
        if not ops.is_tensor(x):
            x = ops.convert_to_tensor(x)
        if mask is not None:
            mask = ops.cast(ops.convert_to_tensor(mask), "float32")
        axis = _check_inputs(x, self._axis, mask)
        settings = (_tensor(self._rho), _tensor(self._beta), self._value_range)
        return _kl.penalty(x, mask, scale, settings, axis, self._cross_replica)

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
