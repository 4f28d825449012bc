"""End to end through a real local SLURM cluster: the tiny config, the real profile, jobs submitted by sbatch.

Installs Debian's SLURM packages and the executor plugin (into a folder of its own, so the rest of the suite
never loads it), starts a single-node cluster with fake GPUs (tests/slurm/local_cluster.sh), runs the
workflow with `--profile slurm`, and stops every daemon it started. Needs root and apt-get; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, VENV_BIN

CLUSTER = REPO / "tests" / "slurm" / "local_cluster.sh"
PLUGIN_DIR = REPO / ".venv" / "slurm-plugin"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root to install and start SLURM daemons"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no apt-get to install SLURM (and SLURM is not installed)"
    return None


def _install_plugin() -> None:
    if (PLUGIN_DIR / "snakemake_executor_plugin_slurm").exists():
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PLUGIN_DIR),
         "-r", str(REPO / "envs" / "requirements-slurm.txt")],
        check=True,
    )


@pytest.fixture(scope="module")
def cluster():
    reason = _cannot_run()
    if reason:
        pytest.skip(reason)
    subprocess.run(["bash", str(CLUSTER), "install"], check=True, timeout=900)
    _install_plugin()
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, timeout=180)
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], check=False, timeout=120)
        status = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True)
        assert "running" not in status.stdout, status.stdout


def test_tiny_config_runs_through_slurm(cluster, tmp_path: Path):
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"  # jobs' shell commands see the job's PATH
    env["PYTHONPATH"] = str(PLUGIN_DIR)  # sbatch exports the environment, so jobs find the plugin too
    cmd = [
        "timeout", "-s", "INT", "1500",
        str(VENV_BIN / "snakemake"), "--profile", "slurm",
        "--configfile", str(REPO / "tests" / "configs" / "tiny.yaml"),
        "--directory", str(tmp_path),
        # The test cluster has no accounting database: poll squeue instead of sacct, and poll soon.
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "5",
        "--jobs", "4",
        "all_figures",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    figures = sorted((tmp_path / "results" / "figures").rglob("*.png"))
    assert figures, "no figure was produced"
    # Every job went through sbatch: the plugin writes one log per SLURM job, and squeue remembers them.
    slurm_logs = list((tmp_path / "results" / "logs" / "slurm").rglob("*.log"))
    assert slurm_logs, log[-3000:]
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%j %T %P"], capture_output=True, text=True)
    lines = [ln for ln in jobs.stdout.splitlines() if ln.strip()]
    assert lines and all("COMPLETED" in ln for ln in lines), jobs.stdout
    assert any(ln.split()[-1] == "gpu" for ln in lines), "training never asked for the GPU partition"
