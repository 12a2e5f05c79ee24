"""What needs a fresh process, for one backend: run by
`test_fresh_processes.py` once per installed backend, with KERAS_BACKEND set,
as `python tests/fresh_checks.py FOLDER`.

1. Importing keras_sparsity imports no backend that Keras did not.
2. Every model the test session saved in FOLDER (`*.keras`, with its inputs
   in `<name>.npz`) loads with nothing but `import keras_sparsity`: its
   outputs, losses, `SparseDense` settings and one more training step.
3. On TensorFlow, first of all, the Keras-only reproduction of
   MirroredStrategy's shared loss lists in `docs/backends.md` (its output is
   compared with the page's); on JAX, the page's Keras-only reproduction of
   the losses that eager JAX steps drop or double (its output is checked).
4. The data-parallel regime of this backend that runs in one process, on
   two devices: `MirroredStrategy` on two logical CPUs (TensorFlow; each
   replica penalizes its own share, and `cross_replica=True` is refused),
   `keras.distribution.DataParallel` on two host devices (JAX; the global
   batch). Both against a float32 reference on one device and the float64
   loss of `regimes.py`.

Writes FOLDER/<backend>.json.
"""

import contextlib
import io
import json
import os
import sys

backend = os.environ["KERAS_BACKEND"]
results = {}


def run_page_block(words):
    """Runs the Python block of docs/backends.md whose first line is `# Run
    as a script: <words>...`; returns what it printed and its namespace."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "backends.md")) as f:
        page = f.read()
    start = page.index(f"```python\n# Run as a script: {words}")
    start += len("```python\n")
    printed, namespace = io.StringIO(), {"__name__": "__docs__"}
    with contextlib.redirect_stdout(printed):
        exec(page[start : page.index("```", start)], namespace)
    return printed.getvalue(), namespace


if backend == "tensorflow":
    # First, the page's Keras-only reproduction of MirroredStrategy's shared
    # loss lists: it sets up two logical CPUs before TensorFlow starts,
    # which the checks below use too.
    results["repro"], namespace = run_page_block("MirroredStrategy")
    # Its strategy serves below: two strategies in one process would share
    # the keys of their collective operations.
    strategy = namespace["strategy"]

    import tensorflow as tf

import keras  # noqa: E402

before = set(sys.modules)
import keras_sparsity  # noqa: E402, F401  (registration is all loading needs)

added = {name.split(".")[0] for name in set(sys.modules) - before}
heavy = {"tensorflow", "jax", "torch", "matplotlib"}
results["backend"] = keras.backend.backend()
results["import_added"] = sorted(added & heavy)

import numpy as np  # noqa: E402

import regimes  # noqa: E402

folder = sys.argv[1]


def numbers(values):
    return [float(keras.ops.convert_to_numpy(v)) for v in values]


results["models"] = {}
for name in sorted(os.listdir(folder)):
    if not name.endswith(".keras"):
        continue
    model = keras.saving.load_model(os.path.join(folder, name))
    x = np.load(os.path.join(folder, name[: -len(".keras")] + ".npz"))["x"]
    outputs = keras.ops.convert_to_numpy(model(x))
    losses = numbers(model.losses)
    code = model.get_layer("code")
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.train_on_batch(x, x)
    results["models"][name] = {
        "outputs": outputs.tolist(),
        "losses": losses,
        "settings": [code.rho, code.beta],
        "iterations": iterations,
        "weights": [w.tolist() for w in model.get_weights()],
    }


def fit(model, x):
    history = model.fit(
        x, x, batch_size=regimes.BATCH, shuffle=False, verbose=0
    )
    return {
        "logged": history.history["loss"][0],
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "weights": regimes.get_weights(model),
    }


def per_replica_reference(x, replicas):
    """One float32 device: each SGD step on the mean of the replicas'
    losses, every share with its own penalty, as TensorFlow's loss
    scaling and summed gradients give. The float64 losses at the weights
    before each step, and the final weights."""
    model = regimes.build()
    optimizer = keras.optimizers.SGD(regimes.LEARNING_RATE)
    losses = []
    for batch in regimes.batches(x):
        losses.append(
            regimes.loss(
                regimes.get_weights(model),
                batch,
                replicas=replicas,
                global_penalty=False,
            )
        )
        with tf.GradientTape() as tape:
            total = 0.0
            for share in np.split(batch, replicas):
                predictions = model(share, training=True)
                total += keras.ops.mean((predictions - share) ** 2) + sum(
                    model.losses
                )
            total = total / replicas
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(total, variables), variables)
    return losses, regimes.get_weights(model)


def compare(run, losses, weights):
    return {
        "steps": run["steps"],
        "logged": run["logged"],
        "expected_logged": float(np.mean(losses)),
        "weight_difference": regimes.max_difference(run["weights"], weights),
    }


x = regimes.data()
if backend == "tensorflow":
    losses, weights = per_replica_reference(x, 2)
    with strategy.scope():
        model = regimes.build()
    results["mirrored"] = compare(fit(model, x), losses, weights)
    with strategy.scope():
        model = regimes.build(cross_replica=True)
    try:
        fit(model, x)
        results["mirrored_global_error"] = None
    except ValueError as error:
        results["mirrored_global_error"] = str(error)
elif backend == "jax":
    results["jax_repro"] = run_page_block("KERAS_BACKEND=jax")[0]
    losses, weights = regimes.reference_run(x)
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    results["data_parallel"] = {
        "devices": len(devices),
        **compare(fit(regimes.build(), x), losses, weights),
    }

with open(os.path.join(folder, f"{backend}.json"), "w") as f:
    json.dump(results, f)
