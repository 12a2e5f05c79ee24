"""What installing keras_sparsity with each extra puts on disk.

For each extra, creates a fresh virtual environment in a temporary folder,
installs this checkout into it with `pip install <repo>[<extra>]` and
prints the environment's size in MB (`du`-style, every file counted once),
with what it installed. The `torch` extra is installed after PyTorch's CPU
build, `torch==2.13.0` from PyTorch's CPU wheel index, as the README says:
from PyPI, torch on Linux is the CUDA build. Needs the package indexes (or a
pip cache); takes minutes per extra.
"""

import os
import shlex
import subprocess
import sys
import tempfile

from common import ROOT  # first: examples/ on sys.path, no Keras
from runs import RunError, parser, run

EXTRAS = ("tensorflow", "jax", "torch", "examples", "dev")
TORCH_CPU = "https://download.pytorch.org/whl/cpu"
PINNED_FIRST = {"torch": ["torch==2.13.0", "--index-url", TORCH_CPU]}
EXAMPLE = ".venv/bin/python benchmarks/install_size.py --extras jax torch"


def arguments():
    """The command line."""
    arguments = parser(__doc__, EXAMPLE)
    arguments.add_argument(
        "--extras",
        nargs="+",
        choices=EXTRAS,
        default=list(EXTRAS),
        help=f"the extras to measure (default: all of {', '.join(EXTRAS)})",
    )
    return arguments


def main(argv=None):
    args = arguments().parse_args(argv)
    print("extra        MB  packages (the largest three)")
    for extra in args.extras:
        with tempfile.TemporaryDirectory() as folder:
            environment = os.path.join(folder, "venv")
            _call([sys.executable, "-m", "venv", environment])
            pip = [os.path.join(environment, "bin", "python"), "-m", "pip"]
            quiet = ["install", "-q", "--disable-pip-version-check"]
            if extra in PINNED_FIRST:
                _call(pip + quiet + PINNED_FIRST[extra])
            _call(pip + quiet + [f"{ROOT}[{extra}]"])
            megabytes = folder_bytes(environment) / 2**20
            largest = largest_packages(environment, 3)
        print(f"{extra:<10}{megabytes:>6.0f}  {largest}")
    return 0


def folder_bytes(folder):
    """Bytes of the files under `folder`, each hard-linked file once."""
    seen, total = set(), 0
    for parent, _, names in os.walk(folder):
        for name in names:
            status = os.lstat(os.path.join(parent, name))
            if (status.st_dev, status.st_ino) not in seen:
                seen.add((status.st_dev, status.st_ino))
                total += status.st_size
    return total


def largest_packages(environment, count):
    """The `count` largest top-level folders of site-packages, with MB."""
    lib = os.path.join(environment, "lib")
    site = os.path.join(lib, os.listdir(lib)[0], "site-packages")
    sizes = {
        name: folder_bytes(os.path.join(site, name)) / 2**20
        for name in os.listdir(site)
        if os.path.isdir(os.path.join(site, name))
        and not name.endswith((".dist-info", "__pycache__"))
    }
    top = sorted(sizes, key=sizes.get, reverse=True)[:count]
    return ", ".join(f"{name} {sizes[name]:.0f}" for name in top)


def _call(command):
    """Runs `command`; if it fails, a `RunError` names it (with `python`
    for the interpreter) and quotes the last line it wrote to stderr."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        shown = shlex.join(["python", *command[1:]])
        raise RunError(f"{shown} failed: {last}")


if __name__ == "__main__":
    run(main)
