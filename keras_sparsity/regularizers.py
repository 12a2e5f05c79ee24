"""The KL-divergence sparsity penalty of the sparse autoencoder."""

import functools
import math
import numbers
import re

import keras
import numpy as np
from keras import ops

from keras_sparsity import _replicas

_FLOAT32 = np.finfo(np.float32)
# `rho_hat` is clipped to [_RHO_HAT_MIN, _RHO_HAT_MAX] before the
# logarithms. In float32 that only moves an exact 0 (or a subnormal) and an
# exact 1: every other float32 in (0, 1) lies inside.
_RHO_HAT_MIN = float(_FLOAT32.tiny)  # 1.1754944e-38
_RHO_HAT_MAX = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
# The gradient is the formula's own, evaluated at `rho_hat` clipped to
# [_GRADIENT_FLOOR, _RHO_HAT_MAX]: exact for mean activations down to 1e-12,
# bounded below that so a silent unit gets a strong, finite push back.
_GRADIENT_FLOOR = 1e-12
# The smallest argument of `log1p` in the KL: -1 plus float32's epsilon / 2.
_LOG1P_FLOOR = -1.0 + 2.0**-24
# With beta <= _MAX_BETA the penalty, its gradient (at most
# beta / _GRADIENT_FLOOR per unit) and Keras's scaled copy all fit float32.
_MAX_BETA = 1e12


class _TorchFunctions:
    """The torch functions `keras.ops` runs for float32 tensors on PyTorch,
    called directly on the penalty's hot path.

    Eager PyTorch runs each operation on its own, and Keras's dispatch
    around each (argument conversion, dtype promotion) costs more than the
    arithmetic on the penalty's per-unit vectors (`benchmarks/overhead.py`,
    variant `kl_keras_ops`). The formula is the same, written once below;
    only these seven calls and the custom gradient skip Keras, and give the
    same bits (`tests/test_regularizers.py`).
    """

    def __init__(self):
        import torch

        self.log1p = torch.log1p
        self.relu = torch.relu
        self.clip = torch.clip
        # With a Python float as the second argument, as used here.
        self.maximum = torch.clamp_min
        self.minimum = torch.clamp_max
        self.broadcast_to = torch.broadcast_to
        self._sum = torch.sum

    def sum(self, x, axis=None):
        return self._sum(x) if axis is None else self._sum(x, dim=axis)

    @staticmethod
    def custom_gradient(function):
        """`ops.custom_gradient(function)`, for a `function` whose gradient
        function takes `upstream` alone and holds what it needs.

        Keras's also saves every input for the backward pass and accepts
        keyword arguments and other returns; the penalty uses none of that.
        """
        return functools.partial(_torch_custom_gradient().apply, function)


@functools.cache
def _torch_custom_gradient():
    import torch

    class CustomGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, function, *args):
            value, ctx.gradient = function(*args)
            return value

        @staticmethod
        def backward(ctx, upstream):
            gradients = ctx.gradient(upstream)
            if not isinstance(gradients, tuple):
                gradients = (gradients,)
            return (None, *gradients)

    return CustomGradient


@functools.cache
def _torch_functions():
    return _TorchFunctions()


def _functions():
    """`keras.ops`, or on PyTorch the torch functions it would call."""
    if keras.backend.backend() == "torch":
        return _torch_functions()
    return ops


def _scalar(value):
    """A constant of the formula, as the operations on PyTorch take it best.

    A Python number on TensorFlow and JAX, which fold it into the compiled
    step; on PyTorch, a float32 tensor of rank 0, made once and cached: an
    operation with a Python number converts it to a tensor every time (about
    twice the cost of the operation on a vector of a few hundred floats),
    and `number / tensor` runs as two operations. Tensors pass through.
    """
    if type(value) in (float, int) and keras.backend.backend() == "torch":
        return _torch_scalar(float(value))
    return value


@functools.lru_cache(maxsize=1024)
def _torch_scalar(value):
    import torch

    return torch.tensor(value, dtype=torch.float32)


@functools.lru_cache(maxsize=64)
def _is_float32(dtype):
    return keras.backend.standardize_dtype(dtype) == "float32"


def _keras_version(version):
    """Returns `(major, minor)` of a Keras version string like `3.14.0.dev1`."""
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


# Whether the installed Keras divides each activity-regularizer loss by the
# batch size (Keras >= 3.14, keras-team/keras PR #22021).
_KERAS_DIVIDES_ACTIVITY_LOSS = _keras_version(keras.__version__) >= (3, 14)


def _invalid_type(name, value, expected):
    return TypeError(
        f"Invalid type for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r} (of type {type(value).__name__})"
    )


def _invalid_value(name, value, expected):
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _check_real(name, value):
    """Returns `value` as a finite float, or raises naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid_type(name, value, "a float")
    return float(value)


def _check_rho(rho):
    """Returns `rho` as a float, or raises the error that names it."""
    rho = _check_real("rho", rho)
    if not (math.isfinite(rho) and 0.0 < rho < 1.0):
        raise _invalid_value("rho", rho, "a float strictly between 0 and 1")
    if rho < _RHO_HAT_MIN:
        raise _invalid_value(
            "rho",
            rho,
            f"a float of at least {_RHO_HAT_MIN:.8g} (the smallest normal "
            "float32), since the penalty is computed in float32",
        )
    return rho


def _check_beta(beta):
    """Returns `beta` as a float, or raises the error that names it."""
    beta = _check_real("beta", beta)
    if not (math.isfinite(beta) and beta >= 0.0):
        raise _invalid_value("beta", beta, "a float >= 0")
    if beta > _MAX_BETA:
        raise _invalid_value(
            "beta",
            beta,
            f"a float <= {_MAX_BETA:g}, since a larger weight overflows "
            "float32 in the gradient",
        )
    return beta


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
    if not (
        max(abs(low), abs(high), high - low) <= 1e37
        and high - low >= _RHO_HAT_MIN
    ):
        raise ValueError(
            f"Invalid value for argument `value_range`: expected {expected}, "
            "at most 1e37 in size and apart, and at least 1.2e-38 apart, "
            "so that float32 holds the mapped activations. "
            f"Received: value_range={value_range!r}"
        )
    return low, high


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise _invalid_type(name, value, "a bool")
    return value


def _check_inputs(x, axis, mask):
    """Validates the rank, the axis and the mask; returns the axis >= 0."""
    ndim = len(x.shape)
    if ndim < 2:
        raise ValueError(
            "KLSparsityRegularizer expects activations of rank >= 2 "
            f"(batch, ..., features). Received: x.shape={tuple(x.shape)}"
        )
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"Invalid axis {axis} for activations of rank {ndim}. "
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


def _sums_and_count(x, axis, value_range, mask):
    """Per-feature sums of the activations mapped onto (0, 1), in float32,
    and the number of positions they cover (a Python int when static)."""
    if not _is_float32(x.dtype):
        x = ops.cast(x, "float32")
    if value_range is not None:
        # Mapped before summing: a sum of raw values could overflow a wide
        # range or round away a narrow one far from zero.
        low, high = value_range
        x = (x - low) / (high - low)
    if mask is None:
        count = 1
        for i, size in enumerate(x.shape):
            if i != axis:
                count *= ops.shape(x)[i] if size is None else size
    else:
        x = x * ops.expand_dims(mask, -1)
        count = ops.sum(mask)
    return _feature_sums(x, axis), count


def _feature_sums(x, axis):
    """Float32 sums of `x` over every axis but `axis`.

    Accurate to about 1e-6 for at least 2**24 positions on every backend.
    TensorFlow's CPU kernel sums the rows of a matrix one after another, so
    its error grows with their number (15% for 2**24 equal values), while
    its sums along the last axis are pairwise: there the activations are
    summed as a `(features, positions)` matrix. JAX and PyTorch sum
    pairwise either way.
    """
    if keras.backend.backend() == "tensorflow":
        if axis != len(x.shape) - 1:
            x = ops.moveaxis(x, axis, -1)
        flat = ops.reshape(x, (-1, x.shape[-1]))
        return ops.sum(ops.transpose(flat), axis=1)
    axes = tuple(i for i in range(len(x.shape)) if i != axis)
    return _functions().sum(x, axis=axes)


class _Formula:
    """The KL of one `rho` and its derivative, with the constants worked out
    once: float32 `rho` and `1 - rho` (from the float64 `rho`, so accurate
    for `rho` near 1), the derivative's cap, and which `log1p` argument needs
    its floor, as the operations of `functions` and `scalar` take them.
    """

    def __init__(self, rho, functions, scalar):
        self.functions, self.scalar = functions, scalar
        one_minus_rho = float(np.float32(1.0 - rho))
        rho = float(np.float32(rho))
        # `over_q` at q = _GRADIENT_FLOOR.
        self.cap = float(np.float32((rho - _GRADIENT_FLOOR) / _GRADIENT_FLOOR))
        self.floor_over_q = rho < 2.0**-24
        self.floor_over_rest = rho > 0.5 and one_minus_rho < 2.0**-24
        self.rho_constant = scalar(rho)
        self.one_minus_rho_constant = scalar(one_minus_rho)
        self.one = scalar(1.0)

    def kl_and_slope(self, q):
        """`KL(rho || q)` per unit and its derivative `d KL / d q`, accurate
        in float32 for every `rho` and every `q` in (0, 1), from two shared
        ratios:

        - `over_q = (rho - q) / q`, which is `rho / q - 1`, and
        - `over_rest = (rho - q) / (q - 1)`, which is `(1 - rho) / (1 - q) -
          1`.

        The KL, `rho * log(rho / q) + (1 - rho) * log((1 - rho) / (1 - q))`,
        is `rho * log1p(over_q) + (1 - rho) * log1p(over_rest)`: neither term
        rounds a ratio near 1, so a unit whose `q` equals `rho` adds exactly
        0, and one near `rho` adds its small KL with a small error. Where the
        weight of a term is below 1/2, its argument cannot come near -1. The
        other term's argument stays above -1 + 2**-24 for any `q` in (0, 1)
        unless its own weight is below 2**-24, and only then is it floored
        there, which changes the KL by less than that weight's share.

        The derivative, `-rho / q + (1 - rho) / (1 - q)`, is `over_rest -
        over_q`: the two have opposite signs, so it does not cancel near
        `q = rho` either. `over_q` is capped at its value at `q =
        _GRADIENT_FLOOR`, which makes the derivative the formula's at `q`
        clipped to `[_GRADIENT_FLOOR, 1)`: it does not vanish for a unit
        whose mean activation is tiny, as autodiff through the clip of the
        value would, so a silent unit is pushed back towards `rho`.
        """
        f = self.functions
        difference = self.rho_constant - q
        over_q = difference / q
        over_rest = difference / (q - self.one)
        log_over_q, log_over_rest = over_q, over_rest
        if self.floor_over_q:
            log_over_q = f.maximum(over_q, _LOG1P_FLOOR)
        elif self.floor_over_rest:
            log_over_rest = f.maximum(over_rest, _LOG1P_FLOOR)
        kl = self.rho_constant * f.log1p(
            log_over_q
        ) + self.one_minus_rho_constant * f.log1p(log_over_rest)
        return kl, over_rest - f.minimum(over_q, self.cap)


@functools.lru_cache(maxsize=256)
def _formula(rho, functions, scalar):
    return _Formula(rho, functions, scalar)


def _value_and_slope(x, mask, scale, rho, beta, value_range, axis, replicas):
    """The penalty of `x` times `scale`, and its derivative per activation.

    The derivative is the same for every position of a feature: the slope
    returned has one entry per feature. With several replicas the sums are
    the global batch's, and the slope is the global penalty's times the
    replica count, which the replicas' averaged gradients divide out.
    """
    replicas, all_reduce = replicas
    sums, count = _sums_and_count(x, axis, value_range, mask)
    if all_reduce is not None:
        sums, count = _replicas.global_sums(all_reduce, sums, count)
    weight = float(np.float32(beta)) * scale
    if isinstance(count, int):
        if count == 0:  # an empty batch: 0, zero gradient
            return ops.sum(sums) * 0.0, ops.zeros_like(sums)
    else:
        weight = ops.where(count > 0, weight, 0.0)
        count = ops.maximum(count, 1.0)
    # Looked up on each call, so that what `_functions` and `_scalar` give
    # decides (the tests and `benchmarks/overhead.py` switch them).
    formula = _formula(rho, _functions(), _scalar)
    f, scalar = formula.functions, formula.scalar
    rho_hat = sums / scalar(count)
    clipped = f.clip(rho_hat, _RHO_HAT_MIN, _RHO_HAT_MAX)
    kl, slope = formula.kl_and_slope(clipped)
    # KL >= 0; relu drops float32 rounding below zero.
    value = scalar(weight) * f.sum(f.relu(kl))
    width = 1.0 if value_range is None else value_range[1] - value_range[0]
    return value, slope * scalar(weight * replicas / count / width)


def _shape_and_dtype(x):
    """What the gradient needs of `x`: its shape (static where known) and
    dtype. Held instead of `x`, so that the backward pass keeps no
    activations alive (on eager PyTorch, until the step's graph is freed)."""
    return (x.shape if None not in x.shape else ops.shape(x)), x.dtype


def _broadcast(slope, shape_and_dtype, axis, mask):
    """The gradient with respect to `x` from one slope per feature, given
    `_shape_and_dtype(x)`."""
    shape, dtype = shape_and_dtype
    rank = len(shape)
    if axis != rank - 1:
        slope_shape = [1] * rank
        slope_shape[axis] = -1
        slope = ops.reshape(slope, slope_shape)
    gradient = _functions().broadcast_to(slope, shape)
    if mask is not None:
        gradient = gradient * ops.expand_dims(mask, -1)
    if not _is_float32(dtype):
        gradient = ops.cast(gradient, dtype)
    return gradient


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
    (float16, bfloat16, mixed precision), with means accurate to about 1e-6
    for up to 16 million positions per unit. Exact zeros and ones are clipped
    before the logarithms, so they give a finite penalty; the gradient is the
    formula's down to mean activations of 1e-12, so a unit that has gone
    silent is pushed back towards `rho`. An empty batch gives 0; NaN
    activations give a NaN penalty.

    Args:
        rho: Target mean activation (the sparsity parameter), a float
            strictly between 0 and 1. Defaults to `0.05`.
        beta: Weight of the penalty, a float between 0 and 1e12. Defaults
            to `3.0`.
        value_range: Optional `(low, high)` range of the activations when it
            is not `(0, 1)`, for example `(-1, 1)` for `tanh`. Mean
            activations are mapped linearly from it onto `(0, 1)` before the
            KL divergence. Defaults to `None`, meaning `(0, 1)`.
        axis: The feature axis, whose entries each get a `rho_hat_j`.
            Defaults to `-1` (channels last); use `1` for channels-first
            convolution outputs.
        cross_replica: Under data-parallel training with several replicas
            (`tf.distribute` strategies, or a `torch.distributed` process
            group with more than one process), compute `rho_hat` over the
            global batch with one all-reduce, so that training matches one
            device with the same global batch. Defaults to `True`. `False`
            gives each replica the penalty of its own share of the batch: a
            different objective, since the KL of a mean is not the mean of
            the KLs.

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
        >>> bool(np.isclose(layer.losses[0], regularizer.penalty(outputs)))
        True

    Reference:
        Andrew Ng, "Sparse autoencoder", CS294A Lecture notes, Stanford.
    """

    def __init__(
        self, rho=0.05, beta=3.0, value_range=None, axis=-1, cross_replica=True
    ):
        # Each assignment is validated by `__setattr__`, in this order.
        self.rho = rho
        self.beta = beta
        self.value_range = value_range
        self.axis = axis
        self.cross_replica = cross_replica

    def __setattr__(self, name, value):
        # Every argument is checked again when set after construction, so a
        # regularizer never holds a value its constructor would refuse.
        check = _ATTRIBUTE_CHECKS.get(name)
        if check is not None:
            value = check(value)
        super().__setattr__(name, value)

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
            x: Activations of rank >= 2, `(batch, ..., features)` when `axis`
                is `-1`.
            mask: Optional boolean or 0/1 tensor of shape exactly
                `x.shape[:-1]` (for example a sequence padding mask);
                masked-out positions are left out of `rho_hat`. Only with
                `axis=-1`.

        Returns:
            A float32 scalar tensor, the exact penalty
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
        """`scale` times the penalty of `x`, with its gradient in closed form.

        One function with a custom gradient from the activations to the
        penalty (`_value_and_slope` gives both): its value is the formula,
        its gradient with respect to each activation is the formula's. Written
        once, rather than left to autodiff through a dozen small operations,
        it is also cheaper where each operation runs on its own (eager
        PyTorch).
        """
        if not ops.is_tensor(x):
            x = ops.convert_to_tensor(x)
        if mask is not None:
            mask = ops.cast(ops.convert_to_tensor(mask), "float32")
        axis = _check_inputs(x, self.axis, mask)
        # Decided here, not inside the custom gradient: PyTorch runs that
        # without recording gradients.
        replicas = _replicas.current() if self.cross_replica else (1, None)
        arguments = (self.rho, self.beta, self.value_range, axis, replicas)

        custom_gradient = _functions().custom_gradient
        if mask is None:

            @custom_gradient
            def penalty(x):
                value, slope = _value_and_slope(x, None, scale, *arguments)
                shape_and_dtype = _shape_and_dtype(x)

                def grad(*args, upstream=None):
                    if upstream is None:
                        (upstream,) = args
                    return _broadcast(
                        slope * upstream, shape_and_dtype, axis, None
                    )

                return value, grad

            return penalty(x)

        @custom_gradient
        def masked_penalty(x, mask):
            value, slope = _value_and_slope(x, mask, scale, *arguments)
            shape_and_dtype = _shape_and_dtype(x)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                gradient = _broadcast(
                    slope * upstream, shape_and_dtype, axis, mask
                )
                return gradient, ops.zeros_like(mask)

            return value, grad

        return masked_penalty(x, mask)

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


def _check_axis(axis):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise _invalid_type("axis", axis, "an int")
    return int(axis)


_ATTRIBUTE_CHECKS = {
    "rho": _check_rho,
    "beta": _check_beta,
    "value_range": _check_value_range,
    "axis": _check_axis,
    "cross_replica": lambda value: _check_bool("cross_replica", value),
}
