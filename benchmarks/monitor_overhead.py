"""What SparsityMonitor costs per training epoch.

Trains two identical 784-200-784 seed autoencoders on an MNIST-sized epoch
(60,000 images of random pixels, batch 256), one with a `SparsityMonitor`
watching the code layer on 2,000 images and one without, alternating one
epoch each so that machine noise hits both alike. Prints the median epoch
time of each and their ratio.

Run: `python benchmarks/monitor_overhead.py`
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_sparsity import KLSparsityRegularizer, SparsityMonitor


def build():
    inputs = keras.Input((784,))
    code = keras.layers.Dense(
        200,
        activation="sigmoid",
        activity_regularizer=KLSparsityRegularizer(0.01, 3.0),
        name="code",
    )(inputs)
    outputs = keras.layers.Dense(784, activation="sigmoid")(code)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--monitor-samples", type=int, default=2_000)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((args.samples, 784)).astype("float32")
    models = {"plain": build(), "monitored": build()}
    callbacks = {
        "plain": [],
        "monitored": [SparsityMonitor(["code"], x[: args.monitor_samples])],
    }
    times = {name: [] for name in models}
    for epoch in range(args.epochs + 1):  # the first epoch warms up
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(
                x,
                x,
                batch_size=256,
                epochs=1,
                verbose=0,
                callbacks=callbacks[name],
            )
            if epoch:
                times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    monitored = statistics.median(times["monitored"])
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}: "
        f"{args.samples} images per epoch, batch 256, monitor on "
        f"{args.monitor_samples} images, {args.epochs} epochs each"
    )
    print(f"median epoch without monitor: {plain:.3f} s")
    print(f"median epoch with monitor:    {monitored:.3f} s")
    print(f"ratio monitored / plain:      {monitored / plain:.3f}")


if __name__ == "__main__":
    main()
