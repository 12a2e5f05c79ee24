"""What the cross-replica mean of the KL penalty costs at 2 replicas.

Under `tf.distribute.MirroredStrategy` on two logical CPU devices, times
training steps of the seed's 784-200-784 autoencoder (KL on both layers,
SGD, MSE, global batch 256) with the synchronized penalty
(`cross_replica=True`, the default: one extra all-reduce of 201 floats per
layer and step) and with the per-replica penalty (`cross_replica=False`),
interleaved round by round in one process. Prints the median step times and
the cost of synchronization as a share of a step.

Run: `python benchmarks/sync_cost.py` (TensorFlow backend).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_sparsity import KLSparsityRegularizer  # noqa: E402


def build(cross_replica):
    def layer(units):
        return keras.layers.Dense(
            units,
            activation="sigmoid",
            activity_regularizer=KLSparsityRegularizer(
                0.01, 3.0, cross_replica=cross_replica
            ),
        )

    model = keras.Sequential([keras.Input((784,)), layer(200), layer(784)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = np.random.default_rng(0).random((args.batch_size, 784))
    x = x.astype("float32")
    with strategy.scope():
        models = {"synchronized": build(True), "per_replica": build(False)}
    for model in models.values():
        for _ in range(5):
            model.train_on_batch(x, x)
    times = {name: [] for name in models}
    for round_index in range(args.rounds):
        names = list(models)[:: 1 if round_index % 2 == 0 else -1]
        for name in names:
            start = time.perf_counter()
            for _ in range(args.steps):
                models[name].train_on_batch(x, x)
            times[name].append((time.perf_counter() - start) / args.steps)
    sync = statistics.median(times["synchronized"]) * 1e3
    local = statistics.median(times["per_replica"]) * 1e3
    ratios = [
        a / b for a, b in zip(times["synchronized"], times["per_replica"])
    ]
    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}: "
        f"MirroredStrategy, {strategy.num_replicas_in_sync} replicas, global "
        f"batch {args.batch_size}, {args.rounds} interleaved rounds of "
        f"{args.steps} steps"
    )
    print(f"median step, synchronized rho_hat: {sync:.3f} ms")
    print(f"median step, per-replica rho_hat:  {local:.3f} ms")
    print(
        f"synchronization cost: {100 * (sync / local - 1):+.1f}% of a step "
        f"(median of paired ratios {statistics.median(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
