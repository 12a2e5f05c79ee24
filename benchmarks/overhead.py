"""Training-step cost of KL sparsity against L1 and no activity penalty.

Times training steps of the seed's 784-200-784 sigmoid autoencoder (SGD,
MSE) in four variants, interleaved round by round in one process, in a
rotating order, so that machine noise hits them alike:

  none          plain Dense layers
  l1            Dense with Keras's L1(1e-4) activity regularizer
  kl            Dense with KLSparsityRegularizer(rho=0.01, beta=3)
  sparse_dense  SparseDense(rho=0.01, beta=3) layers

As in the seed notebook, both layers carry the penalty. Prints each
variant's median step time and IQR, and the round-by-round (paired) ratios
the library is held to: kl / l1 <= 1.02 (1.03 on PyTorch) and
sparse_dense <= kl. Runs on any backend (set KERAS_BACKEND). Timings need a
quiet machine.

On PyTorch a fifth variant shows what the penalty's direct torch calls,
own custom gradient and cached float32 constants save there (see
docs/design.md):

  kl_keras_ops  kl as the other backends run it: every operation of the
                penalty and its custom gradient through keras.ops, Python
                numbers as constants
"""

import common  # noqa: F401, I001  (first: examples/ on sys.path, then quiet)

import contextlib

import keras
import numpy as np
from keras import ops
from common import (
    build_autoencoder,
    config,
    interleave,
    timing_lines,
    versions,
)
from runs import parser, positive_int, run

from keras_sparsity import regularizers

EXAMPLE = ".venv/bin/python benchmarks/overhead.py --rounds 60 --steps 20"
VARIANTS = {
    "none": config("none"),
    "l1": config("l1", 1e-4),
    "kl": config("kl", 3.0, rho=0.01),
    "sparse_dense": config("sparse_dense", 3.0, rho=0.01),
}
RATIOS = [
    ("kl", "l1"),
    ("kl", "none"),
    ("sparse_dense", "kl"),
    ("sparse_dense", "none"),
]
TORCH_RATIOS = [("kl_keras_ops", "kl"), ("kl_keras_ops", "l1")]
JIT = {"auto": "auto", "true": True, "false": False}


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per training step (default: 256)",
    )
    arguments.add_argument(
        "--rounds",
        type=positive_int,
        default=60,
        help="interleaved rounds; each variant is timed once per round "
        "(default: 60)",
    )
    arguments.add_argument(
        "--steps",
        type=positive_int,
        default=20,
        help="training steps of each variant per round (default: 20)",
    )
    arguments.add_argument(
        "--warmup",
        type=positive_int,
        default=10,
        help="untimed steps of each variant first (default: 10)",
    )
    arguments.add_argument(
        "--jit-compile",
        default="auto",
        choices=sorted(JIT),
        help="passed to Model.compile (default: auto)",
    )
    return arguments


def main(argv=None):
    args = arguments().parse_args(argv)
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((args.batch_size, 784), "float32")
    variants = dict(VARIANTS)
    ratios = list(RATIOS)
    if keras.backend.backend() == "torch":
        variants["kl_keras_ops"] = VARIANTS["kl"]
        ratios += TORCH_RATIOS
    models = {
        name: build_autoencoder(
            variant, "both", "sgd", jit_compile=JIT[args.jit_compile]
        )
        for name, variant in variants.items()
    }
    times = interleave(
        {name: _step(model, x, name) for name, model in models.items()},
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
    print("\n".join(timing_lines(times, ratios)))
    return 0


def _step(model, x, name):
    if name != "kl_keras_ops":
        return lambda: model.train_on_batch(x, x)

    def step():
        with _through_keras_ops():
            model.train_on_batch(x, x)

    return step


@contextlib.contextmanager
def _through_keras_ops():
    """The penalty as TensorFlow and JAX run it: PyTorch's direct torch calls
    and cached constants switched off (the library's own switches)."""
    functions, scalar = regularizers._functions, regularizers._scalar
    regularizers._functions = lambda: ops
    regularizers._scalar = lambda value: value
    try:
        yield
    finally:
        regularizers._functions, regularizers._scalar = functions, scalar


if __name__ == "__main__":
    run(main)
