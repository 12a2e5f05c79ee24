"""What the cross-replica mean of the KL penalty costs at 2 replicas.

Times training steps of the seed's 784-200-784 autoencoder (KL(rho=0.01,
beta=3) on both layers, SGD, MSE) with the synchronized penalty
(cross_replica=True: one all-reduce per layer and step, of 201 and 785
floats) and the per-replica one (cross_replica=False), interleaved round by
round; then those two all-reduces alone. Timings need a quiet machine.
Engines, by KERAS_BACKEND (tensorflow by default here):
  tensorflow  MultiWorkerMirroredStrategy in 2 worker processes on
              127.0.0.1 that run train_step as fit does
  torch       DistributedDataParallel in 2 processes on 127.0.0.1 (gloo)
Processes have one compute thread each (a core each on a 2-core machine),
step the models in the same order, and the first prints. MirroredStrategy
(replicas as threads of one process) is not measured: the penalty refuses
cross_replica=True there (see docs/backends.md).
"""

import json
import os
import sys

import common  # first: examples/ on sys.path, no Keras
import runs

EXAMPLE = ".venv/bin/python benchmarks/sync_cost.py --rounds 40 --steps 10"
REPLICAS = 2
BACKENDS = ("tensorflow", "torch")
COUNTS = {
    "--rounds": (40, "interleaved rounds; each model is timed once a round"),
    "--steps": (10, "training steps of each model per round"),
    "--warmup": (5, "untimed steps of each model first"),
    "--batch-size": (256, "global batch, split over the replicas"),
}


def arguments():
    """The command line."""
    arguments = runs.parser(__doc__, EXAMPLE)
    common.add_counts(arguments, COUNTS)
    return arguments


def parse_args(argv):
    """The arguments, checked with KERAS_BACKEND (tensorflow if unset), and
    the environments of the local processes to start (none in one)."""
    command_line = arguments()
    args = command_line.parse_args(argv)
    if args.batch_size % REPLICAS:
        command_line.error(
            f"--batch-size {args.batch_size} does not split into {REPLICAS} "
            "equal shares"
        )
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend not in BACKENDS:
        command_line.error(
            f"no sync-cost measurement for KERAS_BACKEND={backend}; set it "
            f"to one of {list(BACKENDS)}"
        )
    args.processes = []
    if backend == "torch" and "RANK" not in os.environ:
        args.processes = runs.local_torch_group(REPLICAS)
    if backend == "tensorflow" and "TF_CONFIG" not in os.environ:
        args.processes = runs.local_tf_workers(REPLICAS)
    return args


if __name__ == "__main__":
    group = parse_args(sys.argv[1:]).processes  # before Keras starts
    if group:  # a launcher: it starts the processes that measure, no Keras
        runs.run(
            lambda: runs.launch_local_processes(__file__, sys.argv[1:], group)
        )

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
from autoencoder import build_autoencoder  # noqa: E402, I001
import keras  # noqa: E402
import numpy as np  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.processes:
        return runs.launch_local_processes(__file__, argv, args.processes)
    x = np.random.default_rng(0).random((args.batch_size, 784), "float32")
    measure = MEASUREMENTS[os.environ["KERAS_BACKEND"]]
    times, setting, notes = measure(args, x)
    task = json.loads(os.environ.get("TF_CONFIG", '{"task": {}}'))["task"]
    if task.get("index", int(os.environ.get("RANK", 0))) == 0:
        versions = common.versions().items()
        print(", ".join(f"{key} {value}" for key, value in versions))
        print(
            f"{setting}, global batch {args.batch_size}, {args.rounds} "
            f"interleaved rounds of {args.steps} steps"
        )
        pairs = [("synchronized", "per_replica")]
        print("\n".join(common.timing_lines(times, pairs) + notes))
    return 0


def _timed(args, steps, all_reduce, between):
    """Interleaved times of the two models' `steps`, and lines that show the
    penalty's all-reduces (one per layer: 201 and 785 floats) alone, each
    made by `all_reduce(floats)`."""
    rounds = {"rounds": args.rounds, "calls": args.steps, "warmup": args.warmup}
    times = common.interleave(steps, **rounds)
    sizes = {f"all_reduce of {n} floats": all_reduce(n) for n in (201, 785)}
    notes = [f"the penalty's all-reduces alone, between the {between}:"]
    bare = common.timing_lines(common.interleave(sizes, **rounds), [])
    return times, notes + bare[1:]


def penalized_autoencoders(kl=common.config("kl", 3.0, rho=0.01)):
    """The two models to time: the synchronized penalty and the per-replica
    one, on both layers."""
    keras.utils.set_random_seed(0)
    synchronized = {"synchronized": True, "per_replica": False}
    return {
        name: build_autoencoder(kl, "both", "sgd", cross_replica=value)
        for name, value in synchronized.items()
    }


def measure_tensorflow(args, x):
    """Step times of one worker of `MultiWorkerMirroredStrategy` (TF_CONFIG
    is set), with one compute thread. Keras 3.15's `fit` cannot start under
    this strategy: each step runs `train_step` as `fit` would."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    share = len(x) // REPLICAS
    mine = tf.constant(x[index * share : (index + 1) * share])
    batch = strategy.experimental_distribute_values_from_function(
        lambda context: (mine, mine)
    )
    steps = {}
    with strategy.scope():
        for name, model in penalized_autoencoders().items():
            model.optimizer.build(model.trainable_variables)
            steps[name] = _strategy_step(strategy, model, batch)
    times, notes = _timed(
        args, steps, lambda n: _all_reduce(strategy, tf.ones(n)), "workers"
    )
    setting = (
        f"tensorflow {tf.__version__}: MultiWorkerMirroredStrategy, "
        f"{strategy.num_replicas_in_sync} worker processes (one compute "
        "thread each)"
    )
    return times, setting, notes


def _strategy_step(strategy, model, batch):
    import tensorflow as tf

    return tf.function(lambda: strategy.run(model.train_step, args=(batch,)))


def _all_reduce(strategy, value):
    """The all-reduce the penalty does, alone, in a replica context."""
    import tensorflow as tf

    def replica_sum():
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    return tf.function(lambda: strategy.run(replica_sum))


def measure_torch(args, x):
    """Step times of one process of a DDP group (RANK etc. are set)."""
    import gc

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # one core per replica
    dist.init_process_group("gloo")
    try:
        rank, size = dist.get_rank(), dist.get_world_size()
        share = len(x) // size
        inputs = torch.as_tensor(x[rank * share : (rank + 1) * share])
        steps = {
            name: _ddp_step(model, inputs)
            for name, model in penalized_autoencoders().items()
        }
        times, notes = _timed(
            args,
            steps,
            lambda n: lambda: dist.all_reduce(torch.ones(n)),
            "processes",
        )
        # A gloo group whose last reference is a DDP wrapper freed after
        # `destroy_process_group` can deadlock on the GIL as it is destroyed
        # (torch 2.13: its worker thread decrefs a tensor while the main
        # thread, holding the GIL, joins it). Freed first, once a barrier
        # has drained the group's work, the wrappers leave the group to
        # `destroy_process_group`.
        steps.clear()
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    setting = (
        f"torch {torch.__version__}: DistributedDataParallel, {size} "
        "processes (gloo, one CPU thread each)"
    )
    return times, setting, notes


def _ddp_step(model, inputs):
    """One SGD step of `model` under DDP, the way examples/torch_ddp.py does."""
    import torch

    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)

    def step():
        outputs = ddp(inputs)
        loss = torch.mean((outputs - inputs) ** 2) + sum(model.losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# One function per backend: (args, batch) -> (times, setting, notes).
MEASUREMENTS = {"tensorflow": measure_tensorflow, "torch": measure_torch}


if __name__ == "__main__":
    runs.run(main)
