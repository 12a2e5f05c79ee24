"""What SparsityMonitor costs per training epoch.

Trains two identical seed autoencoders (784-200-784, KL(rho=0.01, beta=3)
on the code, SGD, MSE) on an MNIST-sized epoch of random pixels, one with a
SparsityMonitor watching the code layer and one without, one epoch each in
a rotating order so that machine noise hits both alike. The first epoch of
each warms up and is not timed. Prints the median epoch time of each and
their paired ratio. Timings need a quiet machine.
"""

import common  # noqa: F401, I001  (first: examples/ on sys.path, then quiet)

import keras
import numpy as np
from common import build_autoencoder, config, interleave, timing_lines, versions
from runs import parser, positive_int, run

from keras_sparsity import SparsityMonitor

EXAMPLE = ".venv/bin/python benchmarks/monitor_overhead.py --epochs 8"


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    arguments.add_argument(
        "--epochs",
        type=positive_int,
        default=8,
        help="timed epochs of each model, after one untimed (default: 8)",
    )
    arguments.add_argument(
        "--samples",
        type=positive_int,
        default=60_000,
        help="images per epoch (default: 60000, MNIST's training set)",
    )
    arguments.add_argument(
        "--monitor-samples",
        type=positive_int,
        default=2_000,
        help="images the monitor measures after each epoch (default: 2000)",
    )
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per training step (default: 256)",
    )
    return arguments


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
