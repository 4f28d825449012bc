"""The loss_patterns search summaries keyed by paper figure (lossatlas/analysis/loss_patterns.py)."""

from __future__ import annotations

import json

import pytest

from lossatlas.analysis.loss_patterns import searches_by_figure


def _summary(name: str, gap: float, pearson: float, scale: float) -> dict:
    return {"search": name, "picture": "ring", "dataset": "d", "grid": 8, "final_scale": scale,
            "train_test_log_ce_pearson": pearson, "n_weights": 10, "train": {"acc_gap": gap + 0.01},
            "test": {"acc_gap": gap}}


def test_figures_map_to_their_searches_with_minima_over_lists(tmp_path):
    paths = {"a": _summary("a", 0.8, 0.99, 0.2), "b": _summary("b", 0.6, 0.95, 0.3),
             "c": _summary("c", 0.7, 0.90, 0.4)}
    figures = {"fig01a": "a", "fig02": "b", "fig05": ["a", "b", "c"], "fig06": ["c"]}
    out = tmp_path / "by_figure.json"
    searches_by_figure(figures, paths, out)
    res = json.loads(out.read_text())
    assert res["fig01a"]["search"] == "a" and res["fig01a"]["test"]["acc_gap"] == 0.8
    assert res["fig01a"]["final_scale"] == 0.2 and "n_weights" not in res["fig01a"]
    assert res["fig02"]["train_test_log_ce_pearson"] == 0.95
    assert [e["search"] for e in res["fig05"]["searches"]] == ["a", "b", "c"]
    assert res["fig05"]["test_acc_gap_min"] == 0.6 and res["fig05"]["train_test_log_ce_pearson_min"] == 0.90
    assert res["fig06"]["test_acc_gap_min"] == 0.7


def test_a_figure_naming_a_search_without_summary_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="'zz'"):
        searches_by_figure({"fig01a": "zz"}, {}, tmp_path / "x.json")


def test_a_summary_without_the_numbers_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        searches_by_figure({"fig01a": "a"}, {"a": {"search": "a", "test": {"acc_gap": 0.5}}}, tmp_path / "x.json")
