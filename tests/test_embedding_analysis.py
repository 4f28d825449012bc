"""The embedding study's experiments and figures on tiny settings (lossatlas.analysis / figures.embedding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from threadpoolctl import threadpool_limits

from lossatlas.analysis import embedding as analysis
from lossatlas.config import REPO_ROOT, apply_defaults
from lossatlas.datasets import build_source_dataset
from lossatlas.figures import embedding as figures

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _defaults(figure: str) -> dict:
    """A study section filled with the schema's defaults (the config.yaml values are not needed)."""
    config = {"studies": {"embedding": {figure: {}}}}
    apply_defaults(config)
    return config["studies"]["embedding"][figure]


def _inputs(directory, figure: str, experiment_arrays) -> dict:
    """What rule embedding_figure passes: the figure's arrays and its experiment's summary."""
    return {"data": str(directory / f"{figure}.npz"), "summary": str(experiment_arrays.with_suffix(".json"))}


def test_cluster_critical_points_by_hand():
    losses = np.array([1.0, 1.01, 0.5, 1.0])
    outputs = np.array([[0.0, 1.0], [0.0, 1.02], [0.0, 1.0], [1.0, 1.0]])
    norms = np.array([3e-4, 1e-4, 2e-4, 5e-4])
    clusters = analysis.cluster_critical_points(losses, outputs, norms, loss_rel_tol=0.05, output_tol=0.05)
    # opened by the smallest gradient norm: #1 takes #0; #2 differs in loss; #3 differs in output
    assert clusters == [[1, 0], [2], [3]]


def test_agreement_matrix_by_hand():
    m = analysis.agreement_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert np.trace(m) / m.sum() == pytest.approx(0.75)


def test_schema_defaults_keep_fig03b_its_own():
    assert _defaults("fig03b")["dataset"] == "emb_iris"
    assert _defaults("fig03b")["activation"] == "sigmoid"
    assert _defaults("fig03a")["activation"] == "tanh"


def test_fig03_spectra_and_figure(tmp_path):
    """Fig 3a at default settings: the width-2 minimum gains one zero eigenvalue per embedding step."""
    data = tmp_path / "fit1d.h5"
    spec = yaml.safe_load(open(REPO_ROOT / "config.yaml"))["datasets"]["emb_fit1d_dense"]
    build_source_dataset("emb_fit1d_dense", spec, str(data))
    out = tmp_path / "fig03a.npz"
    summary = analysis.run_experiment("fig03a", _defaults("fig03a"), str(data), str(out))
    levels = summary["levels"]
    assert [v["width"] for v in levels] == [2, 3, 4]
    assert summary["critical_point"]["grad_norm"] < 1e-12
    assert [v["n_zero"] for v in levels] == [0, 1, 2]
    assert levels[0]["n_negative"] == 0  # a strict minimum at width 2
    assert all(v["max_output_change"] < 1e-14 for v in levels)
    assert json.loads(out.with_suffix(".json").read_text())["levels"][2]["n_zero"] == 2
    name = "fig03a_hessian_spectrum_1d"
    analysis.analyse({"fig03a": str(out)}, {name: str(tmp_path / f"{name}.npz")})
    spectrum = np.load(tmp_path / "fig03a_hessian_spectrum_1d.npz")["eigenvalues_w4"]
    assert np.all(np.diff(np.abs(spectrum)) <= 0)  # ordered by |lambda|, largest first
    png = tmp_path / "fig03a.png"
    figures.draw("fig03a_hessian_spectrum_1d", _inputs(tmp_path, "fig03a_hessian_spectrum_1d", out), str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fig05_reduction_on_digits(tmp_path):
    data = tmp_path / "digits.h5"
    build_source_dataset("emb_digits", {"source": "digits", "n_train": 1000, "flatten": True}, str(data))
    cfg = {**_defaults("fig05"), "width": 30, "epochs": 500, "reduced_epochs": 100}
    out = tmp_path / "fig05.npz"
    summary = analysis.run_experiment("fig05", cfg, str(data), str(out))
    assert summary["n_test"] == 797
    assert 1 <= summary["n_groups"] <= 30 - summary["n_neglected"]
    arrays = np.load(out)
    assert arrays["agreement"].sum() == 797
    assert arrays["similarity"].shape == (30 - summary["n_neglected"],) * 2
    # the reduced net starts at (nearly) the blue dot's loss: the groups are condensed
    assert abs(summary["loss_reduced_at_start"] - summary["blue_point"]["loss"]) < 0.01 * summary["blue_point"]["loss"]
    panels = ["fig05a_loss", "fig05b_similarity", "fig05c_reduced_loss", "fig05d_agreement"]
    analysis.analyse({"fig05": str(out)}, {name: str(tmp_path / f"{name}.npz") for name in panels})
    frequency = np.load(tmp_path / "fig05d_agreement.npz")["frequency"]
    assert frequency.sum() == pytest.approx(1.0) and np.trace(frequency) == pytest.approx(summary["agreement_rate"])
    edges = np.load(tmp_path / "fig05b_similarity.npz")["group_edges"]
    assert len(edges) == summary["n_groups"] - 1
    for name in panels:
        figures.draw(name, _inputs(tmp_path, name, out), str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_analysis_writes_arrays_for_every_figure():
    assert list(analysis.FIGURE_DATA) == list(figures.FIGURES)
    assert {experiment for experiment, _ in analysis.FIGURE_DATA.values()} == set(analysis.EXPERIMENTS)


def test_fig04_counts_and_verified_points(tmp_path):
    """Fig 4 on 4 trials of widths 1 and 2: the width-1 minimum is found, polished to a verified critical
    point and embedded into width 2 with Theorem 2's degeneracy; ``verified`` follows verified_grad_norm."""
    data = tmp_path / "fit1d.h5"
    spec = yaml.safe_load(open(REPO_ROOT / "config.yaml"))["datasets"]["emb_fit1d_dense"]
    build_source_dataset("emb_fit1d_dense", spec, str(data))
    cfg = {**_defaults("fig04"), "widths": [1, 2], "trials": 4, "epochs": 10000, "snapshot_every": 1000}
    summary = analysis.run_experiment("fig04", cfg, str(data), str(tmp_path / "fig04.npz"))
    first = summary["critical_points"][0]
    assert summary["n_per_source_width"]["1"] == 1
    assert first["source_width"] == 1 and first["verified"] and first["grad_norm"] < 1e-8
    assert first["degeneracy"] >= first["theorem2_lower_bound"] == 1
    assert summary["n_verified_per_source_width"]["1"] == 1
    strict = analysis.run_experiment("fig04", {**cfg, "verified_grad_norm": 1e-300}, str(data),
                                     str(tmp_path / "strict.npz"))
    assert strict["n_per_source_width"] == summary["n_per_source_width"]  # the counts do not depend on it
    assert strict["n_verified_per_source_width"] == {"1": 0, "2": 0}
    name = "fig04_critical_point_diagram"
    analysis.analyse({"fig04": str(tmp_path / "strict.npz")}, {name: str(tmp_path / f"{name}.npz")})
    png = tmp_path / "fig04.png"
    figures.draw(name, _inputs(tmp_path, name, tmp_path / "strict.npz"), str(png))  # titles say "not verified"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
