"""Every code block of README.md and docs/ runs as written.

Python blocks run in order, page by page, each page in one namespace (as a
reader runs them), in a temporary folder, with small stand-ins for the data
a block names but does not make (`x_train`, `x_test`, `y_train`, `y_test`).
Shell blocks that run a script of this repository are checked up to the
script's argument parsing: the script exists and accepts those flags.
The API page is built with MkDocs and read back as HTML.
"""

import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keras_sparsity

import runs
from conftest import ROOT, kl_penalty_reference, load_script

PAGES = ["README.md"] + sorted(
    os.path.join("docs", name)
    for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md")
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


# The first line of a Python block that needs a fresh process of its own
# (devices set up before the backend starts): `fresh_checks.py` runs it.
SCRIPT_MARK = "# Run as a script:"


def blocks(page, language):
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    return [code for lang, code in FENCE.findall(text) if lang == language]


def stand_ins():
    rng = np.random.default_rng(0)
    images = (rng.random((320, 784)) ** 4).astype("float32")
    labels = rng.integers(0, 10, 320)
    return {
        "x_train": images[:256],
        "x_test": images[256:],
        "y_train": labels[:256],
        "y_test": labels[256:],
    }


@pytest.mark.parametrize(
    "page", [p for p in PAGES if blocks(p, "python")], ids=str
)
def test_python_blocks_run_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__", **stand_ins()}
    for index, code in enumerate(blocks(page, "python")):
        if code.startswith(SCRIPT_MARK):
            continue  # run in a fresh process: test_fresh_processes.py
        try:
            exec(
                compile(code, f"{page}, python block {index + 1}", "exec"),
                namespace,
            )
        except Exception as error:
            pytest.fail(f"{page}, python block {index + 1}: {error!r}")


class Parsed(Exception):
    """Raised instead of running a script once its arguments parsed."""


def script_commands():
    """`(page, command)` for each line of a shell block that runs a script."""
    found = []
    for page in PAGES:
        for code in blocks(page, "bash"):
            for line in code.replace("\\\n", " ").splitlines():
                for command in line.split("&&"):
                    words = shlex.split(command, comments=True)
                    while words and re.match(r"^[A-Z_]+=", words[0]):
                        words = words[1:]  # environment variables
                    if words[:1] == [".venv/bin/python"] and len(words) > 1:
                        if words[1].endswith(".py"):
                            found.append((page, words[1:]))
    return found


@pytest.mark.parametrize(
    "page,words",
    script_commands(),
    ids=lambda value: value if isinstance(value, str) else " ".join(value),
)
def test_shell_commands_name_real_scripts_and_flags(page, words, monkeypatch):
    path = os.path.join(ROOT, words[0])
    assert os.path.isfile(path), f"{page}: no script {words[0]}"
    original = runs._Parser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    monkeypatch.setattr(runs._Parser, "parse_args", parse_then_stop)
    module = load_script(words[0], "docs_" + os.path.basename(path)[:-3])
    with pytest.raises(Parsed):
        module.main(words[1:])


def test_every_script_uses_the_shared_parser():
    scripts = [
        os.path.join(folder, name)
        for folder in ("examples", "benchmarks")
        for name in sorted(os.listdir(os.path.join(ROOT, folder)))
        if name.endswith(".py")
        and "__main__" in open(os.path.join(ROOT, folder, name)).read()
    ]
    assert scripts
    for script in scripts:
        text = open(os.path.join(ROOT, script)).read()
        assert "run(main)" in text and "parser(" in text, script


def test_the_api_page_lists_exactly_the_public_names():
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        documented = re.findall(r"^::: keras_sparsity\.(\w+)$", f.read(), re.M)
    public = [name for name in keras_sparsity.__all__ if name != "__version__"]
    assert sorted(documented) == sorted(public)
    for name in keras_sparsity.__all__:
        assert hasattr(keras_sparsity, name)


@pytest.fixture(scope="module")
def api_page(tmp_path_factory):
    """The HTML of the API page, from one strict MkDocs build."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path_factory.mktemp("site")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(site / "api" / "index.html") as f:
        html = f.read()
    shutil.rmtree(site)
    return html


@pytest.mark.slow
def test_the_built_api_page_shows_every_example_as_code(api_page):
    from html.parser import HTMLParser

    html = api_page

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open, self.outside, self.headings = [], [], []
            self.heading = None

        def handle_starttag(self, tag, attrs):
            self.open.append(tag)
            if re.fullmatch(r"h\d", tag):
                self.heading = ""

        def handle_endtag(self, tag):
            while self.open and self.open.pop() != tag:
                pass
            if re.fullmatch(r"h\d", tag):
                self.headings.append(self.heading.strip())
                self.heading = None

        def handle_data(self, data):
            if self.heading is not None:
                self.heading += data
            if ">>>" in data and not {"code", "pre"} & set(self.open):
                self.outside.append(data.strip()[:80])

    reader = Reader()
    reader.feed(html)
    public = [getattr(keras_sparsity, n) for n in keras_sparsity.__all__]
    examples = sum(obj.__doc__.count(">>>") for obj in public if callable(obj))
    assert examples > 20
    assert html.count("&gt;&gt;&gt;") + html.count(">>>") >= examples
    assert reader.outside == []
    # Every heading names a public object or one of its members: no doctest
    # comment or prose line became a heading.
    for heading in reader.headings:
        first = re.split(r"[(\s=]", heading.replace("\u00b6", "").strip())[0]
        assert (
            first == "API"
            or first.startswith("keras_sparsity.")
            or any(hasattr(obj, first) for obj in public)
        ), heading


def api_tables(html):
    """`{(object id, section): [row, ...]}` for the API page's tables, each
    row a dict from column name to the cell's text."""
    from html.parser import HTMLParser

    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.owner, self.section = {}, None, None
            self.cell = self.row = self.header = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag in ("h2", "h3") and attrs.get("id"):
                self.owner = attrs["id"]
            elif attrs.get("class") == "doc-section-title":
                self.section = ""
            elif tag == "table" and self.section:
                self.header, self.rows = [], []
                self.tables[self.owner, self.section.rstrip(":")] = self.rows
            elif tag == "tr" and self.header is not None:
                self.row = []
            elif tag in ("th", "td") and self.row is not None:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "span" and self.section == "":
                self.section = None
            elif tag in ("th", "td") and self.cell is not None:
                self.row.append(" ".join(self.cell.split()))
                self.cell = None
            elif tag == "tr" and self.row is not None:
                if self.header:
                    self.rows.append(dict(zip(self.header, self.row)))
                else:
                    self.header = self.row
                self.row = None
            elif tag == "table":
                self.header = self.section = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data
            elif self.section is not None and not self.section.endswith(":"):
                self.section += data.strip()

    reader = Reader()
    reader.feed(html)
    return reader.tables


@pytest.mark.slow
def test_the_built_api_page_shows_a_type_for_every_parameter(api_page):
    import inspect

    tables = api_tables(api_page)
    documented = {}
    for name in keras_sparsity.__all__:
        obj = getattr(keras_sparsity, name)
        if not callable(obj):
            continue
        documented[f"keras_sparsity.{name}"] = obj
        for member, value in vars(obj).items() if inspect.isclass(obj) else ():
            if callable(value) and value.__doc__ and "Args:" in value.__doc__:
                documented[f"keras_sparsity.{name}.{member}"] = value
    assert "keras_sparsity.KLSparsityRegularizer.penalty" in documented
    for owner, obj in documented.items():
        parameters = inspect.signature(obj).parameters.values()
        expected = [
            {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(p.kind.name, "")
            + p.name
            for p in parameters
            if p.name != "self"
        ]
        rows = tables.get((owner, "Parameters"), [])
        assert [row["Name"] for row in rows] == expected, owner
        for row in rows:
            # A type of a few words, not a description read as a type.
            assert 0 < len(row["Type"]) <= 60, (owner, row)
        for row in tables.get((owner, "Returns"), []):
            assert 0 < len(row["Type"]) <= 60, (owner, row)
            assert row["Description"], (owner, row)
    assert tables["keras_sparsity.SparsityMonitor", "Parameters"][0] == {
        "Name": "layers",
        "Type": "str, keras.layers.Layer or list of them",
        "Description": "A layer of the model or its name, or a list of them.",
        "Default": "required",
    }
    returns = tables["keras_sparsity.sparsity_statistics", "Returns"]
    assert [row["Type"] for row in returns] == ["dict"]


def test_notebook_mistakes_demonstration(capsys):
    demo = load_script("examples/notebook_mistakes.py", "notebook_mistakes")
    demo.main([])
    lines = capsys.readouterr().out.splitlines()
    activations = np.zeros((256, 200))
    activations[:, :2] = 1.0
    correct = float(lines[1].split(":")[1])
    assert correct == pytest.approx(
        kl_penalty_reference(activations, 0.01, 3.0), abs=1e-4
    )
    assert float(lines[2].split(":")[1]) == 0.0
    assert float(lines[3].split(":")[1]) < 0.0  # a negative "penalty"
    table = {float(r.split()[0]): r.split()[1:] for r in lines[7:]}
    assert float(table[0.5][0]) == round(math.log(0.99 / 0.5), 4)
    assert float(table[0.5][1]) == round(math.log(1 - 0.01 - 0.5), 4)
    assert table[0.995][1] == "nan"
    # The math page shows this very output.
    with open(os.path.join(ROOT, "docs", "math.md")) as f:
        page = f.read()
    transcript = page.split(
        "$ .venv/bin/python examples/notebook_mistakes.py\n"
    )[1]
    assert transcript.split("```")[0].splitlines() == lines
