"""Per-unit sums over the global batch under data-parallel training.

Keras has no backend-neutral cross-replica reduction, so this module is
the one place where the library reaches for a backend directly, and only
for the backend that is running. JAX's `keras.distribution` needs nothing:
its arrays are global, so batch means already cover every device.
"""

import keras
from keras import ops


def _tf_replicas():
    """`(replica count, all-reduce)` under a `tf.distribute` strategy."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1, None

    def all_reduce(value):
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    return context.num_replicas_in_sync, all_reduce


_REPLICAS = {"tensorflow": _tf_replicas}


def global_sums(sums, count):
    """The sums and count of the global batch, with replica-exact gradients.

    One all-reduce of the per-unit sums and the count gives every replica
    the global batch's values. What each replica differentiates is its own
    sums times the replica count: data-parallel training averages the
    replicas' gradients (Keras scales each replica's loss by
    `1 / replicas` and sums), so the average is the gradient of the global
    penalty, with no all-reduce in the backward pass.

    Args:
        sums: Per-unit sums of this replica's share of the batch.
        count: Positions per unit in that share, an int or a scalar tensor.

    Returns:
        `(sums, count)` of the global batch; unchanged with one replica.
    """
    replicas = _REPLICAS.get(keras.backend.backend())
    replicas, all_reduce = replicas() if replicas else (1, None)
    if all_reduce is None:
        return sums, count
    count = ops.reshape(ops.cast(count, "float32"), (1,))
    packed = all_reduce(ops.stop_gradient(ops.concatenate([sums, count])))
    total, count = packed[:-1], packed[-1]
    sums = ops.stop_gradient(total - replicas * sums) + replicas * sums
    return sums, count
