"""A sparse autoencoder trained by two workers with a global-batch KL penalty.

Without TF_CONFIG, the script starts two copies of itself on 127.0.0.1, each
with its own TF_CONFIG, waits for them and prints the chief's output. With
TF_CONFIG (as on a real cluster, one process per machine), it is one worker
of tf.distribute.MultiWorkerMirroredStrategy:

  TF_CONFIG='{...}' .venv/bin/python examples/multi_worker.py --steps 100

The KL penalty's rho_hat is the mean over the global batch, across both
workers (cross_replica=True, the default), so the training steps are those
of one device with the same global batch.

Keras 3.15's Model.fit cannot start under MultiWorkerMirroredStrategy (its
first symbolic build reduces a PerReplica batch eagerly), so this script runs
the very train_step that fit runs, with strategy.run.
"""

import os
import sys

from runs import (
    launch_local_processes,
    local_tf_workers,
    parser,
    positive_int,
    run,
)


def parse_args(argv):
    arguments = parser(
        __doc__, ".venv/bin/python examples/multi_worker.py --steps 20"
    )
    arguments.add_argument(
        "--steps",
        type=positive_int,
        default=50,
        help="training steps (default: 50)",
    )
    arguments.add_argument(
        "--global-batch",
        type=positive_int,
        default=256,
        help="examples per step, over all workers (default: 256)",
    )
    arguments.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    return arguments.parse_args(argv)


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help and bad flags answer before Keras loads
    # MultiWorkerMirroredStrategy is TensorFlow's.
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import quiet  # noqa: E402, F401, I001  (before Keras: no TensorFlow noise)

import json  # noqa: E402


def train(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_sparsity import SparseDense

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    chief = task["index"] == 0
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        inputs = keras.Input((784,))
        code = SparseDense(200, rho=0.05, beta=0.02, name="code")(inputs)
        outputs = keras.layers.Dense(784, activation="sigmoid")(code)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        model.optimizer.build(model.trainable_variables)

    # Every worker builds the same data; the strategy gives each its share
    # of every global batch.
    rng = np.random.default_rng(args.seed)
    x = (rng.random((args.steps * args.global_batch, 784)) ** 4).astype(
        "float32"
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, x))
        .batch(args.global_batch)
        .with_options(options)
    )

    @tf.function
    def train_step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        return strategy.reduce("MEAN", logs["loss"], axis=None)

    for step, batch in enumerate(
        strategy.experimental_distribute_dataset(dataset)
    ):
        loss = train_step(batch)
        if chief and (
            step % max(1, args.steps // 5) == 0 or step == args.steps - 1
        ):
            print(f"step {step + 1}/{args.steps}: loss {float(loss):.5f}")
    if chief:
        codes = keras.Model(inputs, code)(x[:1024])
        print(
            f"{strategy.num_replicas_in_sync} replicas; mean code activation "
            f"{float(np.mean(codes)):.4f} (rho 0.05)"
        )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "TF_CONFIG" not in os.environ:
        return launch_local_processes(__file__, argv, local_tf_workers(2))
    train(args)
    return 0


if __name__ == "__main__":
    run(main)
