"""Every consistency figure and the table, from synthetic ensembles shaped like metrics.h5 (contract §3)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lossatlas.analysis import consistency as cons
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
        cons.ensemble_scores([tmp / f"{role}.metrics.h5"], tmp / f"{role}.h5", label=role)
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
        cons.write_ids(tmp / f"{which}.txt", mv)
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


FIGURE_INPUTS = {
    "fig01_consistency_phases": ({"main": "main"}, {"phase_epochs": None}),
    "fig02_consistency_epochs": ({"ensemble": "main"}, {"fig02_epochs": [0, 1, 2, 5, -1]}),
    "fig03_consensus_phases": ({"main": "main"}, {"phase_epochs": [0, 0.5, 5, -1]}),
    "fig04a_speed_two_halves": ({"main": "main"}, {"speed_split": "test"}),
    "fig04b_speed_cross_arch": ({"a": "main", "b": "small"}, {"speed_split": "test"}),
    "fig04cd_matched_epochs_2d": ({"a": "main", "b": "small"},
                                  {"matched_accuracies": None, "match_tolerance": 0.03, "match_split": "test",
                                   "saturation": 0.04}),
    "fig05ab_linear_vs_nonlinear": ({"main": "main", "linear": "linear"}, {"fig05_epochs": [1, -1]}),
    "fig05c_linear_consistency": ({"main": "main", "linear": "linear"}, {}),
    "fig06a_adaboost_groups": ({"classifiers": None}, {}),
    "fig06b_adaboost_vs_cnn": ({"classifiers": None}, {}),
    "fig07_other_classifiers": ({"classifiers": None}, {}),
    "fig08abc_random_labels": ({"random_labels": "random_labels"}, {"fig08_epochs": None}),
    "fig08d_hard_dataset": ({"hard_final": "hard_final", "random_subset": "random_subset", "main": "main"}, {}),
    "fig09_class_hierarchy": ({"main": "main"}, {"phase_epochs": None, "fig09_epochs": None}),
    "fig10_consistency_over_time": ({"main": "main"}, {}),
    "fig11_example_trajectories": ({"main": "main"}, {}),
    "robustness_moves": ({f"move_{w}": f"move_{w}" for w in ("easiest", "hardest", "random")}, {}),
}


@pytest.mark.parametrize("name", sorted(FIGURE_INPUTS))
def test_figure_renders(study, name):
    tmp, scores = study
    roles, options = FIGURE_INPUTS[name]
    inputs = {k: str(tmp / "classifiers.h5") if r is None else scores[r] for k, r in roles.items()}
    if name == "robustness_moves":
        inputs.update({f"index_{w}": str(tmp / f"{w}.txt") for w in ("easiest", "hardest", "random")})
    out = tmp / f"{name}.png"
    getattr(figs, name)(inputs, {**options, "roles": roles}, str(out))
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_table(study):
    tmp, scores = study
    moves = {w: str(tmp / f"{w}.txt") for w in ("easiest", "hardest", "random")}
    cons.summary_table(scores, tmp / "classifiers.h5", moves, [["main", "small"]], tmp / "s.csv", tmp / "s.md",
                       tmp / "s.json")
    rows = json.loads((tmp / "s.json").read_text())
    by = {r["quantity"]: r for r in rows}
    assert by["moved easiest train->test: accuracy at the last epoch"]["ours"] > 0.9
    assert by["moved hardest train->test: accuracy at the last epoch"]["ours"] < 0.3
    r = by["speed of learning r, same architecture (two halves), test"]["ours"]
    assert r > 0.8  # the synthetic members share the per-example difficulty
    assert "| §5 | svm test accuracy | 0.48 | 0.5 |" in (tmp / "s.md").read_text()
    assert "Fig 4c: matched accuracy" not in by  # no figure options: no Fig 4c-d rows
    for quantity in ("last epoch where the mode of c^e is 0 (test)",
                     "Fig 9: classes with images at consistency 1 (first such epoch)",
                     "Fig 11: median epochs from consistency <= 0.3 to >= 0.9 (train)"):
        assert by[quantity]["ours"] is not None, quantity


def test_summary_table_reports_every_other_ensemble(study):
    tmp, scores = study
    moves = {w: str(tmp / f"{w}.txt") for w in ("easiest", "hardest", "random")}
    # an extra named ensemble (paper scale: mnist, cifar10_vgg16, ...): here the small ensemble's file again
    cons.summary_table({**scores, "mnist": scores["small"]}, tmp / "classifiers.h5", moves, [["main", "small"]],
                       tmp / "s.csv", tmp / "s.md", tmp / "s.json")
    by = {r["quantity"]: r for r in json.loads((tmp / "s.json").read_text())}
    small = by["test accuracy, small ensemble (last epoch)"]["ours"]
    assert by["test accuracy, mnist ensemble (last epoch)"]["ours"] == small
    assert not any(q.startswith("test accuracy, move_") or q.startswith("test accuracy, hard_final") for q in by)


def test_summary_table_fig4cd_rows_match_the_figure(study):
    tmp, scores = study
    moves = {w: str(tmp / f"{w}.txt") for w in ("easiest", "hardest", "random")}
    options = {"matched_accuracies": None, "match_tolerance": 0.05, "match_split": "test"}
    cons.summary_table(scores, tmp / "classifiers.h5", moves, [["main", "small"]], tmp / "s.csv", tmp / "s.md",
                       tmp / "s.json", figure_options=options)
    by = {r["quantity"]: r for r in json.loads((tmp / "s.json").read_text())}
    a, b = cons.read_scores(scores["main"]), cons.read_scores(scores["small"])
    targets = cons.matched_targets(a["test"]["accuracy"], b["test"]["accuracy"], None)
    for letter, target in zip("cd", targets, strict=True):
        i, j = cons.matched_pair_near(a["test"]["accuracy"], b["test"]["accuracy"], target, 0.05)
        expect = (a["test"]["accuracy"][i] + b["test"]["accuracy"][j]) / 2
        assert by[f"Fig 4{letter}: matched accuracy"]["ours"] == pytest.approx(expect, abs=1e-4)
        assert by[f"Fig 4{letter}: corner peak / mean off-corner mass"]["ours"] > 0


def test_phase_checkpoints_pick_the_phases(study):
    _, scores = study
    s = cons.read_scores(scores["main"])
    init, begin, bimodal, last = cons.phase_checkpoints(s["epoch"], s["train"]["consistency"],
                                                        s["test"]["bimodality"])
    assert s["epoch"][init] == 0 and last == len(s["epoch"]) - 1
    assert 0 < s["epoch"][begin] <= 4 and begin < bimodal < last
