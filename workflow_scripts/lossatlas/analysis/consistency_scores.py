"""The consistency study's first experiment step (Hacohen & Weinshall, *All Neural Networks are Created Equal*;
papers/created_equal.txt, FIGURES.md §2): one ensemble's per-example consistency, consensus and speed of learning.

An *ensemble* is every member (seed) of one (recipe, dataset, architecture) of the consistency study, read
from the stacked per-example predictions of its seed blocks' ``metrics.h5`` (contract §3). The paper's formal
definition trains an independent instance per extent e (N·E instances); here, as in practice, the N members
are checkpointed along one run each, and f_i^e is member i at checkpoint e (FIGURES.md §2.0).

Pure formulas first (tested on hand-built arrays), then ``ensemble_scores`` (one ensemble → scores.h5) and its
reader. The index lists (consistency_index.py), the other classifiers (consistency_classifiers.py) and the
analysis (consistency.py) build on these.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossatlas.io import atomic_path

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


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



def nearest_checkpoint(epochs: np.ndarray, epoch: float) -> int:
    """Index of the checkpoint closest to ``epoch``; a negative epoch counts from the end (-1 = last)."""
    epochs = np.asarray(epochs, dtype=np.float64)
    if epoch < 0:
        return int(len(epochs) + epoch)
    return int(np.argmin(np.abs(epochs - epoch)))



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
