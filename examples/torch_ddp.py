"""The seed autoencoder trained by PyTorch DDP with a global-batch KL penalty.

Without RANK in the environment, the script starts --processes copies of
itself on 127.0.0.1 (a gloo process group), waits for them and prints the
first one's output. With RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set
(as torchrun sets them), it is one process of the group:

  .venv/bin/torchrun --nproc-per-node 2 examples/torch_ddp.py

Each process trains the 784-200-784 sparse autoencoder of the main example
(its default recipe: KL rho=0.05 beta=0.02 on the code) on its share of every
global batch, in a PyTorch training loop around
torch.nn.parallel.DistributedDataParallel, as keras.io's guide to
distributed training with PyTorch does. The penalty's rho_hat is the mean
over the global batch, across all processes (cross_replica=True, the
default): every process adds the same penalty, and DDP's averaged gradients
are those of one process with the whole batch.
"""

import importlib.util
import os
import sys

from data import DATASETS, describe, load_dataset
from runs import (
    RunError,
    launch_local_processes,
    local_torch_group,
    parser,
    positive_int,
    run,
)

NO_TORCH = (
    "torch_ddp.py needs PyTorch, which is not installed; for the CPU build: "
    "pip install torch==2.13.0 --index-url "
    "https://download.pytorch.org/whl/cpu"
)


def parse_args(argv):
    arguments = parser(
        __doc__,
        ".venv/bin/python examples/torch_ddp.py --dataset fashion_mnist",
    )
    arguments.add_argument(
        "--dataset",
        choices=DATASETS,
        default="fashion_mnist",
        help=f"data set (default: fashion_mnist); {describe('mnist_5k')}",
    )
    arguments.add_argument(
        "--data-dir",
        help="a folder of the four IDX files or a .npz with x_train, x_test",
    )
    arguments.add_argument(
        "--synthetic",
        action="store_true",
        help="random images instead of a data set (a quick check)",
    )
    arguments.add_argument(
        "--processes",
        type=positive_int,
        default=2,
        help="local processes to start when RANK is not set (default: 2)",
    )
    arguments.add_argument(
        "--epochs", type=positive_int, default=1, help="default: 1"
    )
    arguments.add_argument(
        "--steps",
        type=positive_int,
        help="stop each epoch after this many steps (default: all)",
    )
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="global batch, split equally between the processes (default: 256)",
    )
    arguments.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    return arguments.parse_args(argv)


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # --help and bad flags answer before Keras loads
    if importlib.util.find_spec("torch") is None:
        print(f"error: {NO_TORCH}", file=sys.stderr)
        sys.exit(2)
    # DistributedDataParallel is PyTorch's.
    os.environ.setdefault("KERAS_BACKEND", "torch")

import quiet  # noqa: E402, F401, I001  (before Keras: no TensorFlow noise)

import gc  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_sparsity import sparsity_statistics  # noqa: E402
from mnist_sparse_autoencoder import RECIPES, build_model  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "RANK" not in os.environ:
        return launch_local_processes(
            __file__, argv, local_torch_group(args.processes)
        )
    if keras.backend.backend() != "torch":
        raise RunError("DDP needs the torch backend: set KERAS_BACKEND=torch")
    train(args)
    return 0


def train(args):
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    x_train, x_test = images(args)
    if args.batch_size % size:
        raise RunError(
            f"--batch-size {args.batch_size} does not split into {size} "
            "equal shares"
        )
    keras.utils.set_random_seed(args.seed)  # the same weights everywhere
    model = build_model(RECIPES["tuned"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    share = args.batch_size // size
    if rank == 0:
        print(
            f"{size} processes, global batch {args.batch_size} ({share} per "
            f"process), {len(x_train)} training images"
        )
    for epoch in range(args.epochs):
        # The same permutation in every process; each takes its share.
        order = np.random.default_rng(args.seed + epoch).permutation(
            len(x_train)
        )
        steps = len(order) // args.batch_size
        steps = min(steps, args.steps) if args.steps else steps
        total = 0.0
        for step in range(steps):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            inputs = torch.as_tensor(x_train[batch[rank * share :][:share]])
            outputs = ddp(inputs)
            loss = torch.mean((outputs - inputs) ** 2) + sum(model.losses)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        if rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: loss {total / steps:.5f}")
    spread = report(model, x_test, rank, dist)
    # Free DDP before its group, and leave together once rank 0 has
    # reported: a gloo group destroyed as the last DDP reference goes can
    # deadlock on the GIL (torch 2.13).
    del ddp, optimizer
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    if spread > 1e-6:
        raise RunError(f"the processes' weights differ by {spread}")


def images(args):
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        x = (rng.random((4096, 784)) ** 4).astype("float32")
        return x[:3072], x[3072:]
    (x_train, _), (x_test, _) = load_dataset(args.dataset, args.data_dir)
    return x_train, x_test


def report(model, x_test, rank, dist):
    """Prints the code's sparsity; returns the processes' weight spread."""
    import torch

    weights = torch.cat([w.value.detach().reshape(-1) for w in model.weights])
    largest, smallest = weights.clone(), weights.clone()
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    spread = float(torch.max(largest - smallest))
    if rank:
        return spread
    code = model.get_layer("code")
    codes = keras.Model(model.inputs, code.output).predict(x_test, verbose=0)
    stats = sparsity_statistics(codes, regularizer=code.activity_regularizer)
    test_mse = float(np.mean((model.predict(x_test, verbose=0) - x_test) ** 2))
    print(
        f"weights agree across processes (largest difference {spread:.1e}); "
        f"test MSE {test_mse:.5f}, mean code activation "
        f"{stats['mean_activation']:.4f} (rho {code.activity_regularizer.rho})"
    )
    return spread


if __name__ == "__main__":
    run(main)
