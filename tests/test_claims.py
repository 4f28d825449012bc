"""The claims evaluator on fixture analysis outputs: every check kind holds and fails, scales, settings, not run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from lossatlas.claims import (
    evaluate_claims,
    headline,
    load_registry,
    render_markdown,
    render_rst,
    spectrum_counts,
    tally,
)


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
    base = {"paper": "universality", "where": "Fig 0", "claim": "c", "paper_value": "v", "kind": "finding"}
    path.write_text(yaml.safe_dump([{**base, **e} for e in entries]))
    return path


def outcomes(root, entries, scale="default"):
    rows = evaluate_claims(root, root, registry(root, entries), scale=scale)
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
        {"id": "momentum", "kind": "setting", "check": {"kind": "config", "key": "optimizers.sgdm.momentum",
                                                         "expect": 0.9}},
        {"id": "momentum_wrong", "kind": "setting", "check": {"kind": "config", "key": "optimizers.sgdm.momentum",
                                                               "expect": 0.5}},
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
    assert "2 not run" in md and tally(list(rows.values()))["finding"]["not run"] == 2


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


def test_correlation_holds_fails_and_is_reported_when_underpowered(fixture_root):
    demo = fixture_root / "results" / "analysis" / "demo"
    rng = np.random.default_rng(1)
    x = np.arange(20.0)
    rows = ["x,rising,falling,noise"] + [f"{a},{a + 0.1 * rng.normal()},{-a},{rng.normal()}" for a in x]
    (demo / "pts.csv").write_text("\n".join(rows) + "\n")
    pts = "results/analysis/demo/pts.csv"

    def corr(cid, y, sign="positive", method="spearman"):
        return {"id": cid, "check": {"kind": "correlation", "method": method, "sign": sign, "permutations": 999,
                                     "x": {"file": pts, "column": "x"}, "y": {"file": pts, "column": y}}}

    rows = outcomes(fixture_root, [corr("up", "rising"), corr("down", "falling"), corr("noise", "noise"),
                                   corr("down_claimed", "falling", sign="negative", method="pearson")])
    assert rows["up"].outcome == "holds" and rows["down_claimed"].outcome == "holds"
    assert rows["down"].outcome == "does not hold" and "n = 20" in rows["down"].reason
    assert rows["noise"].outcome == "reported" and "underpowered" in rows["noise"].reason
    (demo / "two.csv").write_text("x,y\n0,1\n1,2\n")  # a tiny study's two points: reported, not an error
    two = {"id": "two", "check": {"kind": "correlation", "method": "spearman", "sign": "positive",
                                  "x": {"file": "results/analysis/demo/two.csv", "column": "x"},
                                  "y": {"file": "results/analysis/demo/two.csv", "column": "y"}}}
    assert outcomes(fixture_root, [two])["two"].outcome == "reported"


def test_spectrum_counts_use_the_widest_gap():
    # Two round-off zeros, one small real curvature (9.4e-11 sits 5.8 decades above them) and two real negatives
    # smaller than a relative threshold of 1e-4 × the largest eigenvalue would keep.
    lam = [-2.1e-4, -1.9e-4, -2.6e-17, 2.7e-17, 9.4e-11, 1.5e-5, 5.2]
    assert spectrum_counts(lam) == {"zero": 2, "negative": 2}
    # No gap of 4 decades: nothing is zero, even the smallest value.
    assert spectrum_counts([1e-8, 2e-7, 1e-6, 1e-3, 1.0]) == {"zero": 0, "negative": 0}
    # A wide gap between real curvatures is no zero cluster.
    assert spectrum_counts([-1e-5, 1e-4, 10.0]) == {"zero": 0, "negative": 1}


def test_spectrum_selector_can_fail(fixture_root):
    demo = fixture_root / "results" / "analysis" / "demo"
    np.savez(demo / "spec.npz", w4=np.array([-2.1e-4, -1.9e-4, -2.6e-17, 2.7e-17, 9.4e-11, 1.5e-5, 5.2]),
             w2=np.array([3e-5, 2e-4, 2.6]))
    spec = "results/analysis/demo/spec.npz"
    rows = outcomes(fixture_root, [
        {"id": "two_zero", "check": {"kind": "value", "value": {"file": spec, "array": "w4", "count": "zero"},
                                     "expect": {"approx": 2, "abs": 0}}},
        {"id": "three_zero", "check": {"kind": "value", "value": {"file": spec, "array": "w4", "count": "zero"},
                                       "expect": {"approx": 3, "abs": 0}}},
        {"id": "more_neg", "check": {"kind": "compare", "op": ">",
                                     "left": {"file": spec, "array": "w4", "count": "negative"},
                                     "right": {"file": spec, "array": "w2", "count": "negative"}}},
        {"id": "fewer_neg", "check": {"kind": "compare", "op": "<",
                                      "left": {"file": spec, "array": "w4", "count": "negative"},
                                      "right": {"file": spec, "array": "w2", "count": "negative"}}},
        {"id": "no_array", "check": {"kind": "value", "value": {"file": spec, "array": "w9", "count": "zero"}}},
    ])
    assert rows["two_zero"].outcome == "holds" and rows["three_zero"].outcome == "does not hold"
    assert rows["more_neg"].outcome == "holds" and rows["fewer_neg"].outcome == "does not hold"
    assert rows["no_array"].outcome == "not run"


def test_one_sided_value_fails_only_on_its_side(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "high_enough", "check": {"kind": "value", "value": {"file": FITS, "key": "normalized.r2"},
                                        "expect": {"op": ">=", "than": 0.95}}},
        {"id": "too_low", "check": {"kind": "value", "value": {"file": FITS, "key": "raw.r2"},
                                    "expect": {"op": ">=", "than": 0.95}}},
    ])
    assert rows["high_enough"].outcome == "holds" and rows["too_low"].outcome == "does not hold"


def test_paper_scale_findings_are_judged_only_at_paper_scale(fixture_root):
    entries = [{"id": "svm", "scale": "paper", "paper_value": "0.48",
                "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy", "where": {"model": "knn"}},
                          "expect": {"approx": 0.48, "abs": 0.05}}}]
    small = outcomes(fixture_root, entries)["svm"]
    assert small.outcome == "paper scale only" and "0.36" in small.reason and "0.48" in small.reason
    full = outcomes(fixture_root, entries, scale="paper (configs/consistency.yaml)")["svm"]
    assert full.outcome == "does not hold"
    assert outcomes(fixture_root, entries, scale="medium")["svm"].outcome == "paper scale only"


def test_medium_scale_findings_are_judged_at_medium_and_paper_scale(fixture_root):
    entries = [{"id": "knn", "scale": "medium", "paper_value": "0.48",
                "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy", "where": {"model": "knn"}},
                          "expect": {"op": ">", "than": 0.4}}}]
    small = outcomes(fixture_root, entries)["knn"]
    assert small.outcome == "medium scale only" and "0.36" in small.reason and "more training" in small.reason
    for scale in ("medium (configs/medium.yaml)", "paper"):
        assert outcomes(fixture_root, entries, scale=scale)["knn"].outcome == "does not hold"
    assert headline([small], "default") == ("findings judged at default scale: 0 of 0 hold (1 medium scale only, "
                                            "0 paper scale only, 0 reported); settings: 0 of 0 match the papers.")


def test_why_is_filled_from_the_run_only_when_a_finding_fails(fixture_root):
    why = "SVM reaches only {ours}"
    rows = outcomes(fixture_root, [
        {"id": "fails", "why": why, "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy",
                                                                        "where": {"model": "knn"}},
                                             "expect": {"op": ">", "than": 0.4}}},
        {"id": "holds", "why": why, "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy",
                                                                        "where": {"model": "svm"}},
                                             "expect": {"op": ">", "than": 0.4}}},
    ])
    assert rows["fails"].why == "SVM reaches only 0.36" and rows["holds"].why == ""
    assert "SVM reaches only 0.36" in render_markdown(list(rows.values()), "default")
    assert "SVM reaches only 0.36" in render_rst(list(rows.values()), "default")


def test_settings_are_never_counted_among_findings(fixture_root):
    rows = list(outcomes(fixture_root, [
        {"id": "momentum", "kind": "setting", "check": {"kind": "config", "key": "optimizers.sgdm.momentum",
                                                         "expect": 0.9}},
        {"id": "gt", "check": {"kind": "compare", "op": ">", "left": {"file": FITS, "key": "normalized.r2"},
                               "right": {"file": FITS, "key": "raw.r2"}}},
        {"id": "lt", "check": {"kind": "compare", "op": "<", "left": {"file": FITS, "key": "normalized.r2"},
                               "right": {"file": FITS, "key": "raw.r2"}}},
        {"id": "paper", "scale": "paper", "check": {"kind": "value", "value": {"file": FITS, "key": "raw.r2"},
                                                    "expect": {"op": ">", "than": 0.5}}},
        {"id": "plain", "check": {"kind": "value", "value": {"file": FITS, "key": "raw.r2"}}},
    ]).values())
    counts = tally(rows)
    assert counts["setting"]["holds"] == 1 and counts["finding"]["holds"] == 1
    assert headline(rows, "default") == ("findings judged at default scale: 1 of 2 hold (1 paper scale only, "
                                         "1 reported); settings: 1 of 1 match the papers.")
    md = render_markdown(rows, "default")
    assert md.index("## Findings") < md.index("| c | any |") < md.index("## Settings")


def test_order_and_reduce(fixture_root):
    rows = outcomes(fixture_root, [
        {"id": "chain", "check": {"kind": "order", "names": ["knn", "svm", "cnn"],
                                  "values": [{"file": ACC, "column": "accuracy", "where": {"model": "knn"}}, 0.4,
                                             {"file": ACC, "column": "accuracy", "where": {"model": "cnn"}}]}},
        {"id": "broken", "check": {"kind": "order", "values": [{"file": ACC, "column": "accuracy",
                                                                "where": {"model": "cnn"}}, 0.5]}},
        {"id": "mean", "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy", "reduce": "mean"},
                                 "expect": {"op": "<", "than": 0.5}}},
        {"id": "max", "check": {"kind": "value", "value": {"file": ACC, "column": "accuracy", "reduce": "max"},
                                "expect": {"op": "<", "than": 0.5}}},
    ])
    assert rows["chain"].outcome == "holds" and rows["broken"].outcome == "does not hold"
    assert rows["mean"].outcome == "holds" and rows["max"].outcome == "does not hold"


def test_h5_selectors_and_requires(fixture_root):
    import h5py

    demo = fixture_root / "results" / "analysis" / "demo"
    with h5py.File(demo / "scores.h5", "w") as f:
        f["train/consistency"] = np.array([[0.0, 0.0, 0.1], [0.8, 0.8, 0.2], [1.0, 1.0, 1.0]])
        f["phase"] = np.array([0.0])
    h5 = "results/analysis/demo/scores.h5"
    mid = {"file": h5, "dataset": "train/consistency", "row": "middle", "stat": "mode"}
    rows = outcomes(fixture_root, [
        {"id": "mode", "check": {"kind": "value", "value": mid, "expect": {"approx": 0.8, "abs": 0.05}}},
        {"id": "mode_far", "check": {"kind": "value", "value": mid, "expect": {"approx": 0.2, "abs": 0.05}}},
        {"id": "vacuous", "check": {"kind": "value", "value": {"file": h5, "dataset": "phase", "reduce": "max"},
                                    "expect": {"op": "<=", "than": 10},
                                    "requires": {"kind": "value", "value": {"file": h5, "dataset": "phase",
                                                                            "reduce": "max"},
                                                 "expect": {"op": ">", "than": 0}}}},
    ])
    assert rows["mode"].outcome == "holds" and rows["mode"].ours == "0.8"
    assert rows["mode_far"].outcome == "does not hold"
    assert rows["vacuous"].outcome == "does not hold" and "precondition" in rows["vacuous"].reason


def test_all_elementwise_and_majority(fixture_root):
    demo = fixture_root / "results" / "analysis" / "demo"
    (demo / "panels.csv").write_text("panel,group,D\na,fc1,0.1\na,deep,0.2\nb,fc1,0.3\nb,deep,0.2\n"
                                     "c,fc1,0.4\nc,deep,0.2\n")
    panels = "results/analysis/demo/panels.csv"
    fc1 = {"file": panels, "column": "D", "where": {"group": "fc1"}}
    deep = {"file": panels, "column": "D", "where": {"group": "deep"}}
    rows = outcomes(fixture_root, [
        {"id": "most", "check": {"kind": "all", "op": ">", "left": fc1, "right": deep, "majority": True}},
        {"id": "every", "check": {"kind": "all", "op": ">", "left": fc1, "right": deep}},
        {"id": "most_below", "check": {"kind": "all", "op": "<", "left": fc1, "right": deep, "majority": True}},
    ])
    assert rows["most"].outcome == "holds" and "2/3" in rows["most"].reason
    assert rows["every"].outcome == "does not hold" and rows["most_below"].outcome == "does not hold"


def test_compare_within_a_tolerance(fixture_root):
    def near(cid, tol):
        return {"id": cid, "check": {"kind": "compare", "op": "≈", "tol": tol,
                                     "left": {"file": FITS, "key": "bimodality.linear"},
                                     "right": {"file": FITS, "key": "bimodality.nonlinear"}}}

    rows = outcomes(fixture_root, [near("loose", 0.2), near("tight", 0.1)])
    assert rows["loose"].outcome == "holds" and rows["tight"].outcome == "does not hold"
