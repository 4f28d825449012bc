"""Repository hygiene: lint clean, the README's commands are what CI runs."""

from __future__ import annotations

import re
import subprocess

from .conftest import REPO, VENV_BIN


def readme_command(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```\n<!-- /{marker} -->", text, re.S)
    assert block, f"README.md has no {marker} block"
    return block.group(1).strip()


def test_readme_has_exactly_two_setup_commands():
    assert "all_figures" in readme_command("run-command")
    assert "pytest" in readme_command("test-command")
    text = (REPO / "README.md").read_text()
    assert text.count("<!-- run-command -->") == 1 and text.count("<!-- test-command -->") == 1


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "test-command" in ci and "README.md" in ci


def test_ruff_clean():
    ruff = VENV_BIN / "ruff"
    proc = subprocess.run([str(ruff), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
