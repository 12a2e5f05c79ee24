"""Argument checks of the public classes.

Each check returns the value in the form the library keeps, or raises the
`TypeError` or `ValueError` that names the argument and echoes the value.
`rho` and `beta` are kept as float32 numbers (the penalty is computed in
float32, and `SparseDense` holds them in float32 variables), written as the
shortest Python float that rounds to them: `0.05` stays `0.05`.
"""

import math
import numbers

import numpy as np

# The smallest normal float32 and the largest float32 below 1.
SMALLEST_RHO = float(np.finfo(np.float32).tiny)
LARGEST_RHO = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
# With beta <= MAX_BETA the penalty, its gradient (at most beta / 1e-12 per
# unit) and Keras's scaled copy all fit float32.
MAX_BETA = 1e12
# Feature axes that an output of rank 2 to 5 (`Dense` to `Conv3D`) can have;
# axis 0 is the batch axis.
MAX_AXIS = 4


def invalid_type(name, value, expected):
    return TypeError(
        f"Invalid type for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r} (of type {type(value).__name__})"
    )


def invalid_value(name, value, expected):
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _real(name, value):
    """`value` as a float, or the `TypeError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid_type(name, value, "a float")
    return float(value)


def float32(value):
    """The shortest Python float that rounds to the float32 of `value`."""
    return float(str(np.float32(value)))


def rho(value):
    value = _real("rho", value)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise invalid_value("rho", value, "a float strictly between 0 and 1")
    if not SMALLEST_RHO <= np.float32(value) < 1.0:
        raise invalid_value(
            "rho",
            value,
            f"a float from {SMALLEST_RHO:.8g} (the smallest normal float32) "
            f"to {LARGEST_RHO:.8g} (the largest float32 below 1), since the "
            "penalty is computed in float32",
        )
    return float32(value)


def beta(value):
    value = _real("beta", value)
    if not (math.isfinite(value) and value >= 0.0):
        raise invalid_value("beta", value, "a float >= 0")
    if value > MAX_BETA:
        raise invalid_value(
            "beta",
            value,
            f"a float <= {MAX_BETA:g}, since a larger weight overflows "
            "float32 in the gradient",
        )
    return float32(value)


def value_range(value):
    """`(low, high)` floats from any pair of reals (array-likes too), or
    `None`."""
    if value is None:
        return None
    expected = "a pair (low, high) of finite floats with low < high"
    pair = np.asarray(value, dtype=object) if not isinstance(value, str) else 0
    if np.shape(pair) != (2,) or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)
        for v in pair
    ):
        raise TypeError(
            f"Invalid type for argument `value_range`: expected {expected}. "
            f"Received: value_range={value!r}"
        )
    low, high = float(pair[0]), float(pair[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            f"Invalid value for argument `value_range`: expected {expected}. "
            f"Received: value_range={value!r}"
        )
    if not (
        max(abs(low), abs(high), high - low) <= 1e37
        and high - low >= SMALLEST_RHO
    ):
        raise ValueError(
            f"Invalid value for argument `value_range`: expected {expected}, "
            "at most 1e37 in size and apart, and at least 1.2e-38 apart, "
            "so that float32 holds the mapped activations. "
            f"Received: value_range={value!r}"
        )
    return low, high


def axis(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise invalid_type("axis", value, "an int")
    if not (value != 0 and -MAX_AXIS <= value <= MAX_AXIS):
        raise invalid_value(
            "axis",
            value,
            f"a non-zero int from {-MAX_AXIS} to {MAX_AXIS}, the feature axis "
            "of an output of rank 2 to 5 (axis 0 is the batch axis)",
        )
    return int(value)


def cross_replica(value):
    if value is not None and not isinstance(value, bool):
        raise invalid_type("cross_replica", value, "a bool or None")
    return value


def units(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            "Invalid type for argument `units`: expected a positive int. "
            f"Received: units={value!r} (of type {type(value).__name__})"
        )
    if value <= 0:
        raise ValueError(
            "Invalid value for argument `units`: expected a positive int. "
            f"Received: units={value!r}"
        )
    return int(value)
