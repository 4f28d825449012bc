"""Consistency, consensus and learning order across ensembles (Hacohen & Weinshall, *All Neural Networks are
Created Equal*; papers/created_equal.txt, FIGURES.md §2).

An *ensemble* is every member (seed) of one (recipe, dataset, architecture) of the consistency study, read
from the stacked per-example predictions of its seed blocks' ``metrics.h5`` (contract §3). The paper's formal
definition trains an independent instance per extent e (N·E instances); here, as in practice, the N members
are checkpointed along one run each, and f_i^e is member i at checkpoint e (FIGURES.md §2.0).

Pure formulas first (tested on hand-built arrays), then the job functions the rules call:
``ensemble_scores`` (one ensemble → scores.h5), ``index_list`` (hard-dataset removals and train→test moves:
the index files that the next dataset derivation reads), ``other_classifiers`` (§5: AdaBoost + six
scikit-learn classifiers) and ``summary_table`` (the §3 / §5 numbers next to the paper's).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossatlas.io import atomic_path, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

# ------------------------------------------------------------------------------------------------ formulas


def consistency_scores(pred: np.ndarray, y: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """c^e(x, y) = (1/N) Σ_i 1[f_i^e(x) = y]  (created_equal.txt §2), for every checkpoint and example.

    ``pred``: (M, C, n) predicted labels of M members at C checkpoints; ``y``: (n,) labels; ``valid``: (M, C)
    bool, members that stopped or diverged before a checkpoint are left out of N there (N = valid members).
    Returns (C, n) float64; NaN at a checkpoint with no valid member.
    """
    pred = np.asarray(pred)
    correct = pred == np.asarray(y)[None, None, :]
    if valid is None:
        valid = np.ones(pred.shape[:2], dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    n_valid = valid.sum(axis=0).astype(np.float64)  # (C,)
    hits = (correct & valid[:, :, None]).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / n_valid[:, None]


def consensus_scores(pred: np.ndarray, num_classes: int, valid: np.ndarray | None = None) -> np.ndarray:
    """s^e(x, y) = max_k (1/N) Σ_i 1[f_i^e(x) = k]  (created_equal.txt §2): the largest fraction of members
    agreeing on any one label, right or wrong. Shapes as in :func:`consistency_scores`."""
    counts = label_counts(pred, num_classes, valid)  # (C, n, K)
    n_valid = counts.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts.max(axis=2) / n_valid


def label_counts(pred: np.ndarray, num_classes: int, valid: np.ndarray | None = None) -> np.ndarray:
    """(C, n, K) number of valid members predicting each label."""
    pred = np.asarray(pred).astype(np.int64)
    if valid is None:
        valid = np.ones(pred.shape[:2], dtype=bool)
    m, c, n = pred.shape
    counts = np.zeros((c, n, num_classes), dtype=np.int64)
    for i in range(m):
        rows = np.flatnonzero(valid[i])
        onehot = np.zeros((len(rows), n, num_classes), dtype=np.int64)
        np.put_along_axis(onehot, pred[i, rows][:, :, None], 1, axis=2)
        counts[rows] += onehot
    return counts


def modal_labels(pred: np.ndarray, num_classes: int, valid: np.ndarray | None = None) -> np.ndarray:
    """(C, n) the most frequent predicted label over the members (ties: smallest label); Supp. C, Fig 9."""
    return label_counts(pred, num_classes, valid).argmax(axis=2)


def pearson_bimodality(values: np.ndarray) -> float:
    """Pearson's bimodality measure B = β₂ − β₁ − 1 (created_equal.txt §3, ref. [14]).

    β₂ = m₄/m₂² is Pearson's (non-excess) kurtosis and β₁ = m₃²/m₂³ the squared skewness, with population
    (1/n) central moments. B ≥ 0 for every distribution, 0 exactly for a two-point law (a perfectly bi-modal
    {0, 1} consistency distribution); uniform 0.8, Gaussian 2 (FIGURES.md §2.3). Lower = more bi-modal.
    Returns NaN when the variance is 0 (e.g. every example at consistency 1), where B is undefined.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    d = x - x.mean()
    m2 = np.mean(d**2)
    if m2 <= 1e-12 * max(1.0, float(np.mean(x**2))):
        return math.nan
    m3 = np.mean(d**3)
    m4 = np.mean(d**4)
    return float(m4 / m2**2 - m3**2 / m2**3 - 1.0)


def training_epochs(epochs: np.ndarray) -> np.ndarray:
    """Boolean mask of the checkpoints at whole epochs ≥ 1: the extents S_E of the paper's speed of learning
    (initialisation and the extra within-epoch checkpoints are left out, so every epoch weighs the same)."""
    e = np.asarray(epochs, dtype=np.float64)
    return (e >= 1) & (np.abs(e - np.round(e)) < 1e-9)


def speed_of_learning(consistency: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """v(x, y) = (1/|S_E|) Σ_{e∈S_E} c^e(x, y): mean consistency over the training epochs (§4.1), per example.

    ``consistency`` (C, n); S_E = the whole-epoch checkpoints ≥ 1 (:func:`training_epochs`).
    """
    mask = training_epochs(epochs)
    if not mask.any():
        raise ValueError("speed_of_learning: no whole-epoch checkpoint >= 1 in this ensemble")
    return np.nanmean(np.asarray(consistency)[mask], axis=0)


def split_halves(n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the members, floor(N/2) each (one member unused when N is odd, as the paper's
    13 vs 13 of 27 ResNets, Fig 4a): the first half and the second half in seed order."""
    h = n_members // 2
    if h < 1:
        raise ValueError(f"split_halves: need at least 2 members, got {n_members}")
    return np.arange(h), np.arange(h, 2 * h)


def match_epochs(acc_a: Sequence[float], acc_b: Sequence[float], tol: float = 0.01) -> list[tuple[int, int]]:
    """All checkpoint pairs (i, j) with |acc_a[i] − acc_b[j]| ≤ tol: epochs of two ensembles whose mean error
    is similar up to ±1 % (created_equal.txt §4.1). Sorted by i, then j."""
    a = np.asarray(acc_a, dtype=np.float64)
    b = np.asarray(acc_b, dtype=np.float64)
    close = np.abs(a[:, None] - b[None, :]) <= tol + 1e-12
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(close), strict=True)]


def matched_pair_near(acc_a: Sequence[float], acc_b: Sequence[float], target: float,
                      tol: float = 0.01) -> tuple[int, int] | None:
    """The matched pair (:func:`match_epochs`) whose mean accuracy is closest to ``target`` (ties: the
    earliest pair, then the closest match). None when no pair matches."""
    pairs = match_epochs(acc_a, acc_b, tol)
    if not pairs:
        return None
    a = np.asarray(acc_a, dtype=np.float64)
    b = np.asarray(acc_b, dtype=np.float64)
    return min(pairs, key=lambda p: (abs((a[p[0]] + b[p[1]]) / 2 - target), abs(a[p[0]] - b[p[1]]), p))


def matched_targets(acc_a: np.ndarray, acc_b: np.ndarray, configured: Sequence[float] | None) -> list[float]:
    """Fig 4c-d target accuracies: the configured ones (paper 0.39 and 0.71), else half-way and 90 % of the way
    through the accuracy range both ensembles reach."""
    if configured:
        return [float(t) for t in configured]
    lo, hi = max(np.min(acc_a), np.min(acc_b)), min(np.max(acc_a), np.max(acc_b))
    return [float(lo + 0.5 * (hi - lo)), float(lo + 0.9 * (hi - lo))]


def corner_peak_ratios(hist: np.ndarray) -> dict[str, float]:
    """Fig 4c "peaking around (0, 0) and (1, 1), where the values are an order of magnitude higher than the
    rest": the smaller corner peak min(P(0,0), P(1,1)) divided by (a) the mean and (b) the largest of the
    other cells of the 2-D histogram (:func:`consistency_histogram_2d`). NaN when the rest is all zero."""
    h = np.asarray(hist, dtype=np.float64)
    peak = min(h[0, 0], h[-1, -1])
    rest = np.ones(h.shape, dtype=bool)
    rest[0, 0] = rest[-1, -1] = False
    others = h[rest]
    mean, largest = float(others.mean()), float(others.max())
    return {"peak": float(peak), "vs_mean": peak / mean if mean > 0 else math.nan,
            "vs_max": peak / largest if largest > 0 else math.nan}


def histogram_modes(consistency: np.ndarray, n_members: int) -> np.ndarray:
    """(C,) the most frequent consistency value per checkpoint, on the grid {0, 1/N, …, 1} (ties: the
    smaller value). NaN scores (no valid member) are left out."""
    c = np.asarray(consistency, dtype=np.float64)
    out = np.full(c.shape[0], math.nan)
    for i, row in enumerate(c):
        row = row[np.isfinite(row)]
        if row.size:
            counts = np.bincount(np.rint(row * n_members).astype(np.int64), minlength=n_members + 1)
            out[i] = int(np.argmax(counts)) / n_members
    return out


def beginning_phase(epochs: np.ndarray, consistency: np.ndarray, n_members: int) -> tuple[float, float, int]:
    """§3 phase (ii), "beginning of learning": "most examples achieve a consistency score of 0". Returns
    (first epoch, last epoch, number of checkpoints) of the first contiguous run of checkpoints where the mode
    of c^e (:func:`histogram_modes`) is 0; (0, 0, 0) when the mode is never 0."""
    at_zero = histogram_modes(consistency, n_members) == 0
    if not at_zero.any():
        return 0.0, 0.0, 0
    start = int(np.argmax(at_zero))
    stop = start
    while stop + 1 < len(at_zero) and at_zero[stop + 1]:
        stop += 1
    e = np.asarray(epochs, dtype=np.float64)
    return float(e[start]), float(e[stop]), stop - start + 1


def classes_at_one(consistency: np.ndarray, labels: np.ndarray, min_fraction: float = 0.0) -> tuple[int, list]:
    """Fig 9: at the first checkpoint where at least ``min_fraction`` of the examples (and at least one) have
    consistency 1, the checkpoint index and the sorted labels of those examples. (-1, []) if none."""
    frac = (np.asarray(consistency) == 1).mean(axis=1)
    hits = np.flatnonzero((frac > 0) & (frac >= min_fraction))
    if not hits.size:
        return -1, []
    i = int(hits[0])
    return i, sorted({int(v) for v in np.asarray(labels)[np.asarray(consistency)[i] == 1]})


def climb_times(epochs: np.ndarray, consistency: np.ndarray, low: float = 0.3, high: float = 0.9) -> np.ndarray:
    """Fig 11 / Supp. C "the score may climb up from random (0.2) to 1 in 1 epoch": per example, the epochs
    from the last checkpoint with c ≤ ``low`` before its first checkpoint with c ≥ ``high`` to that checkpoint.
    Examples that never reach ``high``, or never are ≤ ``low`` before it, are left out."""
    e = np.asarray(epochs, dtype=np.float64)
    c = np.asarray(consistency, dtype=np.float64)
    out = []
    for j in range(c.shape[1]):
        above = np.flatnonzero(c[:, j] >= high)
        if not above.size:
            continue
        below = np.flatnonzero(c[: above[0], j] <= low)
        if below.size:
            out.append(e[above[0]] - e[below[-1]])
    return np.asarray(out, dtype=np.float64)


def consistency_histogram_2d(c_a: np.ndarray, c_b: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """P(a, b) = (1/M) #{x : c_F(x) = a, c_G(x) = b} on the grid a ∈ {0, 1/N₁, …, 1}, b ∈ {0, 1/N₂, …, 1}
    (created_equal.txt §4.1, Fig 4c-d). Returns (N₁+1, N₂+1), rows indexed by a."""
    ia = np.rint(np.asarray(c_a) * n_a).astype(np.int64)
    ib = np.rint(np.asarray(c_b) * n_b).astype(np.int64)
    hist = np.zeros((n_a + 1, n_b + 1), dtype=np.float64)
    np.add.at(hist, (ia, ib), 1.0)
    return hist / max(len(ia), 1)


def pearson_r(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson r and its two-sided p-value (scipy.stats.pearsonr); NaN when either side is constant."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan, math.nan
    r, p = stats.pearsonr(a[ok], b[ok])
    return float(r), float(p)


def rank_easiest_first(ids: np.ndarray, easiness: np.ndarray) -> np.ndarray:
    """Example ids sorted easiest first (highest easiness), ties broken by id (a deterministic order)."""
    ids = np.asarray(ids)
    order = np.lexsort((ids, -np.asarray(easiness, dtype=np.float64)))
    return ids[order]


def removal_count(n_current: int, n_original: int, iteration: int, steps: int, keep_fraction: float) -> int:
    """How many examples iteration ``iteration`` (1-based) of the hard-dataset construction removes.

    The paper removes the 2 % easiest examples per iteration until 20 % remain (§6); whether 2 % of the
    original or of the current set is not stated (FIGURES.md §2.1, Fig 8d). Choice: equal steps of the
    *original* set, so after iteration i the train set holds round(n₀·(1 − i·(1 − keep)/steps)) examples and
    after the last exactly round(n₀·keep).
    """
    if not 1 <= iteration <= steps:
        raise ValueError(f"removal iteration {iteration} outside 1..{steps}")
    target = round(n_original * (1.0 - iteration * (1.0 - keep_fraction) / steps))
    if target > n_current:
        raise ValueError(f"removal iteration {iteration}: the current train set ({n_current}) is already "
                         f"smaller than its target size {target}")
    return n_current - target


def moved_ids(ids: np.ndarray, easiness: np.ndarray, fraction: float, which: str, seed: int) -> np.ndarray:
    """Ids of the round(fraction·n) train examples that move train → test (§3 Robustness): the easiest,
    the hardest (by ``easiness``) or a random subset (``seed``). Sorted ascending."""
    ids = np.asarray(ids)
    count = int(round(fraction * len(ids)))
    ranked = rank_easiest_first(ids, easiness)
    if which == "easiest":
        chosen = ranked[:count]
    elif which == "hardest":
        chosen = ranked[len(ranked) - count:]
    elif which == "random":
        chosen = np.random.default_rng(seed).choice(np.sort(ids), size=count, replace=False)
    else:
        raise ValueError(f"moved_ids: which must be easiest|hardest|random, got {which!r}")
    return np.sort(chosen)


def nearest_checkpoint(epochs: np.ndarray, epoch: float) -> int:
    """Index of the checkpoint closest to ``epoch``; a negative epoch counts from the end (-1 = last)."""
    epochs = np.asarray(epochs, dtype=np.float64)
    if epoch < 0:
        return int(len(epochs) + epoch)
    return int(np.argmin(np.abs(epochs - epoch)))


def phase_checkpoints(epochs: np.ndarray, c_train: np.ndarray, bimodality_test: np.ndarray,
                      early_epochs: float = 10.0) -> list[int]:
    """Checkpoints shown for the 4 phases of learning (created_equal.txt §3, Figs 1 and 3); the paper does
    not give them. Choice:
    (i) initialisation = epoch 0; (ii) beginning of learning = the checkpoint in (0, min(10, E/3)] epochs
    where most train examples sit at consistency 0 and fewest at 1 (max of frac(c=0) − frac(c=1));
    (iii) bi-modality = the checkpoint after (ii), in the first half of training, with the lowest test-set
    Pearson measure (the phase that "often lasts until the end"; the first half keeps it apart from (iv));
    (iv) end of learning = the last checkpoint.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    last = len(epochs) - 1
    init = int(np.argmin(np.abs(epochs)))
    window = np.flatnonzero((epochs > 0) & (epochs <= min(early_epochs, max(epochs[-1] / 3, epochs[1]))))
    if window.size == 0:
        window = np.array([min(1, last)])
    zero_minus_one = (c_train[window] == 0).mean(axis=1) - (c_train[window] == 1).mean(axis=1)
    begin = int(window[int(np.argmax(zero_minus_one))])
    middle = np.arange(begin + 1, last)
    middle = middle[epochs[middle] <= max(epochs[-1] / 2, epochs[min(begin + 1, last)])]
    b = np.asarray(bimodality_test, dtype=np.float64)
    finite = middle[np.isfinite(b[middle])] if middle.size else middle
    bimodal = int(finite[int(np.argmin(b[finite]))]) if finite.size else max(begin, (begin + last) // 2)
    return [init, begin, bimodal, last]


def example_patterns(epochs: np.ndarray, consistency: np.ndarray) -> list[tuple[int, str]]:
    """Five examples (column indices) illustrating the consistency-over-time patterns of Supp. C, Fig 11.

    Over the whole-epoch checkpoints (plus epoch 0): 'climbs to 1 at once' = highest speed of learning;
    'dips to 0, then rises to 1' = ends ≥ 0.9 after a minimum ≤ 0.1 at epoch ≥ 1, the latest such rise;
    'falls to 0 and stays' = lowest speed; 'starts near 1, then drops to 0' (the paper's green curve) =
    largest early (epochs ≤ 3) maximum minus final value; 'intermediate' = speed closest to the median. The
    paper does not say how its five were chosen.
    """
    keep = training_epochs(epochs) | (np.asarray(epochs) == 0)
    c = np.asarray(consistency, dtype=np.float64)[keep]
    ep = np.asarray(epochs, dtype=np.float64)[keep]
    speed = np.nanmean(c[ep >= 1], axis=0)
    picks: list[tuple[int, str]] = []
    used: set[int] = set()

    def take(scores: np.ndarray, label: str) -> None:
        scores = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float64)
        scores[list(used)] = -np.inf
        i = int(np.argmax(scores))
        used.add(i)
        picks.append((i, label))

    take(speed, "climbs to 1 at once")
    trained = c[ep >= 1]
    final = trained[-1]
    min_pos = trained.argmin(axis=0)
    dip = (trained.min(axis=0) <= 0.1) & (final >= 0.9)
    take(np.where(dip, min_pos.astype(np.float64), -np.inf) if dip.any() else final - trained.min(axis=0),
         "dips to 0, then rises to 1")
    take(-speed, "falls to 0 and stays")
    early = c[(ep >= 1) & (ep <= 3)] if np.any((ep >= 1) & (ep <= 3)) else trained[:1]
    take(early.max(axis=0) - final, "starts near 1, then drops to 0")
    i = picks[-1][0]
    if early[:, i].max() < 0.8 or final[i] > 0.2:  # no example shows the pattern: say so in the label
        picks[-1] = (i, f"largest early drop (max {early[:, i].max():.2f} -> {final[i]:.2f})")
    take(-np.abs(speed - np.nanmedian(speed)), "intermediate")
    return picks


# ---------------------------------------------------------------------------------------------- ensembles


def load_ensemble(metrics_paths: Sequence[str | Path], splits: Sequence[str] = SPLITS) -> dict:
    """Stack the members of an ensemble's seed blocks (metrics.h5 files, contract §3) along the member axis.

    Returns {'members', 'epochs', 'valid', 'num_classes', split: {'y', 'id', 'pred'}}. Every block must have
    the same checkpoints and examples (else a ValueError naming the file).
    """
    import h5py

    out: dict = {}
    members, valid = [], []
    preds: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    for path in metrics_paths:
        with h5py.File(path, "r") as f:
            epochs = f["checkpoints/epoch"][:].astype(np.float64)
            num_classes = int(f.attrs["num_classes"])
            prev = out.get("epochs", epochs)
            if len(epochs) != len(prev) or not np.allclose(epochs, prev):
                raise ValueError(f"{path}: checkpoints differ from the ensemble's other seed blocks")
            out.setdefault("epochs", epochs)
            out.setdefault("num_classes", num_classes)
            members.append(f["members"][:].astype(np.int64))
            valid.append(f["checkpoints/valid"][:].astype(bool))
            for s in splits:
                if s not in f:
                    raise ValueError(f"{path}: no '{s}' split (the consistency study needs {list(splits)})")
                y, ids = f[f"{s}/y"][:], f[f"{s}/id"][:]
                if s in out and not np.array_equal(ids, out[s]["id"]):
                    raise ValueError(f"{path}: example ids of split '{s}' differ from the other seed blocks")
                out.setdefault(s, {"y": y.astype(np.int64), "id": ids.astype(np.int64)})
                preds[s].append(f[f"{s}/pred"][:])
    if not members:
        raise ValueError("load_ensemble: no metrics files")
    out["members"] = np.concatenate(members)
    out["valid"] = np.concatenate(valid)
    for s in splits:
        out[s]["pred"] = np.concatenate(preds[s])
    return out


def ensemble_scores(metrics_paths: Sequence[str | Path], out_path: str | Path, label: str = "") -> None:
    """Scores of one ensemble → ``scores.h5`` (what every figure and table of the study reads).

    Layout: attrs ``label``, ``num_classes``, ``n_members``; ``members`` (N,); ``epoch`` (C,);
    ``n_valid`` (C,); per split s: ``s/y``, ``s/id`` (n,), ``s/consistency`` and ``s/consensus`` (C, n)
    float32, ``s/modal_label`` (C, n) int16, ``s/accuracy`` (C,) = ensemble mean accuracy = mean_x c^e,
    ``s/mean_consensus`` (C,), ``s/bimodality`` (C,) Pearson's measure of c^e (NaN where undefined),
    ``s/speed`` (n,) speed of learning, ``s/speed_half_a`` / ``s/speed_half_b`` (n,) from two disjoint member
    halves (:func:`split_halves`).
    """
    import h5py

    ens = load_ensemble(metrics_paths)
    k = ens["num_classes"]
    order = np.argsort(ens["members"], kind="stable")
    valid = ens["valid"][order]
    half_a, half_b = split_halves(len(order))
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(label=label, num_classes=k, n_members=len(order))
        f["members"] = ens["members"][order]
        f["epoch"] = ens["epochs"]
        f["n_valid"] = valid.sum(axis=0)
        for s in SPLITS:
            pred = ens[s]["pred"][order]
            y = ens[s]["y"]
            c = consistency_scores(pred, y, valid)
            g = f.create_group(s)
            g["y"] = y
            g["id"] = ens[s]["id"]
            g["consistency"] = c.astype(np.float32)
            g["consensus"] = consensus_scores(pred, k, valid).astype(np.float32)
            g["modal_label"] = modal_labels(pred, k, valid).astype(np.int16)
            g["accuracy"] = np.nanmean(c, axis=1)
            g["mean_consensus"] = np.nanmean(g["consensus"][:], axis=1)
            g["bimodality"] = np.array([pearson_bimodality(row) for row in c])
            g["speed"] = speed_of_learning(c, ens["epochs"])
            for name, half in (("speed_half_a", half_a), ("speed_half_b", half_b)):
                c_half = consistency_scores(pred[half], y, valid[half])
                g[name] = speed_of_learning(c_half, ens["epochs"])
    log.info("scores of %s: %d members, %d checkpoints", label, len(order), len(ens["epochs"]))


def read_scores(path: str | Path) -> dict:
    """scores.h5 as nested dicts of numpy arrays."""
    import h5py

    with h5py.File(path, "r") as f:
        out = {"attrs": dict(f.attrs), "members": f["members"][:], "epoch": f["epoch"][:]}
        for s in SPLITS:
            out[s] = {k: f[s][k][:] for k in f[s]}
    return out


# ---------------------------------------------------------------------------------------------- index lists


def _train_size(dataset_path: str | Path) -> int:
    import h5py

    with h5py.File(dataset_path, "r") as f:
        return int(f["train/y"].shape[0])


def write_ids(path: str | Path, ids: np.ndarray) -> None:
    """An index file: one example id per line (what the datasets' remove/move derivations read)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{int(i)}\n" for i in np.sort(np.asarray(ids))))


def read_ids(path: str | Path) -> np.ndarray:
    text = Path(path).read_text().split()
    return np.array([int(t) for t in text], dtype=np.int64)


def index_list(kind: str, scores_path: str | Path, out_path: str | Path, *, original_dataset: str | Path,
               iteration: int = 1, steps: int = 1, keep_fraction: float = 0.2, fraction: float = 0.025,
               seed: int = 0) -> None:
    """Write the ids a derived dataset removes or moves, ranked by the train-set speed of learning of the
    ensemble trained on its parent (``scores_path``); the paper does not say which consistency ranks
    easiness (FIGURES.md Fig 8d) — the speed of learning is the paper's own order-of-learning measure.

    kind 'remove': iteration ``iteration`` of ``steps`` of the hard dataset (:func:`removal_count`);
    kind 'move_easiest' | 'move_hardest' | 'move_random': round(fraction·n) train examples (§3 Robustness).
    """
    scores = read_scores(scores_path)
    ids, speed = scores["train"]["id"], scores["train"]["speed"]
    if kind == "remove":
        n_original = _train_size(original_dataset)
        count = removal_count(len(ids), n_original, iteration, steps, keep_fraction)
        chosen = rank_easiest_first(ids, speed)[:count]
    elif kind.startswith("move_"):
        chosen = moved_ids(ids, speed, fraction, kind.removeprefix("move_"), seed)
    else:
        raise ValueError(f"index_list: unknown kind {kind!r}")
    write_ids(out_path, chosen)
    log.info("%s: %d of %d train examples -> %s", kind, len(chosen), len(ids), out_path)


# ---------------------------------------------------------------------------------------- other classifiers


def _classifier(name: str, seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Perceptron
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    # scikit-learn defaults: the paper states no hyper-parameters (§5).
    makers = {
        "svm": lambda: SVC(),
        "knn": lambda: KNeighborsClassifier(),
        "perceptron": lambda: Perceptron(random_state=seed),
        "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
        "random_forest": lambda: RandomForestClassifier(random_state=seed, n_jobs=1),
        "gaussian_nb": lambda: GaussianNB(),
    }
    if name not in makers:
        raise ValueError(f"unknown classifier {name!r} (choose from {sorted(makers)})")
    return makers[name]()


def adaboost_staged_correct(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                            n_learners: int, weak_c: float, seed: int) -> np.ndarray:
    """(k, n) correctness of the k-learner AdaBoost ensemble, k = 1..n_learners, on (x_eval, y_eval).

    Multi-class AdaBoost = SAMME (Hastie et al. 2009, the paper's ref. [24]) with linear weak learners
    (multinomial logistic regression, inverse regularisation ``weak_c``). If boosting stops early (a perfect
    or useless weak learner), the last ensemble stands for the remaining k.
    """
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import LogisticRegression

    boost = AdaBoostClassifier(estimator=LogisticRegression(C=weak_c, max_iter=500), n_estimators=n_learners,
                               random_state=seed)
    boost.fit(x_train, y_train)
    rows = [pred == y_eval for pred in boost.staged_predict(x_eval)]
    while len(rows) < n_learners:
        rows.append(rows[-1])
    return np.array(rows)


def tercile_groups(speed: np.ndarray) -> np.ndarray:
    """0 = difficult, 1 = intermediate, 2 = easy: equal thirds of the examples by CNN speed of learning
    (ties by position). The paper groups by 'the consistency score of a CNN' without thresholds (Fig 6a)."""
    order = np.argsort(np.asarray(speed), kind="stable")
    groups = np.empty(len(order), dtype=np.int64)
    for g, part in enumerate(np.array_split(order, 3)):
        groups[part] = g
    return groups


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def other_classifiers(dataset_path: str | Path, scores_path: str | Path, out_path: str | Path, *,
                      classifiers: Sequence[str], adaboost_learners: int, adaboost_c: float,
                      cnn_epochs: Sequence[float], seed: int = 0) -> None:
    """§5 and Figs 6-7: AdaBoost with k linear weak learners and six scikit-learn classifiers, trained on the
    train split of the CNN ensemble's dataset (flattened inputs as stored), evaluated on the test split, and
    compared with the CNN ensemble (``scores_path``) on the same test examples.

    Writes ``classifiers.h5``: ``adaboost/correct`` (k, n) bool; ``adaboost/accuracy`` (k,);
    ``adaboost/group_accuracy`` (3, k) for difficult / intermediate / easy (:func:`tercile_groups`);
    ``adaboost/difficulty`` (n,) = mean over k of correctness (the accuracy over the number of weak
    learners, §5); ``adaboost`` attrs ``r``, ``p`` against the CNN speed of learning. Per classifier
    ``clf/<name>/correct`` (n,) and attr ``accuracy``. ``fig07/epochs`` (E,) the CNN checkpoints used,
    ``fig07/frac_cnn_correct`` and ``fig07/frac_cnn_wrong`` (E, n_classifiers): the fraction each classifier
    gets right among test examples the CNN classifies correctly (c^e > 0.5, i.e. a majority of the ensemble;
    the paper does not say) / wrongly.
    """
    import h5py

    from lossatlas.datasets import load_dataset

    data = load_dataset(dataset_path)
    scores = read_scores(scores_path)
    if not np.array_equal(scores["test"]["id"], data.id_test):
        raise ValueError(f"{scores_path}: test ids differ from {dataset_path}")
    x_tr, y_tr, x_te, y_te = _flat(data.x_train), data.y_train, _flat(data.x_test), data.y_test
    speed = scores["test"]["speed"]
    correct = adaboost_staged_correct(x_tr, y_tr, x_te, y_te, adaboost_learners, adaboost_c, seed)
    groups = tercile_groups(speed)
    difficulty = correct.mean(axis=0)
    r, p = pearson_r(difficulty, speed)
    fig07_idx = [nearest_checkpoint(scores["epoch"], e) for e in cnn_epochs]
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("adaboost")
        g["correct"] = correct
        g["accuracy"] = correct.mean(axis=1)
        g["group_accuracy"] = np.array([correct[:, groups == k].mean(axis=1) for k in range(3)])
        g["difficulty"] = difficulty
        g["cnn_speed"] = speed
        g.attrs.update(r=r, p=p, weak_c=adaboost_c, n_learners=adaboost_learners)
        f["fig07/epochs"] = scores["epoch"][fig07_idx]
        frac_right = np.full((len(fig07_idx), len(classifiers)), np.nan)
        frac_wrong = np.full_like(frac_right, np.nan)
        for j, name in enumerate(classifiers):
            clf = _classifier(name, seed).fit(x_tr, y_tr)
            ok = clf.predict(x_te) == y_te
            f[f"clf/{name}/correct"] = ok
            f[f"clf/{name}"].attrs["accuracy"] = float(ok.mean())
            for i, ci in enumerate(fig07_idx):
                cnn_ok = scores["test"]["consistency"][ci] > 0.5
                if cnn_ok.any():
                    frac_right[i, j] = ok[cnn_ok].mean()
                if (~cnn_ok).any():
                    frac_wrong[i, j] = ok[~cnn_ok].mean()
            log.info("%s: test accuracy %.3f", name, ok.mean())
        f["fig07/frac_cnn_correct"] = frac_right
        f["fig07/frac_cnn_wrong"] = frac_wrong
        f.attrs["classifiers"] = json.dumps(list(classifiers))
        f.attrs["cnn_test_accuracy"] = float(scores["test"]["accuracy"][-1])
    log.info("AdaBoost (%d learners): final accuracy %.3f, r with CNN speed %.3f", adaboost_learners,
             correct[-1].mean(), r)


# ------------------------------------------------------------------------------------------------- summary


def bimodality_summary(scores: dict, split: str) -> dict:
    """min and mean of Pearson's measure over the training epochs (whole epochs ≥ 1, defined values), and at
    the last checkpoint. The paper quotes one value per condition without saying which (FIGURES.md §2.3)."""
    b = scores[split]["bimodality"]
    mask = training_epochs(scores["epoch"]) & np.isfinite(b)
    vals = b[mask]
    return {
        "min": float(vals.min()) if vals.size else math.nan,
        "mean": float(vals.mean()) if vals.size else math.nan,
        "last": float(b[-1]),
    }


def moved_accuracy(scores: dict, moved: np.ndarray) -> np.ndarray:
    """(C,) ensemble mean accuracy on the test examples whose ids are in ``moved`` (the examples moved
    train → test)."""
    mask = np.isin(scores["test"]["id"], moved)
    if not mask.any():
        raise ValueError("moved_accuracy: none of the moved ids is in this ensemble's test split")
    return np.nanmean(scores["test"]["consistency"][:, mask], axis=1)


def _matched_rows(row, a: dict, b: dict, roles: Sequence[str], options: dict) -> None:
    """Fig 4c-d rows: the matched accuracy of each matched epoch pair and its corner-peak ratios (the same
    matching as lossatlas.figures.consistency.fig04cd_matched_epochs_2d)."""
    split = options["match_split"]
    acc_a, acc_b = a[split]["accuracy"], b[split]["accuracy"]
    targets = matched_targets(acc_a, acc_b, options.get("matched_accuracies"))
    for letter, target, paper in zip("cd", targets, (0.39, 0.71), strict=False):
        pair = matched_pair_near(acc_a, acc_b, target, options["match_tolerance"])
        if pair is None:
            row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: matched accuracy", paper, None,
                f"no epochs of {roles[0]} and {roles[1]} match within {options['match_tolerance']:g}")
            continue
        i, j = pair
        row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: matched accuracy", paper, (acc_a[i] + acc_b[j]) / 2,
            f"{roles[0]} epoch {a['epoch'][i]:g} ({acc_a[i]:.3f}), {roles[1]} epoch {b['epoch'][j]:g} "
            f"({acc_b[j]:.3f}), {split}; target {target:.3f}")
        hist = consistency_histogram_2d(a["test"]["consistency"][i], b["test"]["consistency"][j],
                                        int(a["attrs"]["n_members"]), int(b["attrs"]["n_members"]))
        ratios = corner_peak_ratios(hist)
        row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: corner peak / mean off-corner mass", 10 if letter == "c"
            else None, ratios["vs_mean"], f"min(P(0,0), P(1,1)) = {ratios['peak']:.3f}; "
            f"vs the largest off-corner cell: {ratios['vs_max']:.2f}")


def _fig09_fig11_rows(row, main: dict) -> None:
    """Supp. C rows: Fig 9 classes at consistency 1 early on, Fig 11 typical climb time (train set)."""
    c, labels = main["train"]["consistency"], main["train"]["y"]
    i, classes = classes_at_one(c, labels)
    row("Supp C Fig 9", "Fig 9: classes with images at consistency 1 (first such epoch)", 2,
        len(classes) if i >= 0 else None,
        f"epoch {main['epoch'][i]:g}: labels {classes}" if i >= 0 else "no train image reaches consistency 1")
    i2, classes2 = classes_at_one(c, labels, min_fraction=0.02)
    row("Supp C Fig 9", "Fig 9: classes with images at consistency 1 (first epoch with 2 % at 1)", 2,
        len(classes2) if i2 >= 0 else None, f"epoch {main['epoch'][i2]:g}: labels {classes2}" if i2 >= 0
        else "fewer than 2 % of the train images reach consistency 1")
    climbs = climb_times(main["epoch"], c)
    row("Supp C Fig 11", "Fig 11: median epochs from consistency <= 0.3 to >= 0.9 (train)", 1,
        float(np.median(climbs)) if climbs.size else None,
        f"{climbs.size} of {c.shape[1]} train images climb; 75th percentile "
        f"{np.percentile(climbs, 75):.2f}" if climbs.size else "no train image climbs from <= 0.3 to >= 0.9")


def summary_table(scores_paths: dict[str, str], classifiers_path: str | Path, move_files: dict[str, str],
                  cross_pairs: Sequence[Sequence[str]], out_csv: str | Path, out_md: str | Path,
                  out_json: str | Path, figure_options: dict | None = None) -> None:
    """The §3 and §5 numbers (accuracies, r values, Pearson bimodality per condition) next to the paper's.

    ``scores_paths``: role → scores.h5, roles 'main', 'linear', 'small', 'random_labels', 'hard_final',
    'random_subset', 'move_<which>' and any other ensembles named in ``cross_pairs``. ``figure_options``: the
    study's ``figures:`` section (Fig 4c-d matching: matched_accuracies, match_tolerance, match_split); the
    Fig 4c-d rows are left out without it. Writes a CSV and a Markdown table (section, quantity, paper, ours,
    note) and the same rows as JSON.
    """
    import h5py

    sc = {role: read_scores(p) for role, p in scores_paths.items()}
    rows: list[dict] = []

    def row(section: str, quantity: str, paper, ours, note: str = "") -> None:
        rows.append({"section": section, "quantity": quantity, "paper": paper,
                     "ours": None if ours is None or (isinstance(ours, float) and math.isnan(ours))
                     else round(float(ours), 4), "note": note})

    main = sc["main"]
    k = int(main["attrs"]["num_classes"])
    row("§3 Fig 1a", "mean consistency at initialisation (test)", 1 / k,
        np.nanmean(main["test"]["consistency"][0]), "chance = 1/K")
    n_main = int(main["attrs"]["n_members"])
    first, last, n_ckpt = beginning_phase(main["epoch"], main["test"]["consistency"], n_main)
    row("§3", "last epoch where the mode of c^e is 0 (test)", 10, last,
        f"first run of such checkpoints: epochs {first:g}-{last:g} ({n_ckpt} checkpoints)" if n_ckpt
        else "the mode of c^e is never 0 (reported as 0)")
    row("§3", "checkpoints where the mode of c^e is 0 (test)", None, n_ckpt, "first contiguous run")
    paper_acc = {"main": 0.56, "linear": 0.43}
    derived = ("random_labels", "hard_final", "random_subset")  # reported in their own rows below
    others = sorted(r for r in sc if r not in ("main", "linear", "small", *derived) and not r.startswith("move_"))
    for role in ("main", "linear", "small", *others):  # others: e.g. the Supp. A/C ensembles (mnist, cifar10_…)
        if role in sc:
            row("§4.2", f"test accuracy, {role} ensemble (last epoch)", paper_acc.get(role),
                sc[role]["test"]["accuracy"][-1], f"N={sc[role]['attrs']['n_members']}")
    paper_b = {"main": 0.22, "linear": 0.055}
    for role in ("main", "linear", "small"):
        if role in sc:
            for split in SPLITS:
                b = bimodality_summary(sc[role], split)
                row("§4.2 Fig 5c", f"Pearson bimodality, {role}, {split}: min / mean over epochs",
                    paper_b.get(role) if split == "test" else None, b["min"], f"mean {b['mean']:.3f}")
    if "random_labels" in sc:
        rl = sc["random_labels"]
        for split, paper in (("train", 1.07), ("test", 1.35)):
            b = bimodality_summary(rl, split)
            row("§6 Fig 8a-c", f"random labels: min Pearson bimodality, {split}", paper, b["min"],
                f"mean {b['mean']:.3f}")
        row("§6", "random labels: final train accuracy (no dropout)", 1.0, rl["train"]["accuracy"][-1])
        for split, paper in (("train", 0.8), ("test", 0.0)):
            row("§6", f"random labels: mean consistency at the last epoch, {split}", paper,
                np.nanmean(rl[split]["consistency"][-1]))
    r, p = pearson_r(main["test"]["speed_half_a"], main["test"]["speed_half_b"])
    row("§4 Fig 4a", "speed of learning r, same architecture (two halves), test", 0.99, r, f"p={p:.2g}")
    r, p = pearson_r(main["train"]["speed_half_a"], main["train"]["speed_half_b"])
    row("§4 Fig 4a", "speed of learning r, same architecture (two halves), train", None, r, f"p={p:.2g}")
    for a, b in cross_pairs:
        if a in sc and b in sc:
            r, p = pearson_r(sc[a]["test"]["speed"], sc[b]["test"]["speed"])
            first = (a, b) == ("main", "small")
            row("§4.1 Fig 4b", f"speed of learning r, {a} vs {b}, test", 0.87 if first else None, r,
                f"p={p:.2g}" + ("; paper: ResNet-50 vs AlexNet" if first else ""))
    if figure_options is not None and cross_pairs:
        _matched_rows(row, sc[cross_pairs[0][0]], sc[cross_pairs[0][1]], cross_pairs[0], figure_options)
    _fig09_fig11_rows(row, main)
    with h5py.File(classifiers_path, "r") as f:
        row("§5 Fig 6b", "AdaBoost vs CNN difficulty r (test)", 0.83, f["adaboost"].attrs["r"],
            f"p={f['adaboost'].attrs['p']:.2g}")
        row("§5 Fig 6a", "AdaBoost accuracy, all k (test)", None, f["adaboost/accuracy"][-1])
        paper_clf = {"svm": 0.48, "knn": 0.36, "perceptron": 0.35, "decision_tree": 0.31,
                     "random_forest": 0.48, "gaussian_nb": 0.38}
        for name in json.loads(f.attrs["classifiers"]):
            row("§5", f"{name} test accuracy", paper_clf.get(name), f[f"clf/{name}"].attrs["accuracy"])
        row("§5", "CNN test accuracy", 0.56, f.attrs["cnn_test_accuracy"])
    if "hard_final" in sc:
        row("§6 Fig 8d", "hard dataset (hardest 20 % kept): test accuracy", 0.3,
            sc["hard_final"]["test"]["accuracy"][-1])
        b = bimodality_summary(sc["hard_final"], "test")
        row("§6 Fig 8d", "hard dataset: min Pearson bimodality, test", None, b["min"], "no phase 3 expected")
    if "random_subset" in sc:
        row("§6 Fig 8d", "random 20 % of the train set: test accuracy", 0.47,
            sc["random_subset"]["test"]["accuracy"][-1])
    row("§6 Fig 8d", "full train set: test accuracy", 0.56, main["test"]["accuracy"][-1])
    paper_moves = {"easiest": (1.0, None), "hardest": (0.08, 0.0), "random": (None, None)}
    for which, path in move_files.items():
        role = f"move_{which}"
        if role not in sc:
            continue
        acc = moved_accuracy(sc[role], read_ids(path))
        e1 = nearest_checkpoint(sc[role]["epoch"], 1.0)
        p1, plast = paper_moves.get(which, (None, None))
        row("§3 Robustness", f"moved {which} train->test: accuracy at epoch 1", p1, acc[e1])
        rest = f"test accuracy of all test examples {sc[role]['test']['accuracy'][-1]:.3f}"
        row("§3 Robustness", f"moved {which} train->test: accuracy at the last epoch", plast, acc[-1], rest)
    write_json(out_json, rows)
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["section", "quantity", "paper", "ours", "note"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_csv) as tmp:
        tmp.write_text(buf.getvalue())
    lines = ["# consistency (Hacohen & Weinshall): paper numbers vs this run", "",
             "| section | quantity | paper | ours | note |", "|---|---|---|---|---|"]
    for r_ in rows:
        lines.append(f"| {r_['section']} | {r_['quantity']} | {'' if r_['paper'] is None else r_['paper']} | "
                     f"{'' if r_['ours'] is None else r_['ours']} | {r_['note']} |")
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
