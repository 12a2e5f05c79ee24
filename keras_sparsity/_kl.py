"""The numerics of the KL sparsity penalty, through `keras.ops` only.

`penalty(x, ...)` is `scale * beta * sum_j KL(rho || rho_hat_j)` of the
activations `x`, in float32 whatever their dtype, with its gradient in
closed form (one custom gradient from the activations to the penalty).
`rho` and `beta` are float32 numbers or scalar float32 tensors (the
variables of `SparseDense`), so that a compiled step reads their current
values.
"""

import keras
import numpy as np
from keras import ops

from keras_sparsity import _replicas

# `rho_hat` is clipped to [RHO_HAT_MIN, RHO_HAT_MAX] before the logarithms.
# In float32 that only moves an exact 0 (or a subnormal) and an exact 1:
# every other float32 in (0, 1) lies inside.
RHO_HAT_MIN = float(np.finfo(np.float32).tiny)  # 1.1754944e-38
RHO_HAT_MAX = 1.0 - 2.0**-24
# The gradient is the formula's own, evaluated at `rho_hat` clipped to
# [GRADIENT_FLOOR, RHO_HAT_MAX]: exact for mean activations down to 1e-12,
# bounded below that, so a silent unit gets a strong, finite push back.
GRADIENT_FLOOR = 1e-12
# The smallest argument of `log1p` in the KL: -1 plus float32's epsilon / 2.
LOG1P_FLOOR = -1.0 + 2.0**-24
FLOAT16_MAX = 65504.0


def _float32(value):
    """A constant as a float32 tensor: some backends convert a Python number
    given to a `keras.ops` function in `floatx()`, and float16 would round
    1e-38 to 0 and 1 - 2**-24 to 1."""
    return ops.convert_to_tensor(value, "float32")


def feature_sums(x, axis):
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
    return ops.sum(x, axis=tuple(i for i in range(len(x.shape)) if i != axis))


def _sums_and_count(x, axis, value_range, mask):
    """Per-feature float32 sums of the activations mapped onto (0, 1), and
    the number of positions they cover (a Python int when static)."""
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
                count *= (
                    ops.cast(ops.shape(x)[i], "float32")
                    if size is None
                    else size
                )
    else:
        x = x * ops.expand_dims(mask, -1)
        count = ops.sum(mask)
    return feature_sums(x, axis), count


def _kl_and_slope(q, rho):
    """`KL(rho || q)` per unit and its derivative `d KL / d q`, accurate in
    float32 for every float32 `rho` in (0, 1) and every `q` in (0, 1), from
    two shared ratios:

    - `over_q = (rho - q) / q`, which is `rho / q - 1`, and
    - `over_rest = (rho - q) / (q - 1)`, which is `(1 - rho) / (1 - q) - 1`.

    The KL, `rho * log(rho / q) + (1 - rho) * log((1 - rho) / (1 - q))`, is
    `rho * log1p(over_q) + (1 - rho) * log1p(over_rest)`: neither term
    rounds a ratio near 1, so a unit whose `q` equals `rho` adds exactly 0,
    and one near `rho` adds its small KL with a small error. An argument of
    `log1p` comes below -1 + 2**-24 only when its term's weight (`rho` or
    `1 - rho`) is below 2**-24; it is floored there, which changes the KL
    by less than that weight's share.

    The derivative, `-rho / q + (1 - rho) / (1 - q)`, is `over_rest -
    over_q`: the two have opposite signs, so it does not cancel near `q =
    rho` either. `over_q` is capped at its value at `q = GRADIENT_FLOOR`,
    which makes the derivative the formula's at `q` clipped to
    `[GRADIENT_FLOOR, 1)`: it does not vanish for a unit whose mean
    activation is tiny, as autodiff through the clip of the value would, so
    a silent unit is pushed back towards `rho`.
    """
    difference = rho - q
    over_q = difference / q
    over_rest = difference / (q - 1.0)
    floor = _float32(LOG1P_FLOOR)
    kl = rho * ops.log1p(ops.maximum(over_q, floor)) + (1.0 - rho) * ops.log1p(
        ops.maximum(over_rest, floor)
    )
    cap = _float32((rho - GRADIENT_FLOOR) / GRADIENT_FLOOR)
    return kl, over_rest - ops.minimum(over_q, cap)


def _value_and_slope(x, mask, scale, settings, axis, replicas):
    """The penalty of `x` times `scale`, and its derivative per activation.

    The derivative is the same for every position of a feature: the slope
    returned has one entry per feature. With several replicas the sums are
    the global batch's, and the slope is the global penalty's times the
    replica count, which the replicas' averaged gradients divide out.
    """
    rho, beta, value_range = settings
    replicas, all_reduce = replicas
    sums, count = _sums_and_count(x, axis, value_range, mask)
    if all_reduce is not None:
        sums, count = _replicas.global_sums(all_reduce, sums, count)
    weight = beta * scale
    if isinstance(count, int):
        if count == 0:  # an empty batch: 0, zero gradient
            return ops.sum(sums) * 0.0, ops.zeros_like(sums)
    else:
        weight = weight * ops.cast(count > 0, "float32")
        count = ops.maximum(count, 1.0)
    rho_hat = sums / count
    # NaN and +-inf activations give a NaN penalty and gradient.
    q = ops.where(
        ops.isfinite(rho_hat),
        ops.clip(rho_hat, _float32(RHO_HAT_MIN), _float32(RHO_HAT_MAX)),
        _float32(float("nan")),
    )
    kl, slope = _kl_and_slope(q, rho)
    # KL >= 0; relu drops float32 rounding below zero.
    value = weight * ops.sum(ops.relu(kl))
    width = 1.0 if value_range is None else value_range[1] - value_range[0]
    return value, slope * (weight * (replicas / width) / count)


def _gradient(slope, shape, dtype, axis, mask):
    """The gradient with respect to activations of `shape` and `dtype` (all
    it needs of them) from one slope per feature; in float16 it saturates
    at float16's largest value rather than overflow to inf."""
    rank = len(shape)
    if axis != rank - 1:
        slope_shape = [1] * rank
        slope_shape[axis] = -1
        slope = ops.reshape(slope, slope_shape)
    gradient = ops.broadcast_to(slope, shape)
    if mask is not None:
        gradient = gradient * ops.expand_dims(mask, -1)
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "float16":
        gradient = ops.clip(gradient, -FLOAT16_MAX, FLOAT16_MAX)
    if dtype != "float32":
        gradient = ops.cast(gradient, dtype)
    return gradient


def penalty(x, mask, scale, settings, axis, cross_replica):
    """`scale` times the penalty of `x`, with its gradient in closed form.

    Args:
        x: Activations, a tensor of rank >= 2.
        mask: `None`, or a float32 0/1 tensor of shape `x.shape[:-1]`.
        scale: A Python number or a float32 scalar tensor.
        settings: `(rho, beta, value_range)`: `rho` and `beta` float32
            numbers or scalar tensors, `value_range` `None` or `(low,
            high)`.
        axis: The feature axis, `0 <= axis < rank`.
        cross_replica: `True`, `False` or `None` (see `_replicas.current`).
    """
    # Decided here, not inside the custom gradient: PyTorch runs that
    # without recording gradients.
    replicas = _replicas.current(cross_replica)
    shape = x.shape if None not in x.shape else ops.shape(x)

    @ops.custom_gradient
    def value_and_gradient(x, *mask):
        mask = mask[0] if mask else None
        value, slope = _value_and_slope(
            x, mask, scale, settings, axis, replicas
        )
        dtype = x.dtype

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            gradient = _gradient(slope * upstream, shape, dtype, axis, mask)
            return (
                gradient if mask is None else (gradient, ops.zeros_like(mask))
            )

        return value, grad

    inputs = (x,) if mask is None else (x, mask)
    return _as_keras_losses(value_and_gradient(*inputs))


def _as_keras_losses(value):
    """The float32 penalty in Keras's `floatx()`, the dtype of the compiled
    loss it is summed with (TensorFlow adds no tensors of mixed dtypes)."""
    floatx = keras.config.floatx()
    return value if floatx == "float32" else ops.cast(value, floatx)
