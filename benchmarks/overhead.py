"""Training-step cost of KL sparsity against L1 and no activity penalty.

Times training steps of the seed's 784-200-784 sigmoid autoencoder (SGD,
MSE, batch 256) in four variants, interleaved round by round in one process
so that machine noise hits them alike:

- `none`: plain `Dense` layers;
- `l1`: `Dense` with Keras's `L1` activity regularizer;
- `kl`: `Dense` with `KLSparsityRegularizer`;
- `sparse_dense`: `SparseDense` layers.

As in the seed notebook, both layers carry the activity penalty. Prints the
median step time of each variant and the ratios the library is held to:
`kl / l1 <= 1.02` and `sparse_dense <= kl`.

Run: `python benchmarks/overhead.py` (any backend, set `KERAS_BACKEND`).
"""

import argparse
import platform
import statistics
import time

import keras
import numpy as np

import keras_sparsity
from keras_sparsity import KLSparsityRegularizer, SparseDense

VARIANTS = ("none", "l1", "kl", "sparse_dense")


def build(variant, jit_compile):
    def layer(units):
        if variant == "sparse_dense":
            return SparseDense(units, rho=0.01, beta=3.0)
        activity = {
            "none": None,
            "l1": keras.regularizers.L1(1e-4),
            "kl": KLSparsityRegularizer(0.01, 3.0),
        }[variant]
        return keras.layers.Dense(
            units, activation="sigmoid", activity_regularizer=activity
        )

    model = keras.Sequential([keras.Input((784,)), layer(200), layer(784)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20, help="per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--jit-compile",
        default="auto",
        choices=["auto", "true", "false"],
        help="passed to Model.compile",
    )
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 784)).astype("float32")
    models = {v: build(v, jit) for v in VARIANTS}
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch(x, x)

    times = {v: [] for v in VARIANTS}
    for round_index in range(args.rounds):
        # Rotate the order so no variant always runs first or last.
        order = VARIANTS[round_index % 4 :] + VARIANTS[: round_index % 4]
        for variant in order:
            model = models[variant]
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, x)
            elapsed = time.perf_counter() - start
            times[variant].append(elapsed / args.steps * 1e3)

    median = {v: statistics.median(t) for v, t in times.items()}
    print(
        f"keras_sparsity {keras_sparsity.__version__}, keras "
        f"{keras.__version__}, backend {keras.backend.backend()}, "
        f"jit_compile={args.jit_compile}, python "
        f"{platform.python_version()}, {platform.machine()}"
    )
    print(
        f"784-200-784 autoencoder, SGD, MSE, batch {args.batch_size}: "
        f"{args.rounds} interleaved rounds of {args.steps} steps"
    )
    print(f"{'variant':<14}{'median ms/step':>16}{'IQR ms':>10}")
    for variant in VARIANTS:
        q1, _, q3 = statistics.quantiles(times[variant], n=4)
        print(f"{variant:<14}{median[variant]:>16.3f}{q3 - q1:>10.3f}")
    # Ratios are taken round by round (paired), then summarized.
    for label, num, den in [
        ("kl / l1", "kl", "l1"),
        ("kl / none", "kl", "none"),
        ("sparse_dense / kl", "sparse_dense", "kl"),
        ("sparse_dense / none", "sparse_dense", "none"),
    ]:
        ratios = [a / b for a, b in zip(times[num], times[den])]
        q1, mid, q3 = statistics.quantiles(ratios, n=4)
        print(
            f"ratio {label:<20} median {mid:.3f}  (IQR {q1:.3f} to {q3:.3f}"
            f"; ratio of medians {median[num] / median[den]:.3f})"
        )


if __name__ == "__main__":
    main()
