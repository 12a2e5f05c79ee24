"""Data-parallel training over several processes equals one device with the
same global batch.

Two worker processes on 127.0.0.1 for `MultiWorkerMirroredStrategy`, two
processes in a gloo process group for PyTorch DDP, each trained on the
model of `regimes.py` (a dead and a saturated code unit, an L1 activity
regularizer upstream, an L2 kernel regularizer). Each runs in the test
session of its own backend only. The regimes that run in one process
(`MirroredStrategy`, JAX `DataParallel`) are in `test_fresh_processes.py`.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import regimes
import runs
from conftest import ROOT

pytestmark = pytest.mark.slow
BACKEND = keras.backend.backend()


def only_on(backend):
    return pytest.mark.skipif(
        BACKEND != backend, reason=f"runs in the {backend} session"
    )


@pytest.fixture
def env():
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": BACKEND,
    }


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


def check_against_one_device(saved):
    """Steps applied, the loss each process computed (their mean per step,
    against the float64 loss of the global batch at the weights of one
    float32 device) and the final weights (against that device's).

    On Keras >= 3.14, which divides an activity-regularizer loss by the
    batch size, the mean over the replicas of their L1 losses is the L1 loss
    of the global batch."""
    x = regimes.data()
    expected_losses, expected_weights = regimes.reference_run(x)
    assert int(saved["steps"]) == regimes.STEPS
    np.testing.assert_allclose(
        saved["losses"].mean(axis=0), expected_losses, rtol=1e-5
    )
    weights = {
        name: (saved[f"{name}_kernel"], saved[f"{name}_bias"])
        for name in ("hidden", "code", "out")
    }
    assert regimes.max_difference(weights, expected_weights) < 1e-5
    return weights


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    import keras
    import regimes

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rank = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    with strategy.scope():
        model = regimes.build()
        model.optimizer.build(model.trainable_variables)
    # Keras 3.15's fit() cannot start under MultiWorkerMirroredStrategy
    # (its symbolic build reduces a PerReplica batch eagerly), so run the
    # very train_step that fit() runs, with strategy.run; the strategy
    # gives each worker its half of every batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    x = regimes.data()
    dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(regimes.BATCH)
    dataset = strategy.experimental_distribute_dataset(
        dataset.with_options(options))

    @tf.function
    def train(batch):
        return strategy.run(model.train_step, args=(batch,))["loss"]

    losses = []
    for batch in dataset:
        model.reset_metrics()  # each step's own loss, not a running mean
        losses.append(float(strategy.reduce("MEAN", train(batch), None)))
    if rank == 0:
        np.savez(
            sys.argv[1],
            losses=[losses],
            steps=int(model.optimizer.iterations.numpy()),
            **{f"{name}_{part}": value
               for name, weights in regimes.get_weights(model).items()
               for part, value in zip(("kernel", "bias"), weights)},
        )
    """
)


@only_on("tensorflow")
def test_multi_worker_mirrored_strategy_matches_one_device(tmp_path, env):
    # One replica per worker: the penalty of the global batch. The loss
    # logged is the mean over the replicas.
    script = [sys.executable, "-c", WORKER, str(tmp_path / "workers.npz")]
    run_processes(
        [(script, {**env, **worker}) for worker in runs.local_tf_workers(2)],
        tmp_path,
    )
    check_against_one_device(np.load(tmp_path / "workers.npz"))


@only_on("tensorflow")
def test_multi_worker_example_runs(env):
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


TORCH_DDP = textwrap.dedent(
    """
    import os, sys
    import keras
    import numpy as np
    import torch
    import torch.distributed as dist
    import regimes

    # A PyTorch loop around DistributedDataParallel, as keras.io's guide
    # trains a Keras model, each process on its half of every batch: the
    # loss is the data loss plus the layers' losses.
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cross_replica = sys.argv[2] == "global"
    model = regimes.build(cross_replica=None if cross_replica else False)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=regimes.LEARNING_RATE)
    losses = []
    for batch in regimes.batches(regimes.data()):
        half = torch.as_tensor(np.split(batch, 2)[rank])
        loss = torch.mean((ddp(half) - half) ** 2) + sum(model.losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    if rank == 0:
        # One process alone predicts: no all-reduce may wait for the other
        # (a pass without gradients penalizes its own batch).
        model.predict(regimes.data(), verbose=0)
    gathered = [None, None]
    dist.all_gather_object(gathered, losses)
    if rank == 0:
        np.savez(
            sys.argv[1],
            losses=np.array(gathered),
            steps=regimes.STEPS,
            **{f"{name}_{part}": value
               for name, weights in regimes.get_weights(model).items()
               for part, value in zip(("kernel", "bias"), weights)},
        )
    # DDP freed first, then the group, once idle: a gloo group whose last
    # reference is a DDP wrapper can deadlock as it is destroyed.
    import gc

    del ddp
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    """
)


@only_on("torch")
def test_torch_ddp_matches_one_process(tmp_path, env):
    for penalty in ("global", "own"):
        run_processes(
            [
                (
                    [sys.executable, "-c", TORCH_DDP]
                    + [str(tmp_path / f"{penalty}.npz"), penalty],
                    {**env, **process},
                )
                for process in runs.local_torch_group(2)
            ],
            tmp_path,
        )
    weights = check_against_one_device(np.load(tmp_path / "global.npz"))
    # Each process penalizing its own half is another objective: its
    # weights are off by ten times the tolerance of the match above.
    own = np.load(tmp_path / "own.npz")
    difference = max(
        float(np.max(np.abs(own[f"{name}_kernel"] - weights[name][0])))
        for name in weights
    )
    assert difference > 1e-4


@only_on("torch")
def test_torch_ddp_example_runs(env):
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
