"""Training-step cost of KL sparsity against L1, no penalty and a peer port.

Times training steps of the seed's 784-200-784 sigmoid autoencoder (SGD,
MSE, the penalty on both layers as in the seed notebook) in five variants,
interleaved round by round in a rotating order, so that machine noise hits
them alike:

  none          plain Dense layers
  l1            Dense with Keras's L1(1e-4) activity regularizer
  kl            Dense with KLSparsityRegularizer(rho=0.01, beta=3)
  peer          Dense with the KL regularizer people copy today (Geron,
                "Hands-On Machine Learning" ch. 17) as a keras.ops port
  sparse_dense  SparseDense(rho=0.01, beta=3) layers

Prints each variant's median step time and IQR, and the round-by-round
(paired) ratios: kl / l1 (the target: at most 1.02 on TensorFlow and JAX,
1.10 on eager PyTorch), kl / peer, sparse_dense / kl, and each against
none. Runs on any backend (KERAS_BACKEND). Needs a quiet machine.
"""

import sys

from common import add_counts  # first: examples/ on sys.path, no Keras
from runs import parser, run

EXAMPLE = ".venv/bin/python benchmarks/overhead.py --rounds 60 --steps 20"
JIT = {"auto": "auto", "true": True, "false": False}
COUNTS = {
    "--batch-size": (256, "images per training step"),
    "--rounds": (60, "interleaved rounds; each variant is timed once a round"),
    "--steps": (20, "training steps of each variant per round"),
    "--warmup": (10, "untimed steps of each variant first"),
}


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    add_counts(arguments, COUNTS)
    arguments.add_argument(
        "--jit-compile",
        default="auto",
        choices=sorted(JIT),
        help="passed to Model.compile (default: auto)",
    )
    return arguments


if __name__ == "__main__":
    arguments().parse_args(sys.argv[1:])  # --help answers before Keras starts

import autoencoder  # noqa: E402, I001  (after common: Keras, quietly)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import config, interleave, timing_lines, versions  # noqa: E402

VARIANTS = {
    "none": config("none"),
    "l1": config("l1", 1e-4),
    "kl": config("kl", 3.0, rho=0.01),
    "peer": config("peer", 3.0, rho=0.01),
    "sparse_dense": config("sparse_dense", 3.0, rho=0.01),
}
RATIOS = [
    ("kl", "l1"),
    ("kl", "peer"),
    ("sparse_dense", "kl"),
    ("l1", "none"),
    ("kl", "none"),
    ("peer", "none"),
    ("sparse_dense", "none"),
]


def main(argv=None):
    args = arguments().parse_args(argv)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((args.batch_size, 784), "float32")
    models = {
        name: autoencoder.build_autoencoder(
            variant, "both", "sgd", jit_compile=JIT[args.jit_compile]
        )
        for name, variant in VARIANTS.items()
    }
    times = interleave(
        {name: autoencoder.training_step(m, x) for name, m in models.items()},
        rounds=args.rounds,
        calls=args.steps,
        warmup=args.warmup,
    )
    print(", ".join(f"{key} {value}" for key, value in versions().items()))
    print(
        f"784-200-784 autoencoder, penalty on both layers, SGD, MSE, batch "
        f"{args.batch_size}, jit_compile={args.jit_compile}: {args.rounds} "
        f"interleaved rounds of {args.steps} steps"
    )
    print("\n".join(timing_lines(times, RATIOS)))
    return 0


if __name__ == "__main__":
    run(main)
