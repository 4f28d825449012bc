"""The commands documented in README.md and in the profiles' comments (tests/test_docs_commands.py runs them)."""

from __future__ import annotations

import re
import shlex

from .conftest import REPO
from .test_repo import readme_command

COMMAND_WORDS = ("snakemake", "pip", "python", "python3", "pytest")
SETUP_MARKERS = ("run-command", "test-command")


def is_command(text: str) -> bool:
    words = text.split()
    return len(words) > 1 and words[0].removeprefix(".venv/bin/") in COMMAND_WORDS


def documented_commands() -> list[str]:
    """Commands in README.md (bash blocks and inline code) and in the profiles' comments, without the set-up
    commands, in order of appearance, each once."""
    readme = (REPO / "README.md").read_text()
    for marker in SETUP_MARKERS:
        readme = readme.replace(readme_command(marker), "")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        found += [ln.strip() for ln in block.splitlines()]
    found += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", readme, flags=re.S))
    for profile in sorted((REPO / "profiles").glob("*/config.yaml")):
        for line in profile.read_text().splitlines():
            if line.lstrip().startswith("#"):
                comment = line.split("#", 1)[1]
                found += re.findall(r"`([^`\n]+)`", comment) + [comment.strip()]
    return list(dict.fromkeys(c for c in found if is_command(c)))


def dry_run_args(command: str) -> list[str]:
    """The snakemake command as a dry run (-n), unless it only removes a lock."""
    args = shlex.split(command)[1:]
    if "-n" not in args and "--unlock" not in args:
        args.insert(0, "-n")
    return args


def distinct_checks() -> list[str]:
    """The documented commands, one per distinct check (`snakemake -n X` and `.venv/bin/snakemake X` are one)."""
    def key(command: str) -> str:
        word = shlex.split(command)[0].removeprefix(".venv/bin/")
        return " ".join([word, *(dry_run_args(command) if word == "snakemake" else shlex.split(command)[1:])])

    return list({key(c): c for c in reversed(documented_commands())}.values())[::-1]
