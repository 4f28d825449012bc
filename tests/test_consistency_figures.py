"""The consistency analysis (the table and every figure's data) and every figure drawn from it, on synthetic
ensembles shaped like metrics.h5 (contract §3)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lossatlas.analysis import consistency as cons
from lossatlas.analysis.consistency_classifiers import read_classifiers
from lossatlas.analysis.consistency_index import read_ids, write_ids
from lossatlas.analysis.consistency_scores import ensemble_scores, nearest_checkpoint, read_scores
from lossatlas.figure_data import read_figure_data
from lossatlas.figures import consistency as figs

EPOCHS = np.array([0, 0.25, 0.5, 0.75] + list(range(1, 13)), dtype=np.float64)
K = 5


def _ensemble(path, n_members, difficulty, y, ids, rate, seed):
    """Members learn example x once epoch·rate passes its difficulty (with member noise); wrong answers
    favour one confusion label per example, so consensus exceeds consistency."""
    rng = np.random.default_rng(seed)
    n = len(y)
    confusion = (y + 1 + rng.integers(0, K - 1, n)) % K
    pred = np.empty((n_members, len(EPOCHS), n), dtype=np.int16)
    for m in range(n_members):
        jitter = rng.normal(0, 0.08, n)
        for c, e in enumerate(EPOCHS):
            p_correct = 1 / (1 + np.exp(-12 * (e * rate / EPOCHS[-1] - difficulty - jitter)))
            if e == 0:
                p_correct = np.full(n, 1 / K)
            ok = rng.random(n) < p_correct
            wrong = np.where(rng.random(n) < 0.7, confusion, rng.integers(0, K, n))
            wrong = np.where(wrong == y, (y + 1) % K, wrong)
            pred[m, c] = np.where(ok, y, wrong)
    return pred


def _write(path, preds, ys, ids, seeds):
    with h5py.File(path, "w") as f:
        f.attrs["num_classes"] = K
        f.attrs["spec"] = "{}"
        f["members"] = np.asarray(seeds)
        f["checkpoints/epoch"] = EPOCHS
        f["checkpoints/valid"] = np.ones((len(seeds), len(EPOCHS)), dtype=bool)
        for s in ("train", "test"):
            f[f"{s}/y"] = ys[s]
            f[f"{s}/id"] = ids[s]
            f[f"{s}/pred"] = preds[s]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cons")
    rng = np.random.default_rng(0)
    n_tr, n_te = 120, 60
    ys = {"train": rng.integers(0, K, n_tr), "test": rng.integers(0, K, n_te)}
    ids = {"train": np.arange(n_tr), "test": np.arange(n_tr, n_tr + n_te)}
    diff = {s: rng.beta(0.7, 0.7, len(ys[s])) for s in ys}
    scores = {}

    def make(role, n_members, rate, seed, ys_=ys, ids_=ids, diff_=diff):
        preds = {s: _ensemble(None, n_members, diff_[s], ys_[s], ids_[s], rate, seed + i)
                 for i, s in enumerate(("train", "test"))}
        _write(tmp / f"{role}.metrics.h5", preds, ys_, ids_, list(range(n_members)))
        ensemble_scores([tmp / f"{role}.metrics.h5"], tmp / f"{role}.h5", label=role)
        scores[role] = str(tmp / f"{role}.h5")

    make("main", 10, 1.2, 1)
    make("small", 8, 0.8, 3)
    make("linear", 10, 0.7, 5)
    make("random_labels", 10, 0.5, 7)
    make("hard_final", 10, 0.4, 9)
    make("random_subset", 10, 0.9, 11)
    moved = {"easiest": ids["train"][:4], "hardest": ids["train"][4:8], "random": ids["train"][8:12]}
    for which, mv in moved.items():
        ys_m = {"train": ys["train"][12:], "test": np.r_[ys["test"], ys["train"][[*mv]]]}
        ids_m = {"train": ids["train"][12:], "test": np.r_[ids["test"], mv]}
        moved_difficulty = {"easiest": 0.0, "hardest": 1.5, "random": 0.5}[which]
        d = {"train": diff["train"][12:], "test": np.r_[diff["test"], np.full(4, moved_difficulty)]}
        make(f"move_{which}", 6, 1.0, 13, ys_m, ids_m, d)
        write_ids(tmp / f"{which}.txt", mv)
    # classifiers.h5 written by hand in the documented layout (other_classifiers needs a dataset file)
    n_k = 8
    with h5py.File(tmp / "classifiers.h5", "w") as f:
        correct = rng.random((n_k, n_te)) < 0.6
        f["adaboost/correct"] = correct
        f["adaboost/accuracy"] = correct.mean(axis=1)
        f["adaboost/group_accuracy"] = rng.random((3, n_k))
        f["adaboost/difficulty"] = correct.mean(axis=0)
        f["adaboost/cnn_speed"] = rng.random(n_te)
        f["adaboost"].attrs.update(r=0.5, p=1e-3)
        names = ["svm", "knn"]
        for nm in names:
            f[f"clf/{nm}/correct"] = rng.random(n_te) < 0.5
            f[f"clf/{nm}"].attrs["accuracy"] = 0.5
        f["fig07/epochs"] = np.array([1.0, 12.0])
        f["fig07/frac_cnn_correct"] = rng.random((2, 2))
        f["fig07/frac_cnn_wrong"] = rng.random((2, 2))
        f.attrs["classifiers"] = json.dumps(names)
        f.attrs["cnn_test_accuracy"] = 0.6
    return tmp, scores


OPTIONS = {"phase_epochs": None, "fig02_epochs": [0, 1, 2, 5, -1], "speed_split": "test",
           "matched_accuracies": None, "match_tolerance": 0.03, "match_split": "test", "saturation": 0.04,
           "fig05_epochs": [1, -1], "fig08_epochs": None, "fig09_epochs": None}
MOVES = ("easiest", "hardest", "random")


@pytest.fixture(scope="module")
def analysed(study):
    """The analysis job on the synthetic study: summary rows and figure name -> its data file."""
    tmp, scores = study
    data = {name: str(tmp / "figure_data" / f"{name}.h5") for name in cons.FIGURE_DATA}
    cons.consistency_analysis(scores, tmp / "classifiers.h5", {w: str(tmp / f"{w}.txt") for w in MOVES},
                              [["main", "small"]], "main", OPTIONS, out_csv=tmp / "s.csv", out_md=tmp / "s.md",
                              out_json=tmp / "s.json", figure_data=data)
    return {r["quantity"]: r for r in json.loads((tmp / "s.json").read_text())}, data


def test_one_data_function_per_figure_file():
    assert list(cons.FIGURE_DATA) == list(figs.FIGURES)


@pytest.mark.parametrize("name", sorted(figs.FIGURES))
def test_figure_renders_from_its_data(study, analysed, name):
    tmp, _ = study
    out = tmp / f"{name}.png"
    figs.draw(name, {"data": analysed[1][name]}, str(out))
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_figure_is_an_error(study, analysed):
    with pytest.raises(ValueError, match="no figure named 'fig99_nothing'"):
        figs.draw("fig99_nothing", {"data": analysed[1]["fig01_consistency_phases"]}, "unused.png")


def test_phase_figures_show_the_chosen_phases_with_normalised_histograms(study, analysed):
    _, scores = study
    s = read_scores(scores["main"])
    idx = cons.phase_checkpoints(s["epoch"], s["train"]["consistency"], s["test"]["bimodality"])
    for name in ("fig01_consistency_phases", "fig03_consensus_phases"):
        d = read_figure_data(analysed[1][name])
        np.testing.assert_array_equal(d["epoch"], s["epoch"][idx])
        assert d["n"] == 10 and d["train"]["hist"].shape == (4, 11)
        np.testing.assert_allclose(d["test"]["hist"].sum(axis=1), 1.0)
    d = read_figure_data(analysed[1]["fig01_consistency_phases"])
    np.testing.assert_array_equal(d["test"]["bimodality"], s["test"]["bimodality"][idx])
    configured = cons.phases(s, {"phase_epochs": [0, 0.5, 5, -1]})
    assert configured == [0, 2, nearest_checkpoint(s["epoch"], 5), len(s["epoch"]) - 1]


def test_fig04cd_data_and_the_table_use_the_same_epoch_pairs(study, analysed):
    _, scores = study
    by, data = analysed
    a, b = read_scores(scores["main"]), read_scores(scores["small"])
    d = read_figure_data(data["fig04cd_matched_epochs_2d"])
    targets = cons.matched_targets(a["test"]["accuracy"], b["test"]["accuracy"], None)
    for k, (letter, target) in enumerate(zip("cd", targets, strict=True)):
        i, j = cons.matched_pair_near(a["test"]["accuracy"], b["test"]["accuracy"], target, 0.03)
        panel = d["panels"][str(k)]
        assert panel["epoch"] == [a["epoch"][i], b["epoch"][j]]
        assert panel["hist"].shape == (11, 9) and panel["hist"].sum() == pytest.approx(1.0)
        assert by[f"Fig 4{letter}: matched accuracy"]["ours"] == pytest.approx(sum(panel["accuracy"]) / 2, abs=1e-4)
    assert d["saturation"] == 0.04 and d["roles"] == ["main", "small"]


def test_stacked_and_subset_histograms_add_up(analysed):
    data = analysed[1]
    fig09 = read_figure_data(data["fig09_class_hierarchy"])
    for panel in fig09["panels"].values():
        assert panel["hist"].shape == (K, 11)
        assert panel["hist"].sum() == pytest.approx(1.0)  # every train example under its modal label
    fig05 = read_figure_data(data["fig05ab_linear_vs_nonlinear"])
    for panel in fig05["panels"].values():
        assert np.all(panel["hist_linear_correct"] <= panel["hist_all"] + 1e-12)
        assert panel["hist_linear_correct"].sum() * 60 == pytest.approx(panel["linear_correct"])


def test_robustness_data_is_the_accuracy_on_the_moved_examples(study, analysed):
    tmp, scores = study
    d = read_figure_data(analysed[1]["robustness_moves"])
    s = read_scores(scores["move_hardest"])
    np.testing.assert_allclose(d["hardest"]["accuracy"], cons.moved_accuracy(s, read_ids(tmp / "hardest.txt")))
    assert d["easiest"]["accuracy"][-1] > d["hardest"]["accuracy"][-1]


def test_classifier_figures_copy_the_classifier_file(study, analysed):
    tmp, _ = study
    c = read_classifiers(tmp / "classifiers.h5")
    d = read_figure_data(analysed[1]["fig07_other_classifiers"])
    assert d["names"] == ["svm", "knn"] and d["accuracy"] == [0.5, 0.5]
    np.testing.assert_array_equal(d["frac_right"], c["frac_right"])


def test_summary_table(study, analysed):
    tmp, _ = study
    by = analysed[0]
    assert by["moved easiest train->test: accuracy at the last epoch"]["ours"] > 0.9
    assert by["moved hardest train->test: accuracy at the last epoch"]["ours"] < 0.3
    r = by["speed of learning r, same architecture (two halves), test"]["ours"]
    assert r > 0.8  # the synthetic members share the per-example difficulty
    assert "| §5 | svm test accuracy | 0.5 |" in (tmp / "s.md").read_text()
    assert (tmp / "s.csv").read_text().splitlines()[0] == "section,quantity,ours,note"
    for quantity in ("last epoch where the mode of c^e is 0 (test)",
                     "Fig 9: classes with images at consistency 1 (first such epoch)",
                     "Fig 11: median epochs from consistency <= 0.3 to >= 0.9 (train)"):
        assert by[quantity]["ours"] is not None, quantity


def test_summary_table_reports_every_other_ensemble(study):
    tmp, scores = study
    sc = {role: read_scores(p) for role, p in scores.items()}
    # an extra named ensemble (paper scale: mnist, cifar10_vgg16, ...): here the small ensemble's file again
    rows = cons.summary_rows({**sc, "mnist": sc["small"]}, read_classifiers(tmp / "classifiers.h5"),
                             {w: read_ids(tmp / f"{w}.txt") for w in MOVES}, [["main", "small"]], OPTIONS)
    by = {r["quantity"]: r for r in rows}
    small = by["test accuracy, small ensemble (last epoch)"]["ours"]
    assert by["test accuracy, mnist ensemble (last epoch)"]["ours"] == small
    assert not any(q.startswith("test accuracy, move_") or q.startswith("test accuracy, hard_final") for q in by)


def test_phase_checkpoints_pick_the_phases(study):
    _, scores = study
    s = read_scores(scores["main"])
    init, begin, bimodal, last = cons.phase_checkpoints(s["epoch"], s["train"]["consistency"],
                                                        s["test"]["bimodality"])
    assert s["epoch"][init] == 0 and last == len(s["epoch"]) - 1
    assert 0 < s["epoch"][begin] <= 4 and begin < bimodal < last
