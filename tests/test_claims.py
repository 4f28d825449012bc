"""The claims evaluator on fixture analysis outputs: holds / does not hold in both directions, not run."""

from __future__ import annotations

import json

import pytest
import yaml

from lossatlas.claims import evaluate_claims, load_registry, render_markdown, tally


@pytest.fixture
def fixture_root(tmp_path):
    analysis = tmp_path / "results" / "analysis" / "demo"
    analysis.mkdir(parents=True)
    (analysis / "fits.json").write_text(json.dumps({"normalized": {"r2": 0.99}, "raw": {"r2": 0.05},
                                                    "bimodality": {"linear": 0.06, "nonlinear": 0.2}}))
    (analysis / "acc.csv").write_text("model,accuracy\nsvm,0.48\nknn,0.36\ncnn,0.56\n")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "universality.yaml").write_text(yaml.safe_dump({"optimizers": {"sgdm": {"momentum": 0.9}}}))
    return tmp_path


def registry(tmp_path, entries):
    path = tmp_path / "claims.yaml"
    base = {"paper": "universality", "where": "Fig 0", "claim": "c", "paper_value": "v"}
    path.write_text(yaml.safe_dump([{**base, **e} for e in entries]))
    return path


def outcomes(root, entries):
    rows = evaluate_claims(root, root, registry(root, entries))
    return {r.id: r for r in rows}


FITS = "results/analysis/demo/fits.json"
ACC = "results/analysis/demo/acc.csv"


def test_compare_holds_and_fails_in_both_directions(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "gt", "check": {"kind": "compare", "op": ">", "left": {"file": FITS, "key": "normalized.r2"},
                               "right": {"file": FITS, "key": "raw.r2"}}},
        {"id": "lt", "check": {"kind": "compare", "op": "<", "left": {"file": FITS, "key": "normalized.r2"},
                               "right": {"file": FITS, "key": "raw.r2"}}},
    ])
    assert rows["gt"].outcome == "holds" and rows["lt"].outcome == "does not hold"


def test_value_expectations(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "near", "check": {"kind": "value", "value": {"file": FITS, "key": "bimodality.linear"},
                                 "expect": {"approx": 0.055, "abs": 0.01}}},
        {"id": "far", "check": {"kind": "value", "value": {"file": FITS, "key": "bimodality.nonlinear"},
                                "expect": {"approx": 0.5, "rel": 0.1}}},
        {"id": "csv", "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy",
                                                           "where": {"model": "svm"}},
                                "expect": {"op": "<", "than": 0.56}}},
        {"id": "plain", "check": {"kind": "value", "value": {"file": FITS, "key": "raw.r2"}}},
    ])
    assert rows["near"].outcome == "holds" and rows["far"].outcome == "does not hold"
    assert rows["csv"].outcome == "holds" and rows["csv"].ours == "0.48"
    assert rows["plain"].outcome == "reported"


def test_all_and_config_checks(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "all_below", "check": {"kind": "all", "op": "<=", "left": {"file": ACC, "column": "accuracy"},
                                      "right": {"file": ACC, "column": "accuracy", "where": {"model": "cnn"}}}},
        {"id": "all_above", "check": {"kind": "all", "op": ">", "left": {"file": ACC, "column": "accuracy"},
                                      "than": 0.4}},
        {"id": "momentum", "check": {"kind": "config", "key": "optimizers.sgdm.momentum", "expect": 0.9}},
        {"id": "momentum_wrong", "check": {"kind": "config", "key": "optimizers.sgdm.momentum", "expect": 0.5}},
    ])
    assert rows["all_below"].outcome == "holds"
    assert rows["all_above"].outcome == "does not hold" and "2/3" in rows["all_above"].reason
    assert rows["momentum"].outcome == "holds" and rows["momentum_wrong"].outcome == "does not hold"


def test_missing_inputs_are_not_run_never_dropped(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "nofile", "check": {"kind": "value", "value": {"file": "results/analysis/x.json", "key": "a"}}},
        {"id": "nokey", "check": {"kind": "value", "value": {"file": FITS, "key": "absent.key"}}},
    ])
    assert rows["nofile"].outcome == "not run" and "results/analysis/x.json" in rows["nofile"].reason
    assert rows["nokey"].outcome == "not run" and "absent.key" in rows["nokey"].reason
    md = render_markdown(list(rows.values()), "default")
    assert "2 not run" in md and tally(list(rows.values()))["not run"] == 2


def test_registry_ids_unique(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump([{"id": "a"}, {"id": "a"}]))
    with pytest.raises(ValueError, match="duplicate"):
        load_registry(path)


def test_absent_values_are_not_run(fixture_root):
    demo = fixture_root / "results" / "analysis" / "demo"
    (demo / "gaps.json").write_text(json.dumps({"stat": None, "nan": float("nan")}))
    (demo / "gaps.csv").write_text("model,accuracy\nsvm,\n")
    gaps_json, gaps_csv = "results/analysis/demo/gaps.json", "results/analysis/demo/gaps.csv"
    rows = outcomes(fixture_root, [
        {"id": "null", "check": {"kind": "value", "value": {"file": gaps_json, "key": "stat"}}},
        {"id": "nan", "check": {"kind": "value", "value": {"file": gaps_json, "key": "nan"},
                                "expect": {"op": ">", "than": 0}}},
        {"id": "empty_cell", "check": {"kind": "value", "value": {"file": gaps_csv, "column": "accuracy"}}},
        {"id": "no_column", "check": {"kind": "value", "value": {"file": ACC, "column": "precision"}}},
    ])
    assert all(r.outcome == "not run" for r in rows.values()), {k: r.reason for k, r in rows.items()}
    assert "precision" in rows["no_column"].reason
