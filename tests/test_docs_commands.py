"""Every command in README.md and in the profiles' comments runs: snakemake commands as dry runs (a real run takes
hours), so a documented command that cannot start (a swallowed target, a missing profile or config, an unknown
rule) fails here. README's two set-up commands create virtual environments: their parts are checked instead."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from .conftest import REPO, VENV_BIN
from .docs_commands import SETUP_MARKERS, distinct_checks, documented_commands, dry_run_args
from .slurm_plugin import check_profile_dry_run, dry_run_env
from .test_repo import readme_command


def check_snakemake(command: str, tmp_path) -> None:
    args = dry_run_args(command)
    env = dry_run_env() if "slurm" in args else None
    proc = subprocess.run([str(VENV_BIN / "snakemake"), *args, "--directory", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if "--report" in args:
        # A report is made after a run: here, with nothing run, the command must get as far as the first figure.
        assert "marked for report but does not exist" in out, f"{command}\n{out[-3000:]}"
        return
    assert proc.returncode == 0, f"{command}\n{out[-3000:]}"
    if "-n" in args:
        assert "Job stats" in out or "Nothing to be done" in out, f"{command}\n{out[-3000:]}"
    if args[:4] == ["-n", "--profile", "slurm", "all_figures"]:  # the cluster's study: check its resources too
        configfile = next((a.split("=", 1)[1] for a in args if a.startswith("--configfile=")), None)
        check_profile_dry_run(out, configfile)


def check_pip(command: str) -> None:
    """pip installs are not repeated here: the requirement files they name exist and pin every package."""
    args = shlex.split(command)
    files = [args[i + 1] for i, a in enumerate(args) if a == "-r"]
    assert args[1] == "install" and files, command
    for name in files:
        lines = [ln.split("#")[0].strip() for ln in (REPO / name).read_text().splitlines()]
        assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[0-9][\w.]*", ln) for ln in lines if ln), name


def test_documented_commands_are_found():
    commands = documented_commands()
    assert "snakemake --profile slurm all_figures" in commands  # the cluster command, exactly as the design names it
    assert any(c.startswith(".venv/bin/pip install") for c in commands)
    assert not any("<" in c for c in commands), "a documented command with a placeholder cannot be run"


@pytest.mark.slow
@pytest.mark.parametrize("command", distinct_checks())
def test_documented_command_runs(command, tmp_path):
    word = shlex.split(command)[0].removeprefix(".venv/bin/")
    if word == "snakemake":
        check_snakemake(command, tmp_path)
    elif word == "pip":
        check_pip(command)
    elif word == "pytest":
        # collected, not run (the selection may need a GPU): the marker exists and selects tests
        proc = subprocess.run([str(VENV_BIN / "pytest"), *shlex.split(command)[1:], "--collect-only", "-q",
                               "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and " collected" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    else:
        pytest.fail(f"no check for documented command {command!r}: add one here")


@pytest.mark.slow
def test_setup_commands_parts_run(tmp_path):
    """Each `&&` part of the set-up commands: the venv module exists, the pip parts name pinned requirement files,
    the snakemake part dry-runs and pytest has the xdist plugin its -n needs."""
    for marker in SETUP_MARKERS:
        for part in (p.strip() for p in readme_command(marker).split("&&")):
            word = shlex.split(part)[0].removeprefix(".venv/bin/")
            if part.startswith("python3 -m venv"):
                assert subprocess.run([sys.executable, "-m", "venv", "--help"], capture_output=True).returncode == 0
            elif word == "pip":
                check_pip(part)
            elif word == "snakemake":
                check_snakemake(part, tmp_path)
            elif word == "pytest":
                help_text = subprocess.run([str(VENV_BIN / "pytest"), "--help"], capture_output=True, text=True)
                assert "numprocesses" in help_text.stdout, "pytest -n needs pytest-xdist"
            else:
                pytest.fail(f"no check for set-up command part {part!r}")
