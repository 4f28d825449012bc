"""The benchmarks run end to end (through the engine's train_run, worker processes included) and print what
their docstrings promise; their numbers are not checked here (no timing assertions in tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_check_runs_in_its_dry_mode_on_cpu():
    """The dry mode runs every step on the CPU, the engine benchmark with worker processes (the one run of
    benchmarks/ensemble_training.py's main path in the suite)."""
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry"], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.split("== summary (device cpu, dry)\n")[1].splitlines()
    assert [line.split(":")[0] for line in summary] == ["cuda tests (collected)", "bytes twice, kill and resume",
                                                        "engine benchmark", "optimizer and norms, old vs new"]
    assert all(": ok (" in line for line in summary), summary
    # its engine benchmark step (benchmarks/ensemble_training.py, worker processes on 2 cores) prints a row per
    # model and the final speedup line
    engine = proc.stdout.split("== engine benchmark: ")[1].split("\n== ")[0].strip().splitlines()
    assert any(line.startswith("lp_mlp2_bn ") for line in engine), engine
    assert re.fullmatch(r"speedup_block_vs_sequential: (nan|\d+\.\d\d)", engine[-1]), engine[-1]


def test_calibrate_costs_writes_a_rate_per_architecture_under_its_device_kind(tmp_path):
    import yaml

    out = tmp_path / "rates.yaml"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "calibrate_costs.py"), "--archs", "fc1",
                           "lp_cnn", "--steps", "1", "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = yaml.safe_load(out.read_text())
    section = table["cuda" if "cuda" in table else "cpu"]
    assert set(section["training_flops_per_s"]) == {"fc1", "lp_cnn"}
    assert all(rate > 0 for rate in section["training_flops_per_s"].values())
    assert section["batch"] == 2 and section["device"]
