"""lossatlas.fingerprint: the code closure of an entry script and its fingerprint, on a small fake package (so the
tests can edit files) and on the real entry scripts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lossatlas import fingerprint as fp

FILES = {
    "job.py": "from lossatlas import a\n\na.run()\n",
    "train.py": "from lossatlas.b import B\n\nprint(B)\n",
    "lossatlas/__init__.py": "",
    "lossatlas/a.py": '''
        """Module a: its docstring is not code."""
        from .sub import c

        SCALE = 2  # a module constant


        def run():
            """Run it."""
            return c.f() * SCALE
        ''',
    "lossatlas/b.py": "B = 1\n",
    "lossatlas/sub/__init__.py": "",
    "lossatlas/sub/c.py": '''
        import subprocess
        import sys

        from .. import b


        def f():
            from lossatlas.sub import d  # a function-local import

            subprocess.run([sys.executable, "-m", "lossatlas.e"])  # a module run by name
            return d.g() + b.B
        ''',
    "lossatlas/sub/d.py": "def g():\n    return 1\n",
    "lossatlas/e.py": "print('worker')\n",
    "lossatlas/unused.py": "from lossatlas import b\n",
}


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """A fake workflow_scripts/ with entry scripts job.py, train.py and a ``lossatlas`` package."""
    root = tmp_path / "workflow_scripts"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    monkeypatch.setattr(fp, "LIBRARY", (root / "lossatlas").resolve())
    monkeypatch.setattr(fp, "ENTRY_SCRIPTS", root.resolve())
    monkeypatch.setattr(fp, "CACHE_DIR", tmp_path / "cache")
    return root.resolve()


def closure(root: Path, script: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in fp.code_closure(script)}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_closure_follows_absolute_relative_local_and_by_name_imports(package):
    assert closure(package, "job.py") == {
        "job.py", "lossatlas/__init__.py", "lossatlas/a.py", "lossatlas/sub/__init__.py", "lossatlas/sub/c.py",
        "lossatlas/b.py", "lossatlas/sub/d.py", "lossatlas/e.py"}


def test_closure_of_a_missing_script_is_an_error(package):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        fp.code_closure("nope.py")


def test_docstring_and_comment_edits_keep_the_fingerprint(package):
    before = fp.code_fingerprint("job.py")
    edit(package / "lossatlas/a.py", "its docstring is not code", "its docstring says something else")
    edit(package / "lossatlas/a.py", '"""Run it."""', '"""Run it, now documented at length."""')
    edit(package / "lossatlas/a.py", "# a module constant", "# a constant of the module")
    assert fp.code_fingerprint("job.py") == before


@pytest.mark.parametrize(("rel", "old", "new"), [
    ("lossatlas/a.py", "SCALE = 2", "SCALE = 3"),  # a module constant
    ("lossatlas/sub/d.py", "return 1", "return 2"),  # reached only through a function-local import
    ("lossatlas/e.py", "'worker'", "'worker!'"),  # reached only by name
    ("lossatlas/b.py", "B = 1", "B = 1\nC = 2"),  # reached through a relative import
    ("job.py", "a.run()", "a.run()\na.run()"),  # the entry script itself
])
def test_code_edits_change_the_fingerprint(package, rel, old, new):
    before = fp.code_fingerprint("job.py")
    edit(package / rel, old, new)
    assert fp.code_fingerprint("job.py") != before


def test_edits_outside_the_closure_keep_the_fingerprint(package):
    before = fp.code_fingerprint("job.py")
    edit(package / "lossatlas/unused.py", "import b", "import b\nX = 1")
    (package / "lossatlas/new.py").write_text("Y = 1\n")
    assert fp.code_fingerprint("job.py") == before


def test_exclude_code_of_leaves_out_the_other_scripts_code(package):
    before = fp.code_fingerprint("job.py", exclude_code_of="train.py")
    edit(package / "lossatlas/b.py", "B = 1", "B = 2")  # train.py runs b: excluded
    assert fp.code_fingerprint("job.py", exclude_code_of="train.py") == before
    edit(package / "lossatlas/a.py", "SCALE = 2", "SCALE = 3")  # only job.py runs a
    assert fp.code_fingerprint("job.py", exclude_code_of="train.py") != before


def test_file_fingerprint_follows_the_bytes(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text("- id: a\n")
    before = fp.file_fingerprint(path)
    path.write_text("- id: a  # a comment is data here\n")
    assert fp.file_fingerprint(path) != before


def test_real_entry_scripts_reach_the_code_they_run():
    lib = "lossatlas/"
    evaluate = {p.relative_to(fp.ENTRY_SCRIPTS).as_posix() for p in fp.code_closure("evaluate.py")}
    assert {f"{lib}evaluation.py", f"{lib}metrics.py", f"{lib}models.py", "evaluate.py"} <= evaluate
    claims = {p.relative_to(fp.ENTRY_SCRIPTS).as_posix() for p in fp.code_closure("claims.py")}
    assert f"{lib}claims.py" in claims and f"{lib}training.py" not in claims
    figure = {p.relative_to(fp.ENTRY_SCRIPTS).as_posix() for p in fp.code_closure("universality_figure.py")}
    # figure code reads analysis outputs only: an analysis edit reruns figures through the analysis job's outputs
    assert {f"{lib}figures/universality.py", f"{lib}figures/common.py"} <= figure
    assert f"{lib}analysis/universality.py" not in figure and f"{lib}training.py" not in figure


def test_the_disk_cache_gives_what_a_fresh_parse_gives(package):
    fresh = fp.code_fingerprint("job.py"), closure(package, "job.py")
    cached = sorted(fp.CACHE_DIR.glob("*.json"))
    assert len(cached) == 8  # one per file of the closure
    fp._parsed.cache_clear()  # as in a new process: read from disk
    assert (fp.code_fingerprint("job.py"), closure(package, "job.py")) == fresh
    for path in cached:  # a damaged entry is parsed again, not trusted
        path.write_text("{")
    fp._parsed.cache_clear()
    assert (fp.code_fingerprint("job.py"), closure(package, "job.py")) == fresh
    fp._parsed.cache_clear()
    edit(package / "lossatlas/sub/d.py", "return 1", "return 2")  # new text, new key
    assert fp.code_fingerprint("job.py") != fresh[0]
