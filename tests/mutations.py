"""Deliberate mistakes that the unit tests must catch (run by hand).

    .venv/bin/python tests/mutations.py             # every mistake
    .venv/bin/python tests/mutations.py gradient    # those whose name has it

For each mistake, copies the repository to a temporary folder, makes the
mistake there (a one-line change to the library), runs that module's own
unit tests on the copy and reports whether they went red, with the first
failing test. A mistake that leaves its tests green is a gap in the suite;
the script exits with status 1 if there is one. Not part of the default
suite: each mistake costs a run of a test file.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file, original text, mistaken text, test file that must fail)
MISTAKES = [
    (
        "penalty gradient cut (value unchanged)",
        "keras_sparsity/_kl.py",
        "    return value, slope * (weight * (replicas / width) / count)",
        "    return value, 0.0 * slope",
        "tests/test_regularizers.py",
    ),
    (
        "replica count dropped from the slope",
        "keras_sparsity/_kl.py",
        "    return value, slope * (weight * (replicas / width) / count)",
        "    return value, slope * (weight * (1 / width) / count)",
        "tests/test_regularizers.py",
    ),
    (
        "rho_hat as one scalar over the whole matrix",
        "keras_sparsity/_kl.py",
        "    rho_hat = sums / count\n",
        "    rho_hat = ops.mean(sums) / count + 0.0 * sums\n",
        "tests/test_regularizers.py",
    ),
    (
        "__call__ without the batch-size compensation",
        "keras_sparsity/regularizers.py",
        "        return self._penalty(x, scale=batch)",
        "        return self._penalty(x)",
        "tests/test_regularizers.py",
    ),
    (
        "SparseDense's loss added with its gradient cut",
        "keras_sparsity/layers.py",
        "        self.add_loss("
        "self.sparsity_regularizer.penalty(outputs, mask=mask))",
        "        self.add_loss(keras.ops.stop_gradient(\n"
        "            self.sparsity_regularizer.penalty(outputs, mask=mask)))",
        "tests/test_layers.py",
    ),
    (
        "SparseDense's beta a float (a compiled step keeps it)",
        "keras_sparsity/layers.py",
        "        regularizer._rho, regularizer._beta = self.rho, self.beta",
        "        self.built = True",
        "tests/test_regimes.py",
    ),
    (
        "BetaWarmup setting the full beta at once",
        "keras_sparsity/callbacks.py",
        "            layer.beta = beta * fraction",
        "            layer.beta = beta",
        "tests/test_callbacks.py",
    ),
    (
        "SparsityMonitor ignoring active_threshold",
        "keras_sparsity/callbacks.py",
        "                    active_threshold=self.active_threshold,",
        "                    active_threshold=ACTIVE_THRESHOLD,",
        "tests/test_callbacks.py",
    ),
    (
        "SparsityMonitor ignoring the layer's mask",
        "keras_sparsity/callbacks.py",
        "                    mask=mask,",
        "                    mask=None,",
        "tests/test_callbacks.py",
    ),
    (
        "gradient clipped where the value is (dead units stay dead)",
        "keras_sparsity/_kl.py",
        "    return kl, over_rest - ops.minimum(over_q, cap)",
        '    return kl, (over_rest - over_q) * ops.cast(q > 1e-7, "float32")',
        "tests/test_regularizers.py",
    ),
    (
        "gradient without its floor (infinite for a silent unit)",
        "keras_sparsity/_kl.py",
        "    return kl, over_rest - ops.minimum(over_q, cap)",
        "    return kl, over_rest - over_q",
        "tests/test_regularizers.py",
    ),
    (
        "float16 gradient not saturated (inf for a silent unit)",
        "keras_sparsity/_kl.py",
        "        gradient = ops.clip(gradient, -FLOAT16_MAX, FLOAT16_MAX)",
        "        gradient = gradient",
        "tests/test_regularizers.py",
    ),
    (
        "infinite activations clipped to a finite penalty",
        "keras_sparsity/_kl.py",
        "        ops.isfinite(rho_hat),",
        "        ops.logical_not(ops.isnan(rho_hat)),",
        "tests/test_regularizers.py",
    ),
    (
        "plain float32 sum on TensorFlow",
        "keras_sparsity/_kl.py",
        "        return ops.sum(ops.transpose(flat), axis=1)",
        "        return ops.sum(flat, axis=0)",
        "tests/test_regularizers.py",
    ),
    (
        "axis=True accepted",
        "keras_sparsity/_checks.py",
        "    if isinstance(value, bool) or not isinstance(value, "
        'numbers.Integral):\n        raise invalid_type("axis"',
        "    if not isinstance(value, numbers.Integral):\n"
        '        raise invalid_type("axis"',
        "tests/test_regularizers.py",
    ),
    (
        "statistics ignoring the regularizer's axis",
        "keras_sparsity/statistics.py",
        "        axis = -1 if regularizer is None else regularizer.axis",
        "        axis = -1",
        "tests/test_statistics.py",
    ),
    (
        "active at the threshold (>= instead of >)",
        "keras_sparsity/statistics.py",
        "    active = a > active_threshold",
        "    active = a >= active_threshold",
        "tests/test_statistics.py",
    ),
    (
        "statistics' KL without the clip (inf for a silent unit)",
        "keras_sparsity/statistics.py",
        "    q = np.clip(rates, RHO_HAT_MIN, RHO_HAT_MAX)",
        "    q = rates",
        "tests/test_statistics.py",
    ),
    (
        "statistics accepting activations outside the range",
        "keras_sparsity/statistics.py",
        "    if outside:",
        "    if False:",
        "tests/test_statistics.py",
    ),
]


def ignore(folder, names):
    return [n for n in names if n in (".venv", ".git", "runs", "site")]


def try_mistake(name, path, original, mistaken, test_file):
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "repository")
        shutil.copytree(ROOT, copy, ignore=ignore)
        with open(os.path.join(copy, path)) as f:
            source = f.read()
        if source.count(original) != 1:
            return "NOT APPLIED (the original line is not there once)"
        with open(os.path.join(copy, path), "w") as f:
            f.write(source.replace(original, mistaken))
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "-m",
                "not slow",
                test_file,
            ],
            cwd=copy,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": copy},
        )
        failed = [
            line.split(" ")[1]
            for line in completed.stdout.splitlines()
            if line.startswith("FAILED ")
        ]
        if completed.returncode == 0:
            return "GREEN: the tests did not notice"
        return "red: " + (failed[0] if failed else "collection error")


def main(argv=None):
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument(
        "only", nargs="?", default="", help="run the mistakes whose name has it"
    )
    args = arguments.parse_args(argv)
    gaps = 0
    for name, path, original, mistaken, test_file in MISTAKES:
        if args.only not in name:
            continue
        result = try_mistake(name, path, original, mistaken, test_file)
        gaps += not result.startswith("red")
        print(f"{name}: {result}", flush=True)
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
