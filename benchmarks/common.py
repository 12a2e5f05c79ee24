"""What the benchmarks share: the seed autoencoder and interleaved timing.

Imported first by every benchmark. It puts `examples/` on `sys.path`, so
the benchmarks load data with `examples/data.py`, build their command lines
and output folders with `examples/runs.py` and start Keras quietly with
`examples/quiet.py`, exactly as the examples do; then it imports `quiet`
before Keras.

- `build_autoencoder(config)`: the seed notebook's 784-200-784 sigmoid
  autoencoder (MSE) with no penalty, Keras's `L1` activity regularizer,
  `KLSparsityRegularizer`, `SparseDense` layers or a top-k code; the penalty
  on the code only or on both layers; Adam or SGD.
- `interleave(candidates, rounds, calls)`: times callables round by round in
  a rotating order, so machine noise hits them alike; `median_iqr` and
  `paired_ratio` summarize the times.
"""

import os
import sys

EXAMPLES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"
)
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

import quiet  # noqa: E402, F401, I001  (first: Keras without TensorFlow's noise)

import platform  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_sparsity  # noqa: E402
from keras_sparsity import KLSparsityRegularizer, SparseDense  # noqa: E402

CODE_UNITS = 200
IMAGE_PIXELS = 784
PENALTIES = ("none", "l1", "kl", "sparse_dense", "topk")
OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "sgd": lambda: keras.optimizers.SGD(0.01),
}


def config(regularizer="none", strength=0.0, rho=None, k=None):
    """A run's penalty as a plain dict (the form `results.json` stores).

    Args:
        regularizer: One of `PENALTIES`.
        strength: The L1 factor, or KL's and `SparseDense`'s `beta`.
        rho: KL's and `SparseDense`'s target mean activation.
        k: The number of code units a top-k code keeps.
    """
    if regularizer not in PENALTIES:
        raise ValueError(
            f"Unknown regularizer {regularizer!r}; expected one of {PENALTIES}"
        )
    return {
        "regularizer": regularizer,
        "strength": float(strength),
        "rho": rho,
        "k": k,
    }


def describe_config(run):
    """A short label of a run's penalty: `L1 0.001`, `KL rho=0.05 beta=0.01`."""
    name = run["regularizer"]
    if name == "l1":
        return f"L1 {run['strength']:g}"
    if name == "kl":
        return f"KL rho={run['rho']:g} beta={run['strength']:g}"
    if name == "sparse_dense":
        return f"SparseDense rho={run['rho']:g} beta={run['strength']:g}"
    if name == "topk":
        return f"top-k k={run['k']}"
    return "none"


class TopK(keras.layers.Layer):
    """Keeps the `k` largest activations of each example, zeroes the rest.

    Activations equal to the k-th largest are kept too, so ties can keep a
    few more than `k`. A simple form of Makhzani and Frey's k-sparse code
    (2013): no schedule on `k`.
    """

    def __init__(self, k, **kwargs):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                "Invalid value for argument `k`: expected an integer >= 1. "
                f"Received: k={k!r}"
            )
        super().__init__(**kwargs)
        self.k = k

    def call(self, x):
        kth = ops.top_k(x, self.k)[0][..., -1:]
        return ops.where(x >= kth, x, ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def _dense(run, units, name, penalized):
    """One sigmoid layer of the autoencoder, penalized as `run` says."""
    kind = run["regularizer"] if penalized else "none"
    if kind == "sparse_dense":
        return SparseDense(
            units, rho=run["rho"], beta=run["strength"], name=name
        )
    activity = {
        "none": lambda: None,
        "topk": lambda: None,
        "l1": lambda: keras.regularizers.L1(run["strength"]),
        "kl": lambda: KLSparsityRegularizer(run["rho"], run["strength"]),
    }[kind]()
    return keras.layers.Dense(
        units, activation="sigmoid", activity_regularizer=activity, name=name
    )


def build_autoencoder(
    run, penalize="code", optimizer="adam", jit_compile="auto"
):
    """The seed's 784-200-784 sigmoid autoencoder, compiled with MSE.

    Args:
        run: A `config()` dict: the penalty and its parameters.
        penalize: `"code"` (the penalty on the 200-unit code only) or
            `"both"` (on the code and the 784-pixel output, as in the seed
            notebook). A top-k code is never penalized.
        optimizer: `"adam"` (Adam(1e-3)) or `"sgd"` (SGD(0.01)).
        jit_compile: Passed to `Model.compile`.

    Returns:
        The autoencoder; its code layer is named `"code"` (and the top-k
        layer that follows it `"top_k"`), its output layer
        `"reconstruction"`.
    """
    if penalize not in ("code", "both"):
        raise ValueError(f"penalize must be 'code' or 'both', not {penalize!r}")
    inputs = keras.Input((IMAGE_PIXELS,), name="image")
    code = _dense(run, CODE_UNITS, "code", True)(inputs)
    if run["regularizer"] == "topk":
        code = TopK(run["k"], name="top_k")(code)
    outputs = _dense(run, IMAGE_PIXELS, "reconstruction", penalize == "both")(
        code
    )
    model = keras.Model(inputs, outputs, name="autoencoder")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](), loss="mse", jit_compile=jit_compile
    )
    return model


def code_and_reconstruction(model, batch_size=4096):
    """A function of images to the autoencoder's `(codes, reconstructions)`.

    The code is the top-k layer's output when there is one. The function
    calls the model eagerly, batch by batch: unlike `Model.predict`, it
    traces no new `tf.function` for each model, so measuring many models in
    a row prints no retracing warnings.
    """
    names = {layer.name for layer in model.layers}
    code = model.get_layer("top_k" if "top_k" in names else "code").output
    both = keras.Model(model.input, [code, model.output])

    def apply(images):
        codes, reconstructions = [], []
        for start in range(0, len(images), batch_size):
            code, reconstruction = both(
                images[start : start + batch_size], training=False
            )
            codes.append(ops.convert_to_numpy(code))
            reconstructions.append(ops.convert_to_numpy(reconstruction))
        return np.concatenate(codes), np.concatenate(reconstructions)

    return apply


def interleave(candidates, rounds, calls=1, warmup=1, clock=time.perf_counter):
    """Times callables in rounds, rotating their order from round to round.

    In round `r` the candidates run in their given order shifted by `r`, so
    none always runs first or last; each runs `calls` times in a row.

    Args:
        candidates: Dict of name to a callable taking no argument.
        rounds: Number of rounds.
        calls: Calls of each candidate per round.
        warmup: Untimed calls of each candidate before the first round.
        clock: Returns seconds (a fake clock in tests).

    Returns:
        Dict of name to a list of seconds per call, one entry per round.
    """
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            for _ in range(calls):
                candidates[name]()
            times[name].append((clock() - start) / calls)
    return times


def median_iqr(values):
    """`(median, first quartile, third quartile)` of a list of numbers."""
    q1, median, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return float(median), float(q1), float(q3)


def paired_ratio(times, numerator, denominator):
    """Round-by-round ratios of two candidates' times, summarized.

    Returns:
        Dict with `median`, `q1`, `q3` of the per-round ratios and
        `of_medians`, the ratio of the two medians.
    """
    ratios = [a / b for a, b in zip(times[numerator], times[denominator])]
    median, q1, q3 = median_iqr(ratios)
    of_medians = (
        median_iqr(times[numerator])[0] / median_iqr(times[denominator])[0]
    )
    return {"median": median, "q1": q1, "q3": q3, "of_medians": of_medians}


def timing_lines(times, pairs, scale=1e3, unit="ms"):
    """Printable lines: each candidate's median and IQR, then paired ratios.

    Args:
        times: What `interleave` returned.
        pairs: `(numerator, denominator)` names whose ratios to print.
        scale, unit: Seconds are multiplied by `scale` and shown in `unit`.
    """
    width = max(len(name) for name in times) + 2
    lines = [f"{'':<{width}}{'median ' + unit:>14}{'IQR ' + unit:>12}"]
    for name, values in times.items():
        median, q1, q3 = median_iqr(values)
        lines.append(
            f"{name:<{width}}{median * scale:>14.3f}{(q3 - q1) * scale:>12.3f}"
        )
    for numerator, denominator in pairs:
        ratio = paired_ratio(times, numerator, denominator)
        lines.append(
            f"ratio {numerator} / {denominator}: median {ratio['median']:.3f} "
            f"(IQR {ratio['q1']:.3f} to {ratio['q3']:.3f}; ratio of medians "
            f"{ratio['of_medians']:.3f})"
        )
    return lines


def versions():
    """The versions a benchmark's figures depend on."""
    return {
        "keras_sparsity": keras_sparsity.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
