"""The SLURM executor plugin for tests: installed into a folder of its own, loaded only where a test asks for it."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .conftest import REPO, VENV_BIN

PLUGIN_DIR = REPO / ".venv" / "slurm-plugin"
SLURM_TOOLS = ("sinfo", "scontrol", "squeue", "sbatch", "sacct", "srun", "scancel")


def install_plugin() -> None:
    """Install envs/requirements-slurm.txt into PLUGIN_DIR (not site-packages: every snakemake start with the
    plugin loaded probes the SLURM tools, which costs seconds wherever they are installed but not running)."""
    if (PLUGIN_DIR / "snakemake_executor_plugin_slurm").exists():
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PLUGIN_DIR),
         "-r", str(REPO / "envs" / "requirements-slurm.txt")],
        check=True,
    )


@functools.cache
def path_without_slurm() -> str:
    """A PATH with every command of this one except the SLURM client tools (links in a temporary folder)."""
    shadow = Path(tempfile.mkdtemp(prefix="lossatlas-path-"))
    for folder in [str(VENV_BIN), *os.environ.get("PATH", "").split(os.pathsep)]:
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            link = shadow / entry.name
            if entry.name not in SLURM_TOOLS and not link.exists():
                link.symlink_to(entry.path)
    return str(shadow)


def dry_run_env() -> dict[str, str]:
    """Environment for `snakemake -n --profile slurm`: the plugin importable, and the SLURM tools off PATH, so
    the plugin skips its probe of the cluster (a dry run submits nothing; with the tools installed but no
    controller running the probe costs seconds per start)."""
    install_plugin()
    env = dict(os.environ)
    env["PATH"] = path_without_slurm()
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), str(REPO / "workflow_scripts")])
    return env
