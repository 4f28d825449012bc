"""The SLURM executor plugin for tests (installed into a folder of its own, loaded only where a test asks for it)
and the checks of a dry run through the SLURM profile."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .conftest import REPO, VENV_BIN

PLUGIN_DIR = REPO / ".venv" / "slurm-plugin"
# Every rule that trains or evaluates networks (the GPU jobs); a new one belongs here and in the profile.
GPU_RULES = {"train", "evaluate", "lr_probe", "lp_search", "lp_bn_run", "normalized_loss_postprocess",
             "embedding_experiment"}
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


def dry_run_jobs(text: str) -> list[tuple[str, str]]:
    """(rule, resources line) of every job a dry run lists."""
    return re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", text, re.M)


def check_profile_dry_run(out: str, configfile: str | None) -> None:
    """The output of `snakemake -n --profile slurm all_figures [--configfile=X]`: the config used, and a GPU for
    exactly the jobs of GPU_RULES; without a configfile, the paper-scale study of all five papers."""
    used = re.search(r"Config file\(s\): \[PosixPath\('([^']+)'\)\]", out)
    assert used and used.group(1) == str(REPO / (configfile or "configs/paper.yaml")), out[-2000:]
    jobs = dry_run_jobs(out)
    assert jobs, out[-2000:]
    for rule, resources in jobs:
        on_gpu = "slurm_partition=gpu" in resources and "gres=gpu:1" in resources
        assert on_gpu == (rule in GPU_RULES), (rule, resources)
    if configfile is None:
        assert len(jobs) > 1000
        assert GPU_RULES <= {rule for rule, _ in jobs}
