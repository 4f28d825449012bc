"""Code fingerprints: the `code` param of every rule, derived from what its job actually runs.

A job runs its entry script (workflow_scripts/<name>.py) and every lossatlas module that script imports,
followed transitively, function-local imports included, and modules named in a string (``importlib``,
``python -m lossatlas.x``). The fingerprint hashes each of those files from its syntax tree with docstrings
removed: editing code or a module constant changes it (and Snakemake reruns the job, whose params changed),
editing a comment or a docstring does not. Nothing is listed by hand, so nothing can go stale; the price is
coarseness (an edit anywhere in a module reruns every job that imports it).

Training is the deliberate exception (GPU-days), stated here and in README: the train rule carries no
fingerprint, and a rule whose output feeds training (the learning-rate probe; evaluation, whose scores derive
the consistency study's datasets) is fingerprinted without the code the train job runs (``exclude_code_of``),
so training-code edits retrain nothing unless forced (``--forcerun train``). Dataset code is not exempt: an
edit that reaches prepare_dataset or derive_dataset rebuilds the data, and Snakemake then retrains every run
downstream of it, because the data may have changed; likewise an edit of the probe's own code reprobes, and
retrains on the rate it picks.

Data files that a job reads as its definition (the claims registry) get ``file_fingerprint`` beside the code.

Stdlib only: the Snakefile calls this at parse time, which happens again inside every cluster job. So each
file's parse result is also kept on disk, keyed by a hash of its text (``CACHE_DIR``): a cluster job or a dry
run re-parses only files whose text it has not seen.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path

PACKAGE = "lossatlas"
LIBRARY = Path(__file__).resolve().parent
ENTRY_SCRIPTS = LIBRARY.parent
# Content-addressed, so one cache serves every checkout; LOSSATLAS_CODE_CACHE overrides where it lives.
_HOME = os.path.expanduser("~")  # stays "~" where no home can be found: then the temporary folder
CACHE_DIR = Path(os.environ.get("LOSSATLAS_CODE_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME")
                         or Path(tempfile.gettempdir() if _HOME == "~" else _HOME) / ".cache") / "lossatlas" / "code")


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (``lossatlas.a.b``) in this package, or None when there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = LIBRARY.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> str:
    """Dotted package that contains ``path`` (for relative imports); entry scripts are outside the package."""
    try:
        rel = path.resolve().relative_to(LIBRARY)
    except ValueError:
        return ""
    return ".".join([PACKAGE, *rel.parent.parts])


def _with_parents(name: str) -> list[str]:
    """``lossatlas.a.b`` imports ``lossatlas``, ``lossatlas.a`` and ``lossatlas.a.b``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


# Each file is parsed once per text, for its imports and its code hash together; the key includes the text, so a
# file edited in a long-lived process (a test) is parsed again.


@cache
def _parsed(path: Path, text: str) -> tuple[frozenset[str], str]:
    """(package modules named by imports or strings in the file, hash of its code without docstrings)."""
    package = _package_of(path)
    # The tree's dump differs between Python versions, and relative imports resolve against the package.
    key = hashlib.sha256(f"{sys.version_info[:2]}\0{package}\0{text}".encode()).hexdigest()
    cached = CACHE_DIR / f"{key}.json"
    try:
        entry = json.loads(cached.read_text())
        return frozenset(entry["imports"]), entry["hash"]
    except (OSError, ValueError, KeyError):
        pass
    imported, digest = _parse(path, text, package)
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=CACHE_DIR, suffix=".tmp", delete=False) as tmp:
            json.dump({"imports": sorted(imported), "hash": digest}, tmp)
        os.replace(tmp.name, cached)  # atomic: concurrent cluster jobs never read half a file
    except OSError:
        pass  # a read-only home only costs the parse
    return imported, digest


def _parse(path: Path, text: str, package: str) -> tuple[frozenset[str], str]:
    tree = ast.parse(text, filename=str(path))
    names: set[str] = set()
    with_docstrings = []
    for node in ast.walk(tree):  # one walk
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from lossatlas.figures import universality` imports a module, not a name
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGE):
            names.add(node.value)  # importlib.import_module("lossatlas.x"), [python, "-m", "lossatlas.x"]
        elif isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            with_docstrings.append(node)
    for node in with_docstrings:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    imported = frozenset(m for name in names if name.split(".")[0] == PACKAGE for m in _with_parents(name))
    return imported, hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def imported_modules(path: Path) -> frozenset[str]:
    """Package modules that the file at ``path`` imports anywhere in its body (existing files only)."""
    return frozenset(m for m in _parsed(path, path.read_text())[0] if module_file(m) is not None)


def code_closure(script: str | Path) -> list[Path]:
    """The entry script and every package file it reaches through imports, sorted."""
    start = Path(script) if Path(script).is_absolute() else ENTRY_SCRIPTS / script
    if not start.is_file():
        raise FileNotFoundError(f"code_fingerprint: no entry script {start}")
    seen, todo = {start.resolve()}, [start.resolve()]
    while todo:
        for name in imported_modules(todo.pop()):
            path = module_file(name).resolve()
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return sorted(seen)


def code_hash(path: Path) -> str:
    """Hash of one Python file's code: its syntax tree without docstrings (comments never reach the tree)."""
    return _parsed(path, path.read_text())[1]


def code_fingerprint(script: str, exclude_code_of: str | None = None) -> str:
    """Fingerprint of the code a job runs: ``script`` (a file in workflow_scripts/) and its package imports.

    ``exclude_code_of`` names another entry script whose code is left out (the train job's, for the rules that
    feed training: see the module docstring).
    """
    files = code_closure(script)
    if exclude_code_of is not None:
        excluded = set(code_closure(exclude_code_of))
        files = [f for f in files if f not in excluded]
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(ENTRY_SCRIPTS).as_posix()
        digest.update(f"{rel}\0{code_hash(path)}\n".encode())
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """Fingerprint of a data file's bytes (``path`` relative to the repository root, or absolute)."""
    path = Path(path) if Path(path).is_absolute() else ENTRY_SCRIPTS.parent / path
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
