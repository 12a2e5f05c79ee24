"""What SparsityMonitor costs per training epoch.

Trains two identical seed autoencoders (784-200-784, KL(rho=0.01, beta=3)
on the code, SGD, MSE) on an MNIST-sized epoch of random pixels, one with a
SparsityMonitor watching the code layer and one without, one epoch each in
a rotating order so that machine noise hits both alike. The first epoch of
each warms up and is not timed. Prints the median epoch time of each and
their paired ratio. Timings need a quiet machine.
"""

import sys

from common import add_counts  # first: examples/ on sys.path, no Keras
from runs import parser, run

EXAMPLE = ".venv/bin/python benchmarks/monitor_overhead.py --epochs 8"
COUNTS = {
    "--epochs": (8, "timed epochs of each model, after one untimed"),
    "--samples": (60_000, "random images per epoch, as many as MNIST has"),
    "--monitor-samples": (2_000, "images the monitor measures each epoch"),
    "--batch-size": (256, "images per training step"),
}


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    add_counts(arguments, COUNTS)
    return arguments


if __name__ == "__main__":
    arguments().parse_args(sys.argv[1:])  # --help answers before Keras starts

from autoencoder import build_autoencoder  # noqa: E402, I001  (Keras, quietly)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import config, interleave, timing_lines, versions  # noqa: E402

from keras_sparsity import SparsityMonitor  # noqa: E402


def main(argv=None):
    args = arguments().parse_args(argv)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((args.samples, 784), "float32")
    penalty = config("kl", 3.0, rho=0.01)
    monitor = SparsityMonitor(["code"], x[: args.monitor_samples])
    epochs = {
        "plain": _epoch(build_autoencoder(penalty, optimizer="sgd"), x, args),
        "monitored": _epoch(
            build_autoencoder(penalty, optimizer="sgd"), x, args, [monitor]
        ),
    }
    times = interleave(epochs, rounds=args.epochs, calls=1, warmup=1)
    print(", ".join(f"{key} {value}" for key, value in versions().items()))
    print(
        f"{args.samples} images per epoch, batch {args.batch_size}, monitor "
        f"on {args.monitor_samples} images, {args.epochs} timed epochs each"
    )
    print("\n".join(timing_lines(times, [("monitored", "plain")], 1, "s")))
    return 0


def _epoch(model, x, args, callbacks=()):
    def epoch():
        model.fit(
            x,
            x,
            batch_size=args.batch_size,
            epochs=1,
            verbose=0,
            callbacks=list(callbacks),
        )

    return epoch


if __name__ == "__main__":
    run(main)
