"""Per-unit sums over the global batch under data-parallel training.

Keras has no backend-neutral cross-replica reduction, so this module is the
one place in the package that reaches for a backend directly, and only for
the backend that is running:

- TensorFlow: the replica context of a `tf.distribute` strategy that runs
  one replica per process (`MultiWorkerMirroredStrategy` with one device
  per worker). Where a process runs several replicas (`MirroredStrategy`),
  they are threads of one process, an all-reduce in the forward pass
  switches between them, and Keras's bookkeeping of each layer's losses is
  shared between them: another replica's call clears the losses added
  before the all-reduce and adds its own. So there the global batch is
  refused, and each replica penalizes its own share (see `current`).
- PyTorch: the default `torch.distributed` process group, when it is
  initialized with more than one process (DDP), in passes that record
  gradients.
- JAX needs nothing: the arrays of `keras.distribution` are global, so batch
  means already cover every device.
"""

import keras
from keras import ops


def _tf_replicas(cross_replica):
    """`(replica count, all-reduce)` under a `tf.distribute` strategy."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1, None
    local = len(context.strategy.extended.worker_devices)
    if local > 1:
        if cross_replica:
            strategy = type(context.strategy).__name__
            raise ValueError(
                "KLSparsityRegularizer(cross_replica=True) cannot compute the "
                f"penalty of the global batch under {strategy}, whose {local} "
                "replicas in this process are threads: an "
                "all-reduce in the forward pass lets another replica clear "
                "and add to Keras's per-layer loss lists, which corrupts the "
                "logged loss and the gradients of any other loss. Use "
                "cross_replica=None (the default) or False to penalize each "
                "replica's own share of the batch, or one replica per process "
                "(MultiWorkerMirroredStrategy, JAX, PyTorch DDP) for the "
                "global batch."
            )
        return 1, None

    def all_reduce(value):
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    return context.num_replicas_in_sync, all_reduce


def _torch_replicas(cross_replica):
    """`(process count, all-reduce)` in the default process group.

    Only where gradients are being recorded: a forward pass under
    `torch.no_grad()` (Keras's `predict` and `evaluate`, or one process
    evaluating alone) trains nothing, and an all-reduce that the other
    processes never join would wait for ever.
    """
    import torch
    import torch.distributed as dist

    if (
        not (dist.is_available() and dist.is_initialized())
        or not torch.is_grad_enabled()
    ):
        return 1, None
    processes = dist.get_world_size()
    if processes == 1:
        return 1, None

    def all_reduce(value):
        value = value.clone()  # all_reduce works in place
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    return processes, all_reduce


_REPLICAS = {"tensorflow": _tf_replicas, "torch": _torch_replicas}


def current(cross_replica):
    """`(replicas, all_reduce)` of the data-parallel training running here.

    `all_reduce` sums a float32 vector over the replicas; it is `None`, with
    one replica, outside data-parallel training, with `cross_replica=False`,
    and with `cross_replica=None` where a process runs several replicas
    (`MirroredStrategy`), which `cross_replica=True` refuses.
    """
    replicas = _REPLICAS.get(keras.backend.backend())
    if cross_replica is False or replicas is None:
        return 1, None
    return replicas(cross_replica)


def global_sums(all_reduce, sums, count):
    """The per-unit sums and the count of the global batch.

    One all-reduce of the replica's sums and count gives every replica the
    global batch's values. The penalty's gradient with respect to the
    replica's own activations is the global penalty's, times the replica
    count: data-parallel training averages the replicas' gradients
    (`tf.distribute` through Keras, which scales each replica's loss by
    `1 / replicas` and sums; DDP, which averages), so the average is the
    gradient of the global penalty, with no all-reduce in the backward pass.
    """
    count = ops.reshape(ops.cast(count, "float32"), (1,))
    packed = all_reduce(ops.concatenate([sums, count]))
    return packed[:-1], packed[-1]
