"""End to end: snakemake builds the data, trains a block and evaluates it with tests/configs/tiny.yaml."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest

from tests.conftest import REPO

RUN = "results/runs/universality/tiny/tiny_digits/tiny_mlp/tiny_sgd/ce/s0-1"


@pytest.mark.slow
def test_snakemake_trains_and_evaluates_one_block(tmp_path, snakemake_bin):
    cmd = [snakemake_bin, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(REPO / "tests/configs/tiny.yaml"), "--cores", "2", f"{RUN}/metrics.h5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with h5py.File(tmp_path / RUN / "checkpoints.h5") as f:
        assert f["members"][:].tolist() == [0, 1]
        assert f["checkpoints/epoch"][:].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 2, 3], abs=0.02)
    with h5py.File(tmp_path / RUN / "metrics.h5") as f:
        assert f.attrs["num_classes"] == 5
        acc = f["test/summary/acc"][:]
        assert acc.shape == (2, 6) and np.all(acc[:, -1] > 0.8)  # digits 0-4 are easy
        assert f["train/pred"].shape[2] == f["train/y"].shape[0]
    assert not (tmp_path / RUN / "_work").exists()
