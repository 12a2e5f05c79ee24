"""What the cross-replica mean of the KL penalty costs at 2 replicas.

Times training steps of the seed's 784-200-784 autoencoder (KL(rho=0.01,
beta=3) on both layers, SGD, MSE) with the synchronized penalty
(cross_replica=True, the default: one extra all-reduce per layer and step,
of 201 and 785 floats) and with the per-replica penalty
(cross_replica=False), interleaved round by round. Prints the median step
times and the cost of synchronization as a share of a step.

Backends (the one Keras runs on; KERAS_BACKEND defaults to tensorflow
here):
  tensorflow  tf.distribute.MirroredStrategy on two logical CPU devices of
              one process (the replicas share the process's CPU threads);
              with --tf-strategy multi_worker, MultiWorkerMirroredStrategy:
              the script starts 2 worker processes on 127.0.0.1, one
              compute thread each, so each replica has a core of its own on
              a 2-core machine, and both step the models in the same
              interleaved order through the train_step that fit runs
  torch       torch.nn.parallel.DistributedDataParallel: the script starts
              2 processes on 127.0.0.1 (gloo), one CPU thread each, so each
              replica has a core of its own on a 2-core machine; each steps
              both models in the same interleaved order and the first prints;
              it also times the penalty's all-reduces alone (201 and 785
              floats), to show where the time goes

Timings need a quiet machine.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import common  # noqa: E402, F401, I001  (first: examples/ on sys.path, then quiet)

import json  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
    build_autoencoder,
    config,
    interleave,
    timing_lines,
    versions,
)
from runs import (  # noqa: E402
    RunError,
    launch_local_processes,
    local_tf_workers,
    local_torch_group,
    parser,
    positive_int,
    run,
)

EXAMPLE = ".venv/bin/python benchmarks/sync_cost.py --rounds 40 --steps 10"
REPLICAS = 2


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    arguments.add_argument(
        "--rounds",
        type=positive_int,
        default=40,
        help="interleaved rounds; each model is timed once per round "
        "(default: 40)",
    )
    arguments.add_argument(
        "--steps",
        type=positive_int,
        default=10,
        help="training steps of each model per round (default: 10)",
    )
    arguments.add_argument(
        "--warmup",
        type=positive_int,
        default=5,
        help="untimed steps of each model first (default: 5)",
    )
    arguments.add_argument(
        "--tf-strategy",
        choices=["mirrored", "multi_worker"],
        default="mirrored",
        help="TensorFlow's engine: two logical CPU devices of one process, or "
        "two local worker processes of one compute thread each "
        "(default: mirrored)",
    )
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="global batch, split over the replicas (default: 256)",
    )
    return arguments


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = arguments().parse_args(argv)
    backend = keras.backend.backend()
    if backend not in MEASUREMENTS:
        raise RunError(
            f"no sync-cost measurement for the {backend} backend; set "
            f"KERAS_BACKEND to one of {sorted(MEASUREMENTS)}"
        )
    if args.tf_strategy != "mirrored" and backend != "tensorflow":
        raise RunError(
            f"--tf-strategy {args.tf_strategy} is TensorFlow's; with the "
            f"{backend} backend, set KERAS_BACKEND=tensorflow or drop it"
        )
    if args.batch_size % REPLICAS:
        raise RunError(
            f"--batch-size {args.batch_size} does not split into {REPLICAS} "
            "equal shares"
        )
    if backend == "torch" and "RANK" not in os.environ:
        return launch_local_processes(
            __file__, argv, local_torch_group(REPLICAS)
        )
    multi_worker = backend == "tensorflow" and args.tf_strategy != "mirrored"
    if multi_worker and "TF_CONFIG" not in os.environ:
        return launch_local_processes(
            __file__, argv, local_tf_workers(REPLICAS)
        )
    x = np.random.default_rng(0).random((args.batch_size, 784), "float32")
    measure = measure_multi_worker if multi_worker else MEASUREMENTS[backend]
    times, setting, notes = measure(args, x)
    if not _first_process():
        return 0
    print(", ".join(f"{key} {value}" for key, value in versions().items()))
    print(
        f"{setting}, global batch {args.batch_size}, {args.rounds} "
        f"interleaved rounds of {args.steps} steps"
    )
    print("\n".join(timing_lines(times, [("synchronized", "per_replica")])))
    if notes:
        print("\n".join(notes))
    return 0


def _penalized_autoencoder(cross_replica):
    model = build_autoencoder(config("kl", 3.0, rho=0.01), "both", "sgd")
    for name in ("code", "reconstruction"):
        model.get_layer(name).activity_regularizer.cross_replica = cross_replica
    return model


def _logical_cpus(count):
    """Splits the CPU into `count` logical devices, before TF starts."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise RunError(
                f"cannot split the CPU into {count} devices now that "
                f"TensorFlow has started ({error}); run the script in a "
                "fresh process"
            ) from error
    return [f"/cpu:{i}" for i in range(count)]


def measure_tensorflow(args, x):
    """Step times under `tf.distribute.MirroredStrategy` on logical CPUs."""
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(_logical_cpus(REPLICAS))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        models = {
            "synchronized": _penalized_autoencoder(True),
            "per_replica": _penalized_autoencoder(False),
        }
    times = interleave(
        {name: _step(model, x) for name, model in models.items()},
        rounds=args.rounds,
        calls=args.steps,
        warmup=args.warmup,
    )
    notes = _bare_all_reduces(
        lambda n: _strategy_all_reduce(strategy, tf.ones(n)), args, "replicas"
    )
    setting = (
        f"tensorflow {tf.__version__}: MirroredStrategy, "
        f"{strategy.num_replicas_in_sync} replicas on logical CPU devices"
    )
    return times, setting, notes


def measure_multi_worker(args, x):
    """Step times of one worker of `MultiWorkerMirroredStrategy` (TF_CONFIG
    is set), with one compute thread."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    share = len(x) // REPLICAS
    mine = tf.constant(x[index * share : (index + 1) * share])
    batch = strategy.experimental_distribute_values_from_function(
        lambda context: (mine, mine)
    )
    keras.utils.set_random_seed(0)
    steps = {}
    with strategy.scope():
        for name, flag in (("synchronized", True), ("per_replica", False)):
            model = _penalized_autoencoder(flag)
            model.optimizer.build(model.trainable_variables)
            steps[name] = _strategy_step(strategy, model, batch)
    times = interleave(
        steps, rounds=args.rounds, calls=args.steps, warmup=args.warmup
    )
    notes = _bare_all_reduces(
        lambda n: _strategy_all_reduce(strategy, tf.ones(n)), args, "workers"
    )
    setting = (
        f"tensorflow {tf.__version__}: MultiWorkerMirroredStrategy, "
        f"{strategy.num_replicas_in_sync} worker processes (one compute "
        "thread each)"
    )
    return times, setting, notes


def _strategy_step(strategy, model, batch):
    """One training step of `model` on `batch`, as `fit` runs it (Keras
    3.15's `fit` cannot start under `MultiWorkerMirroredStrategy`)."""
    import tensorflow as tf

    @tf.function
    def step():
        strategy.run(model.train_step, args=(batch,))

    return step


def _strategy_all_reduce(strategy, value):
    """The all-reduce the penalty does, alone, in a replica context."""
    import tensorflow as tf

    def replica_sum():
        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    return tf.function(lambda: strategy.run(replica_sum))


def _first_process():
    """Whether this is the process that prints: the only one, rank 0 of a
    torch group or the chief of a TF cluster."""
    if "TF_CONFIG" in os.environ:
        return json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0
    return os.environ.get("RANK", "0") == "0"


def measure_torch(args, x):
    """Step times of one process of a DDP group (RANK etc. are set)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # one core per replica
    dist.init_process_group("gloo")
    try:
        rank, size = dist.get_rank(), dist.get_world_size()
        share = len(x) // size
        inputs = torch.as_tensor(x[rank * share : (rank + 1) * share])
        keras.utils.set_random_seed(0)
        steps = {
            name: _ddp_step(_penalized_autoencoder(flag), inputs)
            for name, flag in (("synchronized", True), ("per_replica", False))
        }
        times = interleave(
            steps, rounds=args.rounds, calls=args.steps, warmup=args.warmup
        )
        notes = _bare_all_reduces(
            lambda n: _all_reduce(torch.ones(n)), args, "processes"
        )
        _release_ddp(steps, dist)
    finally:
        dist.destroy_process_group()
    setting = (
        f"torch {torch.__version__}: DistributedDataParallel, {size} "
        "processes (gloo, one CPU thread each)"
    )
    return times, setting, notes


def _bare_all_reduces(make, args, between):
    """Where the time goes: the penalty adds one all-reduce per layer to the
    forward pass (201 and 785 floats here). Times them bare, each made by
    `make(floats)`, and returns the lines that show them."""
    bare = interleave(
        {f"all_reduce of {n} floats": make(n) for n in (201, 785)},
        rounds=args.rounds,
        calls=args.steps,
        warmup=args.warmup,
    )
    notes = [f"the penalty's all-reduces alone, between the {between}:"]
    return notes + timing_lines(bare, [])[1:]


def _release_ddp(wrappers, dist):
    """Drops DDP wrappers while their process group is alive and idle.

    A gloo group whose last reference is a DDP wrapper freed after
    `destroy_process_group` can deadlock on the GIL as it is destroyed
    (torch 2.13: its worker thread decrefs a tensor while the main thread,
    holding the GIL, joins it). Freed first, the wrappers leave the group
    to `destroy_process_group`, once a barrier has drained its work.
    """
    import gc

    wrappers.clear()
    gc.collect()
    dist.barrier()


def _all_reduce(value):
    import torch.distributed as dist

    return lambda: dist.all_reduce(value.clone())


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


def _step(model, x):
    return lambda: model.train_on_batch(x, x)


# One function per backend: (args, batch) -> (times, setting).
MEASUREMENTS = {"tensorflow": measure_tensorflow, "torch": measure_torch}


if __name__ == "__main__":
    run(main)
