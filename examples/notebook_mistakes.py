"""The two mistakes of the widely copied notebook regularizer, in numbers.

The notebook averages the whole activation matrix into one scalar p_hat and
writes the second KL term as log(1-p/1-p_hat), which Python reads as
log(1 - p - p_hat). This script scores the same activations three ways: the
correct penalty (KLSparsityRegularizer.penalty), the correct formula on the
notebook's scalar mean, and the notebook's expression as Python reads it.
"""

import sys

from runs import parser, run


def parse_args(argv):
    return parser(
        __doc__, ".venv/bin/python examples/notebook_mistakes.py"
    ).parse_args(argv)


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help and bad flags answer before Keras loads

import quiet  # noqa: E402, F401, I001  (before Keras: no TensorFlow noise)

import numpy as np  # noqa: E402

from keras_sparsity import KLSparsityRegularizer  # noqa: E402

RHO, BETA = 0.01, 3.0


def kl(rho, rho_hat):
    return rho * np.log(rho / rho_hat) + (1 - rho) * np.log(
        (1 - rho) / (1 - rho_hat)
    )


def notebook_penalty(activations, p=RHO, beta=BETA):
    """The notebook's expression, as Python evaluates it (for comparison)."""
    p_hat = np.mean(activations)  # mistake 1: one scalar for the layer
    with np.errstate(invalid="ignore"):
        # mistake 2: `1-p/1-p_hat` is `1 - p - p_hat`
        return beta * (p * np.log(p / p_hat) + (1 - p) * np.log(1 - p - p_hat))


def main(argv=None):
    parse_args(argv)
    # 200 hidden units, 256 examples: 2 units always on, 198 always off.
    # Mean activation over the whole layer: exactly rho = 0.01.
    activations = np.zeros((256, 200), dtype="float32")
    activations[:, :2] = 1.0
    correct = float(KLSparsityRegularizer(RHO, BETA).penalty(activations))
    scalar = BETA * kl(RHO, activations.mean())
    print("Activations: 2 of 200 units always on, the rest off (mean 0.01).")
    print(f"correct penalty, one rho_hat per unit:    {correct:10.4f}")
    print(f"same formula on the scalar mean:          {scalar:10.4f}")
    print(
        f"the notebook's expression:                "
        f"{notebook_penalty(activations):10.4f}"
    )
    print()
    print("The second KL term for rho = 0.01, by rho_hat:")
    print(" rho_hat   log((1-rho)/(1-rho_hat))   log(1-rho-rho_hat)")
    for rho_hat in (0.01, 0.1, 0.5, 0.98, 0.995):
        right = np.log((1 - RHO) / (1 - rho_hat))
        with np.errstate(invalid="ignore"):
            wrong = np.log(1 - RHO - rho_hat)
        print(f"{rho_hat:8.3f}   {right:24.4f}   {wrong:18.4f}")
    return 0


if __name__ == "__main__":
    run(main)
