"""normalized_loss end to end on a tiny run: engine checkpoints -> post-processing -> fit table -> every figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lossatlas.analysis import normalized_loss as nl

torch.set_num_threads(1)

NORMS = [{"name": "fro", "p": 2, "divisor": 1.0}, {"name": "l1", "p": 1, "divisor": 100.0}]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny trained blocks: a BN MLP on digits (pretrained on corrupted labels) and one on random labels."""
    from lossatlas.datasets import build_source_dataset, derive_dataset
    from lossatlas.training import train_run

    d = tmp_path_factory.mktemp("nl")
    specs = {"digits": {"source": "digits", "test_fraction": 0.3333, "standardize": True, "seed": 0},
             "q50": {"derive_from": "digits", "derivation": "corrupt_labels", "fraction": 0.5, "seed": 1},
             "rl": {"derive_from": "digits", "derivation": "random_labels", "splits": ["train", "test"], "seed": 1}}
    build_source_dataset("digits", specs["digits"], str(d / "digits.h5"))
    for name in ("q50", "rl"):
        derive_dataset(name, specs[name], str(d / "digits.h5"), str(d / f"{name}.h5"))
    base = dict(architecture={"name": "bn", "model": "mlp", "hidden": [16], "batchnorm": True},
                optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9}, loss="ce", seeds=[0, 1], epochs=4,
                batch_size=128, dtype="float32", dropout=True, init={"scheme": "default"},
                checkpoints={"every": 1}, stop_at_train_loss=None, eval={}, vectorize="auto", device="cpu")
    runs = []
    for name, dataset, pretrain in (("pre", "digits", {"dataset": "q50", "epochs": 1}), ("rl", "rl", None)):
        spec = {**base, "dataset": dataset, "pretrain": pretrain}
        ck = d / f"{name}.ckpt.h5"
        train_run(spec, str(d / f"{dataset}.h5"), str(ck), str(d / f"work_{name}"),
                  pretrain_path=str(d / "q50.h5") if pretrain else None)
        names = [dataset] + (["q50"] if pretrain else [])
        runs.append({"recipe": name, "dataset": dataset, "arch": "bn", "spec": spec, "checkpoints": str(ck),
                     "data": str(d / f"{dataset}.h5"), "dataset_specs": {n: specs[n] for n in names}})
    return d, runs


@pytest.mark.slow
def test_postprocess_fit_table_and_figures(tiny_runs, tmp_path):
    d, runs = tiny_runs
    settings = {"selection": "reference", "reference_train_loss": 0.3, "stop_train_loss": 0.0044,
                "label_by": "corruption", "norms": NORMS, "first_bias_in_norm": True, "device": "cpu"}
    points, logits = tmp_path / "points.csv", tmp_path / "max_logits.h5"
    nl.postprocess_experiment("bn_corruption", runs, settings, points, logits)
    pts = pd.read_csv(points)
    assert len(pts) == 4 and set(pts["kind"]) == {"natural", "RL"}
    assert pts.loc[pts["kind"] == "natural", "q"].tolist() == [0.5, 0.5]
    assert (pts["epoch"] >= 1).all()  # never the state after pretraining
    for s in ("train", "test"):
        np.testing.assert_array_equal(pts[f"{s}_err"], pts[f"{s}_err_fro"])
        np.testing.assert_array_equal(pts[f"{s}_err"], pts[f"{s}_err_l1"])
        # Normalised outputs are small, so the normalised losses sit just below ln K (App. F).
        assert ((pts[f"{s}_ce_fro"] > 1.5) & (pts[f"{s}_ce_fro"] < math.log(10) + 0.01)).all()
    # 'final' picks the last epoch.
    nl.postprocess_experiment("x", runs, {**settings, "selection": "final"}, tmp_path / "p2.csv", tmp_path / "l2.h5")
    assert (pd.read_csv(tmp_path / "p2.csv")["epoch"] == 4).all()

    from lossatlas.figures import normalized_loss as figs

    experiments = ["bn_corruption", "bn_init", "bn_corruption_many_classes", "bn_init_many_classes",
                   "conv3_corruption", "conv3_natural", "conv3_stop", "conv3_wide_init"]
    out = {role: str(tmp_path / name) for role, name in (
        ("fits", "fits.csv"), ("correlations", "corr.csv"), ("max_logits", "ml.csv"),
        ("max_logit_values", "ml.npz"), ("loss_differences", "diff.json"), ("psi_overlay", "psi.csv"))}
    nl.analyse({e: str(points) for e in experiments}, {e: str(logits) for e in experiments}, out)
    table = pd.read_csv(out["fits"])
    assert len(table) == len(nl.FIGURE_FITS)
    row = table[(table["figure"] == "fig03") & (table["panel"] == "left (normalised)")].iloc[0]
    nat = pts[pts["kind"] == "natural"]
    ref = nl.ols_fit(nat["train_ce_fro"], nat["test_ce_fro"])
    assert row["slope"] == pytest.approx(ref["slope"], rel=1e-5) and row["n"] == 2
    ml = pd.read_csv(out["max_logits"]).set_index("which")
    # f = ∏ρ · f̃ exactly, so the max logits (and their means) differ by the product of norms (App. F).
    assert ml.loc["unnormalised", "mean"] / ml.loc["normalised", "mean"] == pytest.approx(
        ml.loc["normalised", "product_fro"], rel=1e-6)
    values = np.load(out["max_logit_values"])
    assert values["normalised"].mean() == pytest.approx(ml.loc["normalised", "mean"], rel=1e-6)
    # the ψ overlay runs from the points' smallest normalised CE to their largest, between those points' errors
    psi = pd.read_csv(out["psi_overlay"])
    psi = psi[psi["experiment"] == "bn_corruption"]
    lo, hi = pts["train_ce_fro"].idxmin(), pts["train_ce_fro"].idxmax()
    assert psi["x"].iloc[0] == pytest.approx(pts.loc[lo, "train_ce_fro"])
    assert psi["y"].iloc[-1] == pytest.approx(pts.loc[hi, "test_err_fro"])
    inputs = {"points": str(points), **out}
    assert len(figs.FIGURES) == 20
    for name in figs.FIGURES:
        png = tmp_path / f"{name}.png"
        figs.draw(name, inputs, str(png))
        assert png.stat().st_size > 10_000, name
