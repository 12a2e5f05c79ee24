"""Sparsity figures of a layer's activations."""

import numpy as np

from keras_sparsity import _checks
from keras_sparsity._kl import RHO_HAT_MAX, RHO_HAT_MIN

ACTIVE_THRESHOLD = 0.1
"""Level above which an activation, mapped onto (0, 1), counts as *active*.

A unit is *dead* when it is active on none of the examples. One tenth of the
range: a sigmoid unit that never exceeds 0.1 carries almost no signal, while
a sparse unit that fires now and then at 0.3 is alive. `SparsityMonitor`,
`sparsity_statistics`, the examples and the benchmarks all use it."""


def _kl_penalty(rates, rho, beta):
    """`beta * sum_j KL(rho || rate_j)` in float64, clipped as the library."""
    q = np.clip(rates, RHO_HAT_MIN, RHO_HAT_MAX)
    kl = rho * np.log(rho / q) + (1.0 - rho) * np.log((1.0 - rho) / (1.0 - q))
    return float(beta * np.sum(np.maximum(kl, 0.0)))


def _positions(activations, axis, mask):
    """`(positions, units)` float64 array of the unmasked positions."""
    a = np.asarray(activations)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise TypeError(
            "Invalid type for argument `activations`: expected a numeric "
            f"array. Received: activations of dtype {a.dtype}"
        )
    if a.ndim < 2:
        raise ValueError(
            "Invalid value for argument `activations`: expected an array of "
            "rank >= 2, (examples, ..., units). Received: "
            f"activations.shape={a.shape}"
        )
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(
            f"Invalid axis {axis} for activations of rank {a.ndim}. "
            f"Received: activations.shape={a.shape}"
        )
    a = np.moveaxis(a.astype(np.float64), axis, -1)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != a.shape[:-1]:
            raise ValueError(
                "Invalid shape for argument `mask`: expected exactly "
                f"{a.shape[:-1]}, the activations' shape without the "
                f"feature axis. Received: mask.shape={mask.shape}"
            )
        a = a[mask.astype(bool)]
    if a.size == 0:
        raise ValueError(
            "Invalid value for argument `activations`: expected at least one "
            "example (left unmasked) and one unit. Received: "
            f"activations.shape={np.shape(activations)}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(
            "Invalid value for argument `activations`: "
            f"{int(np.sum(~np.isfinite(a)))} activations are NaN or inf."
        )
    return a.reshape(-1, a.shape[-1])


def sparsity_statistics(
    activations,
    value_range=None,
    active_threshold=ACTIVE_THRESHOLD,
    regularizer=None,
    axis=None,
    mask=None,
):
    """Sparsity figures of activations `(examples, ..., units)`, in float64.

    An activation is *active* when, mapped from `value_range` onto (0, 1), it
    exceeds `active_threshold`; a unit is *dead* when it is active on none of
    the examples. The firing rate of a unit is its mean mapped activation,
    the `rho_hat_j` of the KL penalty over the whole data. With a
    `regularizer`, the figures follow its `value_range` and `axis`, and
    `kl_penalty` is its penalty of the whole data, computed in float64.

    Args:
        activations (array): Array of shape `(examples, ..., units)` (or with
            the units on `axis`), at least one example.
        value_range (tuple of two floats or None): Optional `(low, high)` range
            of the activation, mapped onto (0, 1). Defaults to the
            regularizer's, else (0, 1).
        active_threshold (float): Level above which a mapped activation counts
            as active. Defaults to `ACTIVE_THRESHOLD` (0.1).
        regularizer (KLSparsityRegularizer or None): Optional
            `KLSparsityRegularizer`.
        axis (int or None): The units' axis. Defaults to the regularizer's, else
            `-1`.
        mask (array of bools or None): Optional boolean array, the activations'
            shape without the units' axis; `False` positions are left out, as
            the penalty of a masked `SparseDense` leaves them out.

    Returns:
        dict: A dict of plain Python values: `mean_activation`,
        `active_fraction`, `dead_units`, `dead_fraction`, `units`,
        `firing_rate_std`, `firing_rate_min`, `firing_rate_max`,
        `firing_rates` (a list, one rate per unit), `active_threshold` and,
        with a regularizer, `kl_penalty`.

    Raises:
        ValueError: for an empty or rank-1 array, NaN or inf activations,
            activations outside the value range (a ReLU code, say), a mask
            of the wrong shape, or an invalid `value_range`.

    Examples:
        >>> import numpy as np
        >>> stats = sparsity_statistics(
        ...     np.array([[0.9, 0.0, 0.1], [0.7, 0.0, 0.3]])
        ... )
        >>> stats["mean_activation"], stats["active_fraction"]
        (0.3333333333333333, 0.5)
        >>> stats["dead_units"]
        1
    """
    if value_range is None and regularizer is not None:
        value_range = regularizer.value_range
    value_range = _checks.value_range(value_range)
    if axis is None:
        axis = -1 if regularizer is None else regularizer.axis
    raw = _positions(activations, axis, mask)
    low, high = value_range or (0.0, 1.0)
    outside = int(np.sum((raw < low) | (raw > high)))
    if outside:
        raise ValueError(
            f"Invalid value for argument `activations`: {outside} of "
            f"{raw.size} lie outside the value range {(low, high)} (they "
            f"range from {raw.min():g} to {raw.max():g}). KL sparsity needs "
            "firing probabilities: pass a bounded activation's range as "
            "`value_range` (tanh: (-1, 1), relu6: (0, 6)), or use a sigmoid "
            "code; for a ReLU or softplus code, use an L1 activity "
            "regularizer (keras.regularizers.L1) instead of the KL penalty."
        )
    a = (raw - low) / (high - low)
    active = a > active_threshold
    rates = a.mean(axis=0)
    dead = int(np.sum(~active.any(axis=0)))
    stats = {
        "mean_activation": float(rates.mean()),
        "active_fraction": float(active.mean()),
        "dead_units": dead,
        "dead_fraction": dead / a.shape[1],
        "units": int(a.shape[1]),
        "firing_rate_std": float(rates.std()),
        "firing_rate_min": float(rates.min()),
        "firing_rate_max": float(rates.max()),
        "firing_rates": rates.tolist(),
        "active_threshold": float(active_threshold),
    }
    if regularizer is not None:
        stats["kl_penalty"] = _kl_penalty(
            rates, regularizer.rho, regularizer.beta
        )
    return stats
