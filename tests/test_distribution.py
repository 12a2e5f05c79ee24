"""Data-parallel training equals one device with the same global batch.

Each scenario runs in fresh processes, since devices must be set up before
the backend starts: two logical CPUs for `tf.distribute.MirroredStrategy`,
two host devices for JAX's `keras.distribution.DataParallel`, two worker
processes on 127.0.0.1 for `MultiWorkerMirroredStrategy`, and two processes
in a gloo process group on 127.0.0.1 for PyTorch DDP. Each scenario runs in
the test session of its own backend only, so that running the suite once
per backend runs each scenario once.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import runs
from conftest import ROOT

pytestmark = pytest.mark.slow
BACKEND = keras.backend.backend()


def only_on(backend):
    return pytest.mark.skipif(
        BACKEND != backend, reason=f"runs in the {backend} session"
    )


# Shared by every scenario: the model, the data and one training step.
COMMON = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    def build(keras, cross_replica=True):
        from keras_sparsity import KLSparsityRegularizer, SparseDense
        keras.utils.set_random_seed(1)
        inputs = keras.Input((20,))
        code = keras.layers.Dense(
            8, activation="sigmoid",
            activity_regularizer=KLSparsityRegularizer(
                0.05, 3.0, cross_replica=cross_replica),
        )(inputs)
        code = SparseDense(6, rho=0.1, beta=2.0,
                           cross_replica=cross_replica)(code)
        outputs = keras.layers.Dense(20, activation="sigmoid")(code)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        return model

    def data():
        x = np.random.default_rng(0).random((16, 20)).astype("float32")
        x[:8] *= 0.1  # the replicas' halves differ: local KLs differ
        return x

    def step(model, x):
        model.fit(x, x, batch_size=len(x), epochs=1, shuffle=False,
                  verbose=0)
        return [np.asarray(w) for w in model.get_weights()]

    def max_diff(a, b):
        return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))
    """
)

MIRRORED = COMMON + textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    x = data()
    reference = step(build(keras), x)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    for cross_replica in (True, False):
        with strategy.scope():
            model = build(keras, cross_replica)
        result[str(cross_replica)] = max_diff(step(model, x), reference)
    print("RESULT " + json.dumps(result))
    """
)

JAX_DATA_PARALLEL = COMMON + textwrap.dedent(
    """
    import keras
    x = data()
    reference = step(build(keras), x)
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices))
    distributed = step(build(keras), x)
    print("RESULT " + json.dumps(
        {"devices": len(devices), "True": max_diff(distributed, reference)}))
    """
)

WORKER = (
    COMMON
    + """
import tensorflow as tf
import keras
strategy = tf.distribute.MultiWorkerMirroredStrategy()
x = data()
with strategy.scope():
    model = build(keras)
    model.optimizer.build(model.trainable_variables)
# Keras 3.15's fit() cannot start under MultiWorkerMirroredStrategy (its
# symbolic build reduces a PerReplica batch eagerly), so run the very
# train_step that fit() runs, with strategy.run.
options = tf.data.Options()
policy = tf.data.experimental.AutoShardPolicy.DATA
options.experimental_distribute.auto_shard_policy = policy
dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(len(x))
dataset = dataset.with_options(options)
@tf.function
def train(batch):
    strategy.run(model.train_step, args=(batch,))
for batch in strategy.experimental_distribute_dataset(dataset):
    train(batch)
weights = [np.asarray(w) for w in model.get_weights()]
if json.loads(__import__("os").environ["TF_CONFIG"])["task"]["index"] == 0:
    np.savez(sys.argv[1], *weights)
"""
)

REFERENCE = COMMON + textwrap.dedent(
    """
    import keras
    np.savez(sys.argv[1], *step(build(keras), data()))
    """
)


def run_python(code, env, *args, timeout=300):
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def parse_result(stdout):
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@only_on("tensorflow")
def test_mirrored_strategy_matches_one_device(subprocess_env):
    env = {**subprocess_env, "KERAS_BACKEND": "tensorflow"}
    result = parse_result(run_python(MIRRORED, env))
    assert result["replicas"] == 2
    assert result["True"] < 1e-5
    # The per-replica penalty is a different objective, as documented.
    assert result["False"] > 1e-3


@only_on("jax")
def test_jax_data_parallel_matches_one_device(subprocess_env):
    env = {
        **subprocess_env,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    result = parse_result(run_python(JAX_DATA_PARALLEL, env))
    assert result["devices"] == 2
    assert result["True"] < 1e-5


def run_processes(commands, tmp_path, timeout=300):
    """Runs `(argv, env)` processes together; stops them all in any case.

    Each writes to a file, not a pipe: a process whose pipe nobody reads
    blocks once it has written 64 KiB, and with it the collective the others
    wait in.
    """
    processes, logs = [], []
    try:
        for index, (argv, env) in enumerate(commands):
            logs.append(open(tmp_path / f"process-{index}.log", "w+"))
            processes.append(
                subprocess.Popen(
                    argv, env=env, stdout=logs[-1], stderr=subprocess.STDOUT
                )
            )
        for process in processes:
            process.wait(timeout=timeout)
        for process, log in zip(processes, logs):
            log.seek(0)
            assert process.returncode == 0, log.read()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


@only_on("tensorflow")
def test_multi_worker_mirrored_strategy_matches_one_device(
    tmp_path, subprocess_env
):
    env = {**subprocess_env, "KERAS_BACKEND": "tensorflow"}
    run_python(REFERENCE, env, str(tmp_path / "reference.npz"))
    script = [sys.executable, "-c", WORKER, str(tmp_path / "distributed.npz")]
    run_processes(
        [(script, {**env, **worker}) for worker in runs.local_tf_workers(2)],
        tmp_path,
    )
    reference = np.load(tmp_path / "reference.npz")
    distributed = np.load(tmp_path / "distributed.npz")
    assert len(reference.files) == len(distributed.files) == 6
    for key in reference.files:
        np.testing.assert_allclose(
            distributed[key], reference[key], atol=1e-5, rtol=0
        )


@only_on("tensorflow")
def test_multi_worker_example_runs(subprocess_env):
    env = {**subprocess_env, "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_CONFIG", None)
    completed = subprocess.run(
        [
            sys.executable,
            f"{ROOT}/examples/multi_worker.py",
            "--steps",
            "3",
            "--global-batch",
            "32",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "step 3/3: loss" in completed.stdout
    assert "2 replicas; mean code activation" in completed.stdout


TORCH_DDP = COMMON + textwrap.dedent(
    """
    import os
    import keras
    import torch
    import torch.distributed as dist

    def torch_step(model, module, x):
        # One SGD step as keras.io's DDP guide trains a Keras model: a
        # PyTorch loop, with the layers' losses added to the data loss.
        optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
        inputs = torch.as_tensor(x)
        outputs = module(inputs)
        loss = torch.mean((outputs - inputs) ** 2) + sum(model.losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return [keras.ops.convert_to_numpy(w.value) for w in model.weights]

    x = data()
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
        rank, size = dist.get_rank(), dist.get_world_size()
        x = x[rank * len(x) // size : (rank + 1) * len(x) // size]
    for cross_replica in (True, False):
        model = build(keras, cross_replica)
        module = torch.nn.parallel.DistributedDataParallel(model) if (
            distributed) else model
        weights = torch_step(model, module, x)
        if not distributed or rank == 0:
            np.savez(f"{sys.argv[1]}-{cross_replica}.npz", *weights)
            # One process alone predicts: no all-reduce may wait for the
            # others (a pass without gradients penalizes its own batch).
            model.predict(x, verbose=0)
    if distributed:
        # DDP freed first, then the group, once idle: a gloo group whose
        # last reference is a DDP wrapper can deadlock as it is destroyed.
        import gc

        del module
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    """
)


@only_on("torch")
def test_torch_ddp_matches_one_process(tmp_path, subprocess_env):
    env = {**subprocess_env, "KERAS_BACKEND": "torch"}
    script = [sys.executable, "-c", TORCH_DDP]
    run_processes([(script + [str(tmp_path / "one")], env)], tmp_path)
    run_processes(
        [
            (script + [str(tmp_path / "ddp")], {**env, **process})
            for process in runs.local_torch_group(2)
        ],
        tmp_path,
    )
    difference = {}
    for cross_replica in (True, False):
        one = np.load(tmp_path / f"one-{cross_replica}.npz")
        ddp = np.load(tmp_path / f"ddp-{cross_replica}.npz")
        assert len(one.files) == len(ddp.files) == 6
        difference[cross_replica] = max(
            float(np.max(np.abs(one[key] - ddp[key]))) for key in one.files
        )
    assert difference[True] < 1e-5
    # Each process penalizes its own half: a different objective.
    assert difference[False] > 1e-3


@only_on("torch")
def test_torch_ddp_example_runs(subprocess_env):
    env = {**subprocess_env, "KERAS_BACKEND": "torch"}
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "torch_ddp.py"),
            "--synthetic",
            "--steps",
            "3",
            "--batch-size",
            "32",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 processes" in completed.stdout
    assert "weights agree across processes" in completed.stdout
