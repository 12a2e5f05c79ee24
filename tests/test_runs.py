"""examples/runs.py: the scripts' command line, output folder and processes."""

import argparse
import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import runs
from conftest import ROOT
from data import DataError
from runs import (
    Artifacts,
    RunError,
    add_seed_arguments,
    launch_local_processes,
    parser,
    positive_int,
    run,
)

DOC = """A script.

More about it.
"""


def test_parser_errors_are_one_line_with_status_2(capsys):
    arguments = parser(DOC, "python script.py --count 3")
    arguments.add_argument("--count", type=positive_int, help="how many")
    with pytest.raises(SystemExit) as info:
        arguments.parse_args(["--count", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "error: argument --count: must be >= 1, got 0 (see --help)" in err


def test_help_shows_the_example_and_the_details(capsys):
    arguments = parser(DOC, "python script.py --count 3")
    arguments.add_argument("--count", type=positive_int, help="how many")
    with pytest.raises(SystemExit):
        arguments.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "A script." in out and "More about it." in out
    assert "example:\n  python script.py --count 3" in out
    assert "how many" in out


@pytest.mark.parametrize(
    "error,line",
    [
        (DataError("data.npz: broken"), "data.npz: broken"),
        (RunError("runs/x: taken"), "runs/x: taken"),
        (
            PermissionError(errno.EACCES, "Permission denied", "runs/x"),
            "Permission denied: runs/x",
        ),
    ],
)
def test_run_turns_known_errors_into_one_line(error, line, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as info:
        run(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"error: {line}\n"


def test_run_lets_bugs_show_their_traceback():
    def main():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run(main)


NAMES = ["model.keras", "metrics.json"]


def write(artifacts, text, names=NAMES):
    for name in names:
        with open(artifacts.path(name), "w") as f:
            f.write(text)


def contents(folder):
    """`{name: text}` of the files in `folder`."""
    return {
        name: pathlib.Path(folder, name).read_text()
        for name in sorted(os.listdir(folder))
    }


def test_results_appear_together_at_commit(tmp_path):
    out = tmp_path / "run"
    with Artifacts(str(out), NAMES) as artifacts:
        write(artifacts, "new")
        # Nothing in the folder yet: the files wait beside it.
        assert not out.exists()
        assert sorted(os.listdir(tmp_path)) == [
            ".run.lock",
            f".run.partial-{os.getpid()}",
        ]
        written = artifacts.commit()
    assert written == [str(out / name) for name in NAMES]
    assert contents(out) == {"metrics.json": "new", "model.keras": "new"}
    assert os.listdir(tmp_path) == ["run"]  # no lock, no staging left
    with Artifacts(str(tmp_path / "other"), NAMES) as artifacts:
        with pytest.raises(ValueError, match="'b.txt' is not one of"):
            artifacts.path("b.txt")


def test_results_are_kept_unless_overwrite_then_replaced_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("old")
    (out / "metrics.json").write_text("old")
    with pytest.raises(RunError) as info:
        Artifacts(str(out), NAMES)
    assert str(info.value) == (
        f"{out} already holds results (model.keras, metrics.json); pass "
        "--overwrite to replace them, or choose another --output-dir"
    )
    with Artifacts(str(out), NAMES, overwrite=True) as artifacts:
        write(artifacts, "new", ["model.keras"])
        assert contents(out)["model.keras"] == "old"
        artifacts.commit()
    # The old results go as a whole: no old metrics.json beside the new
    # model.
    assert contents(out) == {"model.keras": "new"}
    assert os.listdir(tmp_path) == ["run"]
    # Through a link, the folder it points to is replaced; the link stays.
    os.symlink("run", tmp_path / "link")
    with Artifacts(str(tmp_path / "link"), NAMES, overwrite=True) as artifacts:
        write(artifacts, "newer")
        artifacts.commit()
    assert os.path.islink(tmp_path / "link")
    assert contents(out) == {"metrics.json": "newer", "model.keras": "newer"}
    assert sorted(os.listdir(tmp_path)) == ["link", "run"]


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Artifacts(str(tmp_path / "run"), NAMES):
        with pytest.raises(RunError) as info:
            Artifacts("run/", NAMES)  # the same folder, spelled otherwise
        assert str(info.value) == (
            f"run/: another run is writing its results there (it holds "
            f"{tmp_path / '.run.lock'}); wait for it to end, or choose "
            "another --output-dir"
        )
        os.symlink("run", "link")
        with pytest.raises(RunError, match="^link: another run is writing"):
            Artifacts("link", NAMES)  # the same folder, through a link
        os.remove("link")
        Artifacts("run-2", NAMES).__exit__(None, None, None)  # another: free
    with pytest.raises(KeyboardInterrupt):
        with Artifacts("run", NAMES):
            raise KeyboardInterrupt
    with Artifacts("run", NAMES) as artifacts:  # free again, in any case
        write(artifacts, "new")
        artifacts.commit()
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_the_lock_file_of_a_run_that_just_ended_is_not_trusted(
    tmp_path, monkeypatch
):
    # Between our open() and our flock() the run before us may unlink its
    # lock file and release it: we would hold a lock on a deleted file,
    # while a third run locks a new one.
    path = tmp_path / ".run.lock"
    path.write_text("")
    opened = []

    def open_then_lose_the_race(name, mode):
        handle = open(name, mode)
        if not opened:
            os.remove(name)
        opened.append(handle)
        return handle

    monkeypatch.setattr(runs, "open", open_then_lose_the_race, raising=False)
    _, handle = runs._take_lock(str(path), "run")
    assert len(opened) == 2 and opened[0].closed
    assert os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    handle.close()


def test_a_failed_run_changes_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Artifacts(str(tmp_path / "new"), NAMES) as artifacts:
            write(artifacts, "new")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.keras").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with Artifacts(str(old), NAMES, overwrite=True) as artifacts:
            write(artifacts, "new")
            raise KeyboardInterrupt
    assert contents(old) == {"model.keras": "old"}
    assert os.listdir(tmp_path) == ["old"]


def test_a_shared_folder_keeps_the_other_files(tmp_path):
    docs = tmp_path / "docs"
    (docs / "images").mkdir(parents=True)
    (docs / "guide.md").write_text("mine")
    (docs / "metrics.json").write_text("old")
    with Artifacts(str(docs), NAMES, overwrite=True) as artifacts:
        write(artifacts, "new", ["model.keras"])
        artifacts.commit()
    assert sorted(os.listdir(docs)) == ["guide.md", "images", "model.keras"]
    assert (docs / "guide.md").read_text() == "mine"
    assert (docs / "model.keras").read_text() == "new"
    assert os.listdir(tmp_path) == ["docs"]


def old_results(tmp_path, shared):
    out = tmp_path / "run"
    out.mkdir()
    for name in NAMES:
        (out / name).write_text("old")
    if shared:
        (out / "notes.txt").write_text("not ours")
    return out


def whole(folder, shared):
    """Whether the folder holds "old" or "new" results, all of one run."""
    found = contents(folder)
    if shared:
        assert found.pop("notes.txt") == "not ours"
    assert sorted(found) == sorted(NAMES) and len(set(found.values())) == 1
    return found["metrics.json"]


# The steps of a commit: renames, the swap, removals.
STEPS = [("os", "rename"), ("os", "remove"), ("shutil", "rmtree")]


def fail_at(monkeypatch, step, error, exchange):
    """Makes the `step`-th step of a commit raise `error()`."""
    count = [0]

    def wrap(real):
        def stepped(*args, **kwargs):
            count[0] += 1
            if count[0] == step:
                try:
                    error()
                except OSError:
                    if not kwargs.get("ignore_errors"):
                        raise
            return real(*args, **kwargs)

        return stepped

    for module, name in STEPS:
        target = getattr(runs, module)
        monkeypatch.setattr(target, name, wrap(getattr(target, name)))
    swap = wrap(runs._exchange) if exchange else lambda a, b: False
    monkeypatch.setattr(runs, "_exchange", swap)
    return count


def commit_new_results(out, monkeypatch, step, error, exchange):
    """A run that replaces `out`'s results; the `step`-th step of its
    commit raises `error()`. Returns the number of steps taken."""
    with Artifacts(str(out), NAMES, overwrite=True) as artifacts:
        write(artifacts, "new")
        with monkeypatch.context() as patched:
            count = fail_at(patched, step, error, exchange)
            artifacts.commit()
    return count[0]


def modes():
    return [
        pytest.param(False, True, id="own-folder-swap"),
        pytest.param(False, False, id="own-folder-no-swap"),
        pytest.param(True, True, id="shared-folder"),
    ]


@pytest.mark.parametrize("shared,exchange", modes())
def test_a_failing_step_of_the_commit_puts_everything_back(
    tmp_path, monkeypatch, shared, exchange
):
    def fail():
        raise IsADirectoryError(21, "Is a directory", "model.keras")

    step = 1
    while True:
        out = old_results(tmp_path, shared)
        try:
            taken = commit_new_results(out, monkeypatch, step, fail, exchange)
        except RunError as error:
            assert whole(out, shared) == "old", step
            assert str(error) == (
                f"{out}: could not write the results (Is a directory: "
                "model.keras); nothing there was changed"
            )
        else:  # the step failed after the commit point: all is new
            assert whole(out, shared) == "new", step
            if step > taken:
                break
        assert os.listdir(tmp_path) == ["run"]
        shutil.rmtree(out)
        step += 1
    assert step > 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("shared,exchange", modes())
def test_a_run_killed_at_any_step_of_the_commit_loses_nothing(
    tmp_path, monkeypatch, shared, exchange
):
    """A forked child is killed at each step of its commit in turn. The
    folder holds all the old results or all the new ones: at once when the
    swap serves, after the next run's recovery when files are moved one by
    one (a shared folder, or no swap on this system)."""
    step, taken, outcomes = 1, None, []
    while taken is None:
        out = old_results(tmp_path, shared)
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            try:
                commit_new_results(
                    out, monkeypatch, step, lambda: os._exit(9), exchange
                )
                os._exit(0)
            except BaseException:
                os._exit(3)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 9), step
        if code == 0:
            taken = step - 1  # ran to the end without being killed
        if exchange and not shared:  # one swap: never anything between
            assert whole(out, shared) in ("old", "new"), step
        Artifacts(str(out), NAMES, overwrite=True).__exit__(None, None, None)
        outcomes.append(whole(out, shared))
        assert os.listdir(tmp_path) == ["run"], step
        shutil.rmtree(out)
        step += 1
    # Old until the commit point (the swap, or the journal's removal after
    # the 4 renames), new from then on.
    point = 1 if exchange and not shared else 5
    assert outcomes == ["old"] * point + ["new"] * (len(outcomes) - point)
    assert taken == point + 1  # then the old results are removed


def test_leftovers_of_killed_runs_are_cleared_and_others_left_alone(
    tmp_path,
):
    out = old_results(tmp_path, shared=False)
    (tmp_path / ".run.partial-123").mkdir()  # a killed run's staging
    (tmp_path / ".run.partial-123" / "model.keras").write_text("half")
    other = tmp_path / ".run-2.partial-5"  # another folder's
    other.mkdir()
    aside = tmp_path / ".run.old-77"  # killed while moving files
    aside.mkdir()
    (aside / ".journal.json").write_text(
        json.dumps({"existing": NAMES, "written": NAMES})
    )
    for name in NAMES:
        (out / name).replace(aside / name)
    (out / "model.keras").write_text("new")  # moved in before the kill
    Artifacts(str(out), NAMES, overwrite=True).__exit__(None, None, None)
    assert whole(out, shared=False) == "old"
    assert sorted(os.listdir(tmp_path)) == [".run-2.partial-5", "run"]


def test_an_os_error_during_the_run_is_one_line_with_status_2(tmp_path, capsys):
    out = old_results(tmp_path, shared=False)

    def main():
        with Artifacts(str(out), NAMES, overwrite=True) as artifacts:
            write(artifacts, "new", ["model.keras"])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(SystemExit) as info:
        run(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {out}: could not write the results (No space left on "
        "device); nothing there was changed\n"
    )
    assert whole(out, shared=False) == "old"
    assert os.listdir(tmp_path) == ["run"]


def test_an_output_dir_that_cannot_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match=r"file: exists and is not a folder$"):
        Artifacts(str(tmp_path / "file"), NAMES)
    with pytest.raises(RunError) as info:
        Artifacts(str(tmp_path / "file" / "run"), NAMES)
    assert str(info.value).startswith(
        f"{tmp_path / 'file' / 'run'}: cannot write there ("
    )
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("terminal,verbose", [(True, 1), (False, 2)])
def test_progress_defaults_to_one_line_an_epoch_off_a_terminal(
    monkeypatch, terminal, verbose
):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    arguments = parser(DOC, "python script.py")
    add_seed_arguments(arguments)
    assert arguments.parse_args([]).verbose == verbose
    arguments = parser(DOC, "python script.py")
    add_seed_arguments(arguments, verbose=1)
    assert arguments.parse_args([]).verbose == 1


def test_many_processes_writing_more_than_a_pipe_holds(tmp_path, capfd):
    script = tmp_path / "talk.py"
    script.write_text(
        "import os, sys\n"
        "sys.stdout.write(os.environ['WHO'] * 200_000)\n"
        "sys.exit(int(os.environ['STATUS']))\n"
    )
    environments = [{"WHO": "a", "STATUS": "0"}, {"WHO": "b", "STATUS": "0"}]
    assert launch_local_processes(str(script), [], environments, 60) == 0
    out = capfd.readouterr().out
    assert out.count("a") >= 200_000 and "b" not in out  # only the first
    environments[1]["STATUS"] = "3"
    assert launch_local_processes(str(script), [], environments, 60) == 3
    assert "bbbb" in capfd.readouterr().err  # the failed run's log


def test_processes_that_do_not_finish_are_stopped(tmp_path):
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(RunError, match="did not finish in 1 s"):
        launch_local_processes(str(script), [], [{}, {}], timeout=1)


@pytest.mark.parametrize(
    "text,message",
    [
        ("0", "must be >= 1, got 0"),
        ("-2", "must be >= 1, got -2"),
        ("x", "expected an integer, got 'x'"),
        ("1.5", "expected an integer, got '1.5'"),
    ],
)
def test_positive_int(text, message):
    assert positive_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError) as info:
        positive_int(text)
    assert str(info.value) == message


EXAMPLES = os.path.join(ROOT, "examples")
SCRIPTS = sorted(
    name
    for name in os.listdir(EXAMPLES)
    if name.endswith(".py")
    and 'if __name__ == "__main__":' in pathlib.Path(EXAMPLES, name).read_text()
)
NO_KERAS = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, {examples!r})
for name in ("keras", "tensorflow", "jax", "torch"):
    sys.modules[name] = None  # importing one fails: none may be needed
found = {{}}
for script, argv in {calls!r}:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script, *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(f"{examples}/{{script}}", run_name="__main__")
            code = "returned"
        except SystemExit as exit:
            code = exit.code
        except ImportError as error:
            code = f"imported {{error}}"
    call = " ".join([script, *argv])
    found[call] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(found))
"""


def test_every_script_answers_its_command_line_before_importing_keras(
    subprocess_env,
):
    """`--help`, a bad flag, and torch_ddp.py without PyTorch: in one fresh
    process where Keras, TensorFlow, JAX and PyTorch cannot be imported."""
    assert {"mnist_sparse_autoencoder.py", "torch_ddp.py"} <= set(SCRIPTS)
    calls = [(s, ["--help"]) for s in SCRIPTS]
    calls += [(s, ["--no-such-flag"]) for s in SCRIPTS]
    calls.append(("torch_ddp.py", ["--synthetic"]))
    script = NO_KERAS.format(examples=EXAMPLES, calls=calls)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for name in SCRIPTS:
        code, out, err = found[f"{name} --help"]
        assert (code, err) == (0, ""), name
        assert out.startswith("usage: ") and "\nexample:\n  " in out, name
        code, out, err = found[f"{name} --no-such-flag"]
        assert (code, out) == (2, ""), name
        assert err == (
            f"{name}: error: unrecognized arguments: --no-such-flag "
            "(see --help)\n"
        )
    assert found["torch_ddp.py --synthetic"] == [
        2,
        "",
        "error: torch_ddp.py needs PyTorch, which is not installed; for the "
        "CPU build: pip install torch==2.13.0 --index-url "
        "https://download.pytorch.org/whl/cpu\n",
    ]
