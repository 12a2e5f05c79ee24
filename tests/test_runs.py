"""examples/runs.py: the scripts' command line, output folder and processes."""

import argparse
import os
import subprocess
import sys

import pytest

from data import DataError
from runs import (
    Artifacts,
    RunError,
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
    "error", [DataError("data.npz: broken"), RunError("runs/x: taken")]
)
def test_run_turns_known_errors_into_one_line(error, capsys):
    def main():
        raise error

    with pytest.raises(SystemExit) as info:
        run(main)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_run_lets_bugs_show_their_traceback():
    def main():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run(main)


def test_artifacts_appear_together_at_commit(tmp_path):
    out = tmp_path / "run"
    with Artifacts(str(out), ["model.keras", "metrics.json"]) as artifacts:
        with open(artifacts.path("model.keras"), "w") as f:
            f.write("model")
        assert sorted(os.listdir(out)) == [f".partial-{os.getpid()}"]
        with open(artifacts.path("metrics.json"), "w") as f:
            f.write("{}")
        written = artifacts.commit()
    assert written[-1].endswith("metrics.json")  # last, after the model
    assert sorted(os.listdir(out)) == ["metrics.json", "model.keras"]
    with pytest.raises(RunError, match="already holds results"):
        Artifacts(str(out), ["model.keras", "metrics.json"])
    assert (out / "model.keras").read_text() == "model"


def test_staging_folders_of_killed_runs_are_cleared(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid is free now: a run that was killed
    stale = tmp_path / f".partial-{finished.pid}"
    stale.mkdir()
    (stale / "model.keras").write_text("half written")
    alive = tmp_path / f".partial-{os.getppid()}"  # a run still going
    alive.mkdir()
    other = tmp_path / ".partial-notes"
    other.mkdir()
    with Artifacts(str(tmp_path), ["metrics.json"]):
        assert not stale.exists()
        assert alive.exists() and other.exists()


def test_a_failed_run_leaves_no_folder_and_keeps_old_results(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Artifacts(str(tmp_path / "new"), ["a.txt"]) as artifacts:
            open(artifacts.path("a.txt"), "w").close()
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "a.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with Artifacts(str(old), ["a.txt"], overwrite=True) as artifacts:
            with open(artifacts.path("a.txt"), "w") as f:
                f.write("new")
            raise KeyboardInterrupt
    assert os.listdir(old) == ["a.txt"] and (old / "a.txt").read_text() == "old"
    with pytest.raises(ValueError, match="'b.txt' is not one of"):
        Artifacts(str(tmp_path / "other"), ["a.txt"]).path("b.txt")


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
