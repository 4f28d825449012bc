"""Formulas of the consistency study (Hacohen & Weinshall) on hand-built arrays."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy import stats

from lossatlas.analysis import consistency as cons
from lossatlas.analysis import consistency_classifiers as cons_clf
from lossatlas.analysis import consistency_index as cons_index
from lossatlas.analysis import consistency_scores as cons_scores

# 4 members, 2 checkpoints, 3 examples with labels (0, 1, 2).
PRED = np.array(
    [
        [[0, 1, 1], [0, 1, 2]],
        [[0, 2, 1], [0, 1, 2]],
        [[1, 2, 1], [0, 1, 0]],
        [[0, 0, 1], [0, 1, 1]],
    ],
    dtype=np.int16,
)
Y = np.array([0, 1, 2])


def test_consistency_hand_computed():
    c = cons_scores.consistency_scores(PRED, Y)
    np.testing.assert_allclose(c, [[3 / 4, 1 / 4, 0.0], [1.0, 1.0, 2 / 4]])


def test_consistency_leaves_out_invalid_members():
    valid = np.ones((4, 2), dtype=bool)
    valid[2, 1] = False  # member 2 diverged before checkpoint 1
    c = cons_scores.consistency_scores(PRED, Y, valid)
    np.testing.assert_allclose(c[1], [1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(c[0], [3 / 4, 1 / 4, 0.0])


def test_consensus_hand_computed():
    s = cons_scores.consensus_scores(PRED, 3)
    # checkpoint 0: ex0 labels (0,0,1,0) -> 3/4; ex1 (1,2,2,0) -> 2/4; ex2 all 1 -> 1 (agree while wrong)
    # checkpoint 1: ex0 all 0 -> 1; ex1 all 1 -> 1; ex2 (2,2,0,1) -> 2/4
    np.testing.assert_allclose(s, [[3 / 4, 2 / 4, 1.0], [1.0, 1.0, 2 / 4]])
    np.testing.assert_array_equal(cons_scores.modal_labels(PRED, 3), [[0, 2, 1], [0, 1, 2]])


def test_bimodality_two_point_is_zero():
    for p in (0.5, 0.1, 0.93):
        x = np.r_[np.zeros(int(1000 * (1 - p))), np.ones(int(1000 * p))]
        assert cons_scores.pearson_bimodality(x) == pytest.approx(0.0, abs=1e-9)


def test_bimodality_matches_scipy_moments():
    rng = np.random.default_rng(0)
    for x in (rng.random(500), rng.normal(size=800), rng.beta(0.3, 0.5, size=300)):
        expect = stats.kurtosis(x, fisher=False, bias=True) - stats.skew(x, bias=True) ** 2 - 1
        assert cons_scores.pearson_bimodality(x) == pytest.approx(expect, rel=1e-10)
    # reference values: uniform 0.8, Gaussian 2
    assert cons_scores.pearson_bimodality(rng.random(200_000)) == pytest.approx(0.8, abs=0.01)
    assert cons_scores.pearson_bimodality(rng.normal(size=200_000)) == pytest.approx(2.0, abs=0.05)


def test_bimodality_undefined_for_constant():
    assert math.isnan(cons_scores.pearson_bimodality(np.ones(50)))


def test_speed_of_learning_uses_whole_epochs_only():
    epochs = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    c = np.array([[0.2, 0.2], [0.9, 0.0], [0.0, 1.0], [0.5, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(cons_scores.speed_of_learning(c, epochs), [0.5, 1.0])


def test_split_halves_disjoint():
    a, b = cons_scores.split_halves(27)
    assert len(a) == len(b) == 13 and not set(a) & set(b)


def test_epoch_matching_on_constructed_curves():
    acc_f = np.array([0.2, 0.50, 0.70, 0.80, 0.85])  # strong net
    acc_g = np.array([0.2, 0.30, 0.40, 0.505, 0.60, 0.695, 0.71])  # weak net, slower
    pairs = cons.match_epochs(acc_f, acc_g, tol=0.01)
    assert pairs == [(0, 0), (1, 3), (2, 5), (2, 6)]
    assert cons.matched_pair_near(acc_f, acc_g, 0.7) == (2, 5)  # ties on the mean: the closer match wins
    assert cons.matched_pair_near(acc_f, acc_g, 0.5) == (1, 3)
    assert cons.matched_pair_near([0.9], [0.1], 0.5) is None


def test_histogram_2d():
    h = cons.consistency_histogram_2d(np.array([0, 0, 1, 0.5]), np.array([0, 0, 1, 1 / 3]), 2, 3)
    assert h.shape == (3, 4) and h.sum() == pytest.approx(1.0)
    assert h[0, 0] == 0.5 and h[2, 3] == 0.25 and h[1, 1] == 0.25


def test_iterative_removal_keeps_exact_fraction():
    n0 = 598
    rng = np.random.default_rng(1)
    ids = np.arange(n0)
    for steps in (1, 2, 4, 40):
        current = ids
        removed_all: list[int] = []
        for it in range(1, steps + 1):
            speed = rng.random(len(current))
            count = cons_index.removal_count(len(current), n0, it, steps, 0.2)
            removed = cons_index.rank_easiest_first(current, speed)[:count]
            # the removed are the easiest of the current set
            assert speed[np.isin(current, removed)].min() >= speed[~np.isin(current, removed)].max()
            removed_all.extend(removed)
            current = np.setdiff1d(current, removed)
        assert len(current) == round(0.2 * n0)
        assert len(set(removed_all)) == n0 - round(0.2 * n0)


def test_moved_ids():
    ids = np.arange(100, 140)
    speed = np.linspace(0, 1, 40)
    assert list(cons_index.moved_ids(ids, speed, 0.1, "easiest", 0)) == list(range(136, 140))
    assert list(cons_index.moved_ids(ids, speed, 0.1, "hardest", 0)) == [100, 101, 102, 103]
    rnd = cons_index.moved_ids(ids, speed, 0.1, "random", 3)
    assert len(rnd) == 4 and set(rnd) <= set(ids)
    np.testing.assert_array_equal(rnd, cons_index.moved_ids(ids, speed, 0.1, "random", 3))


def test_tercile_groups():
    g = cons_clf.tercile_groups(np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.6]))
    np.testing.assert_array_equal(g, [2, 0, 1, 0, 2, 1])


def _write_metrics(path, seeds, pred_train, pred_test, y_train, y_test, epochs):
    with h5py.File(path, "w") as f:
        f.attrs["num_classes"] = 3
        f.attrs["spec"] = "{}"
        f["members"] = np.array(seeds)
        f["checkpoints/epoch"] = np.asarray(epochs, dtype=np.float64)
        f["checkpoints/valid"] = np.ones((len(seeds), len(epochs)), dtype=bool)
        for s, pred, y, offset in (("train", pred_train, y_train, 0), ("test", pred_test, y_test, 100)):
            f[f"{s}/y"] = y
            f[f"{s}/id"] = np.arange(len(y)) + offset
            f[f"{s}/pred"] = pred.astype(np.int16)


def test_ensemble_scores_stacks_blocks(tmp_path):
    rng = np.random.default_rng(0)
    epochs = [0, 0.5, 1, 2, 3]
    y_tr, y_te = rng.integers(0, 3, 30), rng.integers(0, 3, 20)
    pred_tr = rng.integers(0, 3, (6, 5, 30))
    pred_te = rng.integers(0, 3, (6, 5, 20))
    _write_metrics(tmp_path / "b.h5", [3, 4, 5], pred_tr[3:], pred_te[3:], y_tr, y_te, epochs)
    _write_metrics(tmp_path / "a.h5", [0, 1, 2], pred_tr[:3], pred_te[:3], y_tr, y_te, epochs)
    out = tmp_path / "scores.h5"
    cons_scores.ensemble_scores([tmp_path / "b.h5", tmp_path / "a.h5"], out, label="x")
    s = cons_scores.read_scores(out)
    np.testing.assert_array_equal(s["members"], np.arange(6))
    np.testing.assert_allclose(s["test"]["consistency"], cons_scores.consistency_scores(pred_te, y_te), rtol=1e-6)
    c_a = cons_scores.consistency_scores(pred_tr[:3], y_tr)
    np.testing.assert_allclose(s["train"]["speed_half_a"], c_a[2:].mean(axis=0))
    assert s["test"]["bimodality"][0] == pytest.approx(cons_scores.pearson_bimodality(s["test"]["consistency"][0]),
                                                       rel=1e-5)
    # index lists from these scores
    n_path = tmp_path / "orig.h5"
    with h5py.File(n_path, "w") as f:
        f["train/y"] = np.zeros(40)
    cons_index.index_list("remove", out, tmp_path / "rm.txt", original_dataset=n_path, iteration=1, steps=2,
                    keep_fraction=0.5)
    removed = cons_index.read_ids(tmp_path / "rm.txt")
    assert len(removed) == 30 - 30  # 40 -> target 30 after step 1 of 2 (keep 20): the 30 current stay
    cons_index.index_list("remove", out, tmp_path / "rm2.txt", original_dataset=n_path, iteration=2, steps=2,
                    keep_fraction=0.5)
    assert len(cons_index.read_ids(tmp_path / "rm2.txt")) == 10


def test_move_index_lists_from_scores(tmp_path):
    rng = np.random.default_rng(2)
    epochs = [0, 1, 2]
    y_tr, y_te = rng.integers(0, 3, 40), rng.integers(0, 3, 10)
    # member predictions: example i is right for the first i//4 members, so speed rises with the id
    pred_tr = np.array([[np.where(np.arange(40) // 4 > m, y_tr, (y_tr + 1) % 3) for _ in epochs]
                        for m in range(10)])
    _write_metrics(tmp_path / "m.h5", list(range(10)), pred_tr, rng.integers(0, 3, (10, 3, 10)), y_tr, y_te,
                   epochs)
    cons_scores.ensemble_scores([tmp_path / "m.h5"], tmp_path / "s.h5")
    for which, expect in (("easiest", [36, 37, 38, 39]), ("hardest", [0, 1, 2, 3])):
        cons_index.index_list(f"move_{which}", tmp_path / "s.h5", tmp_path / f"{which}.txt",
                        original_dataset=tmp_path / "unused.h5", fraction=0.1)
        assert list(cons_index.read_ids(tmp_path / f"{which}.txt")) == expect
    with pytest.raises(ValueError, match="unknown kind"):
        cons_index.index_list("shuffle", tmp_path / "s.h5", tmp_path / "x.txt", original_dataset=tmp_path / "u.h5")


@pytest.mark.slow
def test_paper_scale_config_builds_a_dag(snakemake_bin):
    """configs/consistency.yaml validates and its DAG (40 hard-dataset iterations chained through index
    files) resolves."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([snakemake_bin, "-n", "--quiet", "rules", "--configfile=configs/consistency.yaml", "--",
                          "results/analysis/consistency/summary.md"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "consistency_index" in out.stdout and "derive_dataset" in out.stdout


# ------------------------------------------------------------------------- summary numbers (issue 10 claims)


def test_matched_targets_configured_or_from_the_common_range():
    assert cons.matched_targets(np.array([0.1, 0.5]), np.array([0.2, 0.9]), [0.39, 0.71]) == [0.39, 0.71]
    # common range [0.2, 0.5]: half-way 0.35, 90 % 0.47
    assert cons.matched_targets(np.array([0.1, 0.5]), np.array([0.2, 0.9]), None) == pytest.approx([0.35, 0.47])


def test_corner_peak_ratios_hand_computed():
    hist = np.full((3, 3), 0.05)
    hist[0, 0], hist[2, 2], hist[1, 1] = 0.3, 0.25, 0.1  # sums to 1: 0.55 + 0.1 + 6 * 0.05
    r = cons.corner_peak_ratios(hist)
    assert r["peak"] == pytest.approx(0.25)
    assert r["vs_mean"] == pytest.approx(0.25 / (0.4 / 7))
    assert r["vs_max"] == pytest.approx(2.5)


def test_histogram_modes_and_beginning_phase():
    n = 4  # grid 0, .25, .5, .75, 1
    c = np.array([[0.25, 0.25, 0.5, 0.0],    # mode 0.25
                  [0.0, 0.0, 0.25, 1.0],     # mode 0
                  [0.0, 0.0, 1.0, 1.0],      # tie 0 / 1: the smaller, 0
                  [1.0, 1.0, 0.0, 0.75],     # mode 1
                  [0.0, 0.0, 0.0, 1.0]])     # mode 0 again, outside the first run
    assert cons.histogram_modes(c, n).tolist() == [0.25, 0.0, 0.0, 1.0, 0.0]
    epochs = np.array([0, 0.5, 1, 2, 3])
    assert cons.beginning_phase(epochs, c, n) == (0.5, 1.0, 2)
    assert cons.beginning_phase(epochs, c[[0, 3]], n) == (0.0, 0.0, 0)


def test_classes_at_one():
    c = np.array([[0.2, 0.2, 0.2, 0.2], [1.0, 0.2, 0.0, 0.2], [1.0, 1.0, 0.0, 1.0]])
    y = np.array([3, 1, 0, 1])
    assert cons.classes_at_one(c, y) == (1, [3])
    assert cons.classes_at_one(c, y, min_fraction=0.5) == (2, [1, 3])
    assert cons.classes_at_one(c[:1], y) == (-1, [])


def test_climb_times_hand_computed():
    epochs = np.array([0, 0.5, 1, 2, 3])
    c = np.array([[0.2, 0.2, 0.0, 0.2],
                  [0.2, 0.6, 0.0, 0.2],
                  [0.95, 0.95, 0.0, 0.3],
                  [1.0, 1.0, 0.0, 0.5],
                  [1.0, 1.0, 0.0, 1.0]])
    # example 0: last <= 0.3 at 0.5, first >= 0.9 at 1 -> 0.5; example 1: 0 -> 1 = 1; example 2 never climbs;
    # example 3: last <= 0.3 at epoch 1 (0.3), first >= 0.9 at 3 -> 2
    assert cons.climb_times(epochs, c).tolist() == [0.5, 1.0, 2.0]
