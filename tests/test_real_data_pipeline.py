"""End to end: snakemake builds the real-data sources (mnist1d, mnist5k and a subsample of it) and trains and
evaluates a block of each new kind of CNN on them, stacked as one wide network (tests/configs/tiny_real_data.yaml)."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest

from tests.conftest import REPO

RUNS = {  # run folder: (dataset file, its input shape, stored x dtype, test accuracy both members exceed)
    "results/runs/universality/signals/tiny_mnist1d/mnist1d_cnn/tiny_adam/ce/s0-1":
        ("data/tiny_mnist1d.h5", [1, 40], "float32", 0.3),
    "results/runs/universality/images/tiny_mnist5k/tiny_st_vgg/tiny_adam_slow/ce/s0-1":
        ("data/tiny_mnist5k.h5", [1, 28, 28], "uint8", 0.45),
}


@pytest.mark.slow
def test_snakemake_trains_the_new_cnns_on_the_real_data_sources(tmp_path, snakemake_bin):
    cmd = [snakemake_bin, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(REPO / "tests/configs/tiny_real_data.yaml"), "--cores", "2", *(f"{run}/metrics.h5" for run in RUNS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for run, (data, shape, dtype, chance_beaten) in RUNS.items():
        with h5py.File(tmp_path / data) as f:
            assert f["train/x"].shape == (400, *shape) and f["train/x"].dtype == dtype
            assert np.unique(f["test/y"][:]).tolist() == list(range(10))  # all ten classes in a test split of 100
        with h5py.File(tmp_path / run / "checkpoints.h5") as f:
            assert f["members"][:].tolist() == [0, 1]
            assert f.attrs["stacking"] == "wide"  # grouped Conv1d / Conv2d, not a loop
        with h5py.File(tmp_path / run / "metrics.h5") as f:
            assert f.attrs["num_classes"] == 10
            acc = f["test/summary/acc"][:]
            assert np.all(acc[:, -1] > chance_beaten), (run, acc[:, -1])  # chance is 0.1
