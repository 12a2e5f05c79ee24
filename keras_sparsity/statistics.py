"""Sparsity figures of a layer's activations."""

import keras
import numpy as np


def sparsity_statistics(
    activations, value_range=None, active_threshold=0.5, regularizer=None
):
    """Sparsity figures of activations `(examples, ..., units)`, in float64.

    An activation is *active* when, mapped from `value_range` onto (0, 1), it
    exceeds `active_threshold`; a unit is *dead* when it is active on none of
    the examples. The firing rate of a unit is its mean mapped activation,
    the `rho_hat_j` of the KL penalty over the whole data.

    Args:
        activations: Array of shape `(examples, ..., units)`.
        value_range: Optional `(low, high)` range of the activation, mapped
            onto (0, 1). Defaults to `None`, meaning (0, 1).
        active_threshold: Level above which a mapped activation counts as
            active. Defaults to `0.5`.
        regularizer: Optional `KLSparsityRegularizer`; when given, the result
            includes its `penalty` of the whole `activations` array.

    Returns:
        A dict of plain Python values: `mean_activation`, `active_fraction`,
        `dead_units`, `dead_fraction`, `units`, `firing_rate_std`,
        `firing_rate_min`, `firing_rate_max`, `firing_rates` (a list, one
        rate per unit) and, with a regularizer, `kl_penalty`.

    Example:

    >>> import numpy as np
    >>> stats = sparsity_statistics(
    ...     np.array([[0.9, 0.0, 0.1], [0.7, 0.0, 0.3]])
    ... )
    >>> stats["mean_activation"], stats["active_fraction"], stats["dead_units"]
    (0.3333333333333333, 0.3333333333333333, 2)
    """
    a = np.asarray(activations, dtype=np.float64)
    if value_range is not None:
        low, high = value_range
        a = (a - low) / (high - low)
    a = a.reshape(-1, a.shape[-1])
    active = a > active_threshold
    rates = a.mean(axis=0)
    dead = int(np.sum(~active.any(axis=0)))
    stats = {
        "mean_activation": float(a.mean()),
        "active_fraction": float(active.mean()),
        "dead_units": dead,
        "dead_fraction": dead / a.shape[-1],
        "units": int(a.shape[-1]),
        "firing_rate_std": float(rates.std()),
        "firing_rate_min": float(rates.min()),
        "firing_rate_max": float(rates.max()),
        "firing_rates": rates.tolist(),
    }
    if regularizer is not None:
        penalty = regularizer.penalty(np.asarray(activations, "float32"))
        stats["kl_penalty"] = float(keras.ops.convert_to_numpy(penalty))
    return stats
