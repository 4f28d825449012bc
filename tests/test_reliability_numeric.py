"""Numeric guards: a run whose loss becomes NaN/inf stops with a recorded status; nothing downstream crashes on
it or takes its NaNs for data.

A block trained at an absurd learning rate (SGD, lr 1e4) must finish, record ``status/diverged`` with the
epoch, mark every later checkpoint invalid (weights NaN, metrics NaN, predictions -1), refuse to rebuild an
invalid checkpoint, and be handled explicitly by the lr probe (the rate is reported as diverged and not
chosen; all rates diverged is a clear error) and by the analyses that read metrics.h5 (invalid checkpoints are
left out; nothing left is an error naming the problem).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lossatlas.evaluation import evaluate_run, load_checkpoint_model
from lossatlas.lr_probe import probe_learning_rates
from lossatlas.training import train_run

from .reliability_helpers import make_digits, tiny_spec

GOOD = tiny_spec(seeds=[0, 1], epochs=2)
DIVERGING = tiny_spec(seeds=[2, 3], epochs=2, optimizer={"name": "sgd", "lr": 1e4, "momentum": 0.9})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """checkpoints.h5 + metrics.h5 of a good and a diverging block (same checkpoint schedule)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("numeric")
    digits = make_digits(root / "digits.h5")
    out = {"digits": digits}
    for name, spec in (("good", GOOD), ("diverging", DIVERGING)):
        run_dir = root / name
        train_run(spec, digits, run_dir / "checkpoints.h5", run_dir / "_work")
        evaluate_run(spec, run_dir / "checkpoints.h5", digits, run_dir / "metrics.h5")
        out[name] = run_dir
    return out


def test_a_diverging_run_finishes_with_its_status_recorded(runs):
    with h5py.File(runs["diverging"] / "checkpoints.h5", "r") as f:
        diverged = f["status/diverged"][()]
        when = f["status/diverged_epoch"][()]
        valid = f["checkpoints/valid"][()]
        epochs = f["checkpoints/epoch"][()]
        loss = f["train_log/loss"][()]
        weights = {k: f["weights"][k][()] for k in f["weights"]}
    assert diverged.all(), "lr 1e4 must diverge"
    assert np.isfinite(when).all() and (when > 0).all() and (when <= 2).all()
    assert valid[:, 0].all(), "the initialisation is a valid checkpoint"
    for m in range(len(diverged)):
        # valid exactly before the divergence, invalid from it on
        np.testing.assert_array_equal(valid[m], epochs < when[m])
        for name, w in weights.items():
            if w.dtype.kind == "f":
                assert np.isnan(w[m, ~valid[m]]).all(), f"invalid checkpoints of {name} must hold NaN"
                assert np.isfinite(w[m, valid[m]]).all(), f"valid checkpoints of {name} must be finite"
        assert np.isnan(loss[m, int(np.ceil(when[m])) - 1:]).all(), "no training loss is logged once diverged"


def test_metrics_of_a_diverged_run_mark_every_invalid_value(runs):
    with h5py.File(runs["diverging"] / "metrics.h5", "r") as f:
        assert f["status/diverged"][()].all()
        valid = f["checkpoints/valid"][()]
        assert not valid.all()
        for split in ("train", "test"):
            for name, ds in f[f"{split}/summary"].items():
                values = ds[()]
                assert np.isnan(values[~valid]).all(), f"{split}/summary/{name}: invalid checkpoints must be NaN"
                assert np.isfinite(values[valid]).all(), f"{split}/summary/{name}: valid checkpoints are data"
            assert (f[f"{split}/pred"][()][~valid] == -1).all()
            assert np.isnan(f[f"{split}/ce"][()][~valid]).all()
        assert np.isnan(f["weights/frobenius"][()][~valid]).all()
    with h5py.File(runs["good"] / "metrics.h5", "r") as f:
        assert not f["status/diverged"][()].any() and f["checkpoints/valid"][()].all()


def test_an_invalid_checkpoint_cannot_be_rebuilt_as_a_network(runs):
    with h5py.File(runs["diverging"] / "checkpoints.h5", "r") as f:
        valid = f["checkpoints/valid"][()]
    last = valid.shape[1] - 1
    assert not valid[0, last]
    with pytest.raises(ValueError, match="checkpoint .* is invalid"):
        load_checkpoint_model(runs["diverging"] / "checkpoints.h5", DIVERGING["seeds"][0], last)
    net = load_checkpoint_model(runs["diverging"] / "checkpoints.h5", DIVERGING["seeds"][0], 0)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_the_lr_probe_reports_divergence_and_chooses_a_rate_that_trains(runs):
    from lossatlas.lr_probe import choose_learning_rate

    spec = tiny_spec(seeds=[0], optimizer={"name": "sgd", "lr": "probe", "momentum": 0.9})
    table = probe_learning_rates(spec, runs["digits"], [1e4, 0.05], epochs=1)
    by_lr = {row["lr"]: row for row in table}
    assert by_lr[1e4]["diverged"] and np.isnan(by_lr[1e4]["final_loss"])
    assert not by_lr[0.05]["diverged"] and np.isfinite(by_lr[0.05]["final_loss"])
    assert choose_learning_rate(table) == 0.05
    with pytest.raises(ValueError, match="every candidate rate diverged"):
        choose_learning_rate([row for row in table if row["diverged"]])


def test_universality_curves_leave_out_invalid_checkpoints(runs):
    from lossatlas.analysis.universality import load_curves

    paths = [str(runs["good"] / "metrics.h5"), str(runs["diverging"] / "metrics.h5")]
    meta = [{"recipe": "r", "dataset": "digits", "arch": "mlp16", "optimizer": o, "loss": "ce"}
            for o in ("good", "diverging")]
    curves = load_curves(paths, meta, shallow=[], widths={})
    numeric = curves.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(dtype=float)).all(), "NaN from a diverged member was taken as data"
    with h5py.File(runs["diverging"] / "metrics.h5", "r") as f:
        valid = f["checkpoints/valid"][()]
    rows = curves[curves.optimizer == "diverging"]
    for m, seed in enumerate(DIVERGING["seeds"]):
        kept = sorted(set(rows[(rows.seed == seed) & (rows.split == "train")].checkpoint))
        assert kept == list(np.flatnonzero(valid[m]))
    with h5py.File(runs["good"] / "metrics.h5", "r") as f:
        n_checkpoints = f["checkpoints/valid"].shape[1]
    assert len(curves[(curves.optimizer == "good") & (curves.split == "train")]) == 2 * n_checkpoints


def test_consistency_counts_only_valid_members(runs, tmp_path):
    from lossatlas.analysis.consistency_scores import ensemble_scores

    out = tmp_path / "scores.h5"
    ensemble_scores([runs["good"] / "metrics.h5", runs["diverging"] / "metrics.h5"], out, label="mixed")
    with h5py.File(runs["diverging"] / "metrics.h5", "r") as f:
        valid_diverging = f["checkpoints/valid"][()]
    with h5py.File(out, "r") as f:
        n_valid = f["n_valid"][()]
        np.testing.assert_array_equal(n_valid, 2 + valid_diverging.sum(axis=0))
        for split in ("train", "test"):
            assert np.isfinite(f[f"{split}/accuracy"][()]).all()
            consistency = f[f"{split}/consistency"][()]
            assert np.isfinite(consistency).all() and (consistency >= 0).all() and (consistency <= 1).all()
