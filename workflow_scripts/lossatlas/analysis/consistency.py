"""The analysis step of Hacohen & Weinshall, *All Neural Networks are Created Equal* (papers/created_equal.txt,
FIGURES.md §2): from the ensembles' scores (consistency_scores.py), the index lists (consistency_index.py) and
the other classifiers (consistency_classifiers.py) to every table the claims read and every array the figures
draw.

``consistency_analysis`` writes ``summary.csv``/``.md``/``.json`` (the §3-§6 numbers, one row per quantity; the
claims table sets the paper's values beside them) and one ``figure_data/<figure>.h5`` per figure file
(lossatlas.io.write_figure_data), made by the function of that figure's name here: checkpoint and phase
selection, histograms, matched epochs, correlations. Formulas first (tested on hand-built arrays).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossatlas.analysis.consistency_classifiers import read_classifiers
from lossatlas.analysis.consistency_index import read_ids
from lossatlas.analysis.consistency_scores import (
    SPLITS,
    nearest_checkpoint,
    pearson_r,
    read_scores,
    training_epochs,
)
from lossatlas.figure_data import write_figure_data
from lossatlas.io import atomic_path, write_json

# ------------------------------------------------------------------------------------------------ formulas


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
    matching as Fig 4c-d's data, :func:`fig04cd_matched_epochs_2d`)."""
    split = options["match_split"]
    acc_a, acc_b = a[split]["accuracy"], b[split]["accuracy"]
    targets = matched_targets(acc_a, acc_b, options.get("matched_accuracies"))
    for letter, target in zip("cd", targets, strict=False):
        pair = matched_pair_near(acc_a, acc_b, target, options["match_tolerance"])
        if pair is None:
            row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: matched accuracy", None,
                f"no epochs of {roles[0]} and {roles[1]} match within {options['match_tolerance']:g}")
            continue
        i, j = pair
        row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: matched accuracy", (acc_a[i] + acc_b[j]) / 2,
            f"{roles[0]} epoch {a['epoch'][i]:g} ({acc_a[i]:.3f}), {roles[1]} epoch {b['epoch'][j]:g} "
            f"({acc_b[j]:.3f}), {split}; target {target:.3f}")
        hist = consistency_histogram_2d(a["test"]["consistency"][i], b["test"]["consistency"][j],
                                        int(a["attrs"]["n_members"]), int(b["attrs"]["n_members"]))
        ratios = corner_peak_ratios(hist)
        row(f"§4.1 Fig 4{letter}", f"Fig 4{letter}: corner peak / mean off-corner mass", ratios["vs_mean"],
            f"min(P(0,0), P(1,1)) = {ratios['peak']:.3f}; vs the largest off-corner cell: {ratios['vs_max']:.2f}")


def _fig09_fig11_rows(row, main: dict) -> None:
    """Supp. C rows: Fig 9 classes at consistency 1 early on, Fig 11 typical climb time (train set)."""
    c, labels = main["train"]["consistency"], main["train"]["y"]
    i, classes = classes_at_one(c, labels)
    row("Supp C Fig 9", "Fig 9: classes with images at consistency 1 (first such epoch)",
        len(classes) if i >= 0 else None,
        f"epoch {main['epoch'][i]:g}: labels {classes}" if i >= 0 else "no train image reaches consistency 1")
    i2, classes2 = classes_at_one(c, labels, min_fraction=0.02)
    row("Supp C Fig 9", "Fig 9: classes with images at consistency 1 (first epoch with 2 % at 1)",
        len(classes2) if i2 >= 0 else None,
        f"epoch {main['epoch'][i2]:g}: labels {classes2}" if i2 >= 0
        else "fewer than 2 % of the train images reach consistency 1")
    climbs = climb_times(main["epoch"], c)
    row("Supp C Fig 11", "Fig 11: median epochs from consistency <= 0.3 to >= 0.9 (train)",
        float(np.median(climbs)) if climbs.size else None,
        f"{climbs.size} of {c.shape[1]} train images climb; 75th percentile "
        f"{np.percentile(climbs, 75):.2f}" if climbs.size else "no train image climbs from <= 0.3 to >= 0.9")


def summary_rows(sc: dict[str, dict], classifiers: dict, moves: dict[str, np.ndarray],
                 cross_pairs: Sequence[Sequence[str]], options: dict) -> list[dict]:
    """The §3-§6 numbers (accuracies, r values, Pearson bimodality per condition), one row per quantity:
    section, quantity, ours, note. The paper's values sit beside ours in the claims table (claims.yaml).

    ``sc``: role → scores (read_scores), roles 'main', 'linear', 'small', 'random_labels', 'hard_final',
    'random_subset', 'move_<which>' and any other ensembles named in ``cross_pairs``; ``classifiers``:
    read_classifiers; ``moves``: which → the moved ids; ``options``: the study's ``figures:`` section (Fig 4c-d
    matching: matched_accuracies, match_tolerance, match_split).
    """
    rows: list[dict] = []

    def row(section: str, quantity: str, ours, note: str = "") -> None:
        rows.append({"section": section, "quantity": quantity,
                     "ours": None if ours is None or (isinstance(ours, float) and math.isnan(ours))
                     else round(float(ours), 4), "note": note})

    main = sc["main"]
    row("§3 Fig 1a", "mean consistency at initialisation (test)", np.nanmean(main["test"]["consistency"][0]),
        "chance = 1/K")
    n_main = int(main["attrs"]["n_members"])
    first, last, n_ckpt = beginning_phase(main["epoch"], main["test"]["consistency"], n_main)
    row("§3", "last epoch where the mode of c^e is 0 (test)", last,
        f"first run of such checkpoints: epochs {first:g}-{last:g} ({n_ckpt} checkpoints)" if n_ckpt
        else "the mode of c^e is never 0 (reported as 0)")
    row("§3", "checkpoints where the mode of c^e is 0 (test)", n_ckpt, "first contiguous run")
    derived = ("random_labels", "hard_final", "random_subset")  # reported in their own rows below
    others = sorted(r for r in sc if r not in ("main", "linear", "small", *derived) and not r.startswith("move_"))
    for role in ("main", "linear", "small", *others):  # others: e.g. the Supp. A/C ensembles (mnist, cifar10_…)
        if role in sc:
            row("§4.2", f"test accuracy, {role} ensemble (last epoch)", sc[role]["test"]["accuracy"][-1],
                f"N={sc[role]['attrs']['n_members']}")
    for role in ("main", "linear", "small"):
        if role in sc:
            for split in SPLITS:
                b = bimodality_summary(sc[role], split)
                row("§4.2 Fig 5c", f"Pearson bimodality, {role}, {split}: min / mean over epochs", b["min"],
                    f"mean {b['mean']:.3f}")
    if "random_labels" in sc:
        rl = sc["random_labels"]
        for split in SPLITS:
            b = bimodality_summary(rl, split)
            row("§6 Fig 8a-c", f"random labels: min Pearson bimodality, {split}", b["min"], f"mean {b['mean']:.3f}")
        row("§6", "random labels: final train accuracy (no dropout)", rl["train"]["accuracy"][-1])
        for split in SPLITS:
            row("§6", f"random labels: mean consistency at the last epoch, {split}",
                np.nanmean(rl[split]["consistency"][-1]))
    r, p = pearson_r(main["test"]["speed_half_a"], main["test"]["speed_half_b"])
    row("§4 Fig 4a", "speed of learning r, same architecture (two halves), test", r, f"p={p:.2g}")
    r, p = pearson_r(main["train"]["speed_half_a"], main["train"]["speed_half_b"])
    row("§4 Fig 4a", "speed of learning r, same architecture (two halves), train", r, f"p={p:.2g}")
    for a, b in cross_pairs:
        if a in sc and b in sc:
            r, p = pearson_r(sc[a]["test"]["speed"], sc[b]["test"]["speed"])
            first = (a, b) == ("main", "small")
            row("§4.1 Fig 4b", f"speed of learning r, {a} vs {b}, test", r,
                f"p={p:.2g}" + ("; paper: ResNet-50 vs AlexNet" if first else ""))
    if cross_pairs:
        _matched_rows(row, sc[cross_pairs[0][0]], sc[cross_pairs[0][1]], cross_pairs[0], options)
    _fig09_fig11_rows(row, main)
    row("§5 Fig 6b", "AdaBoost vs CNN difficulty r (test)", classifiers["r"], f"p={classifiers['p']:.2g}")
    row("§5 Fig 6a", "AdaBoost accuracy, all k (test)", classifiers["boost_acc"][-1])
    for name in classifiers["names"]:
        row("§5", f"{name} test accuracy", classifiers["acc"][name])
    row("§5", "CNN test accuracy", classifiers["cnn_acc"])
    if "hard_final" in sc:
        row("§6 Fig 8d", "hard dataset (hardest 20 % kept): test accuracy", sc["hard_final"]["test"]["accuracy"][-1])
        b = bimodality_summary(sc["hard_final"], "test")
        row("§6 Fig 8d", "hard dataset: min Pearson bimodality, test", b["min"], "no phase 3 expected")
    if "random_subset" in sc:
        row("§6 Fig 8d", "random 20 % of the train set: test accuracy", sc["random_subset"]["test"]["accuracy"][-1])
    row("§6 Fig 8d", "full train set: test accuracy", main["test"]["accuracy"][-1])
    for which, ids in moves.items():
        role = f"move_{which}"
        if role not in sc:
            continue
        acc = moved_accuracy(sc[role], ids)
        e1 = nearest_checkpoint(sc[role]["epoch"], 1.0)
        row("§3 Robustness", f"moved {which} train->test: accuracy at epoch 1", acc[e1])
        rest = f"test accuracy of all test examples {sc[role]['test']['accuracy'][-1]:.3f}"
        row("§3 Robustness", f"moved {which} train->test: accuracy at the last epoch", acc[-1], rest)
    return rows


def write_summary(rows: list[dict], out_csv: str | Path, out_md: str | Path, out_json: str | Path) -> None:
    """The summary rows as JSON, CSV (what the claims read) and a Markdown table."""
    write_json(out_json, rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["section", "quantity", "ours", "note"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_csv) as tmp:
        tmp.write_text(buf.getvalue())
    lines = ["# consistency (Hacohen & Weinshall): the numbers of this run (the paper's: results/claims.md)", "",
             "| section | quantity | ours | note |", "|---|---|---|---|"]
    for r_ in rows:
        lines.append(f"| {r_['section']} | {r_['quantity']} | {'' if r_['ours'] is None else r_['ours']} | "
                     f"{r_['note']} |")
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ what each figure draws
# Each function takes the study's analysis inputs (``study``: scores by role, classifiers, moved ids, the pair of
# ensembles compared, options = the ``figures:`` section) and returns the figure's data: the checkpoints it
# shows, its histograms (fractions on the grid {0, 1/N, …, 1}), curves and the numbers its titles quote.


def histogram(values: np.ndarray, n: int, total: int | None = None) -> np.ndarray:
    """(n+1,) fraction of ``total`` examples (default: len(values)) at each consistency value k/n."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.rint(values[np.isfinite(values)] * n).astype(int), minlength=n + 1)[: n + 1]
    return counts / float(total if total is not None else max(len(values), 1))


def _n(scores: dict) -> int:
    return int(scores["attrs"]["n_members"])


def phases(scores: dict, options: dict) -> list[int]:
    """Figs 1, 3, 9: the checkpoints of the 4 phases, configured (phase_epochs) or chosen from the data."""
    if options.get("phase_epochs"):
        return [nearest_checkpoint(scores["epoch"], e) for e in options["phase_epochs"]]
    return phase_checkpoints(scores["epoch"], scores["train"]["consistency"], scores["test"]["bimodality"])


def _score_grid(scores: dict, idx: list[int], key: str) -> dict:
    """Histograms of ``key`` (consistency | consensus) at checkpoints ``idx``, train and test, with Pearson's
    measure (consistency) or the mean score (consensus) of each."""
    n = _n(scores)
    out = {"n": n, "epoch": scores["epoch"][idx]}
    for split in SPLITS:
        vals = scores[split][key][idx]
        out[split] = {"hist": np.array([histogram(v, n) for v in vals]),
                      "bimodality": scores[split]["bimodality"][idx],
                      "mean": np.array([np.nanmean(v) for v in vals])}
    return out


def fig01_consistency_phases(study: dict) -> dict:
    s = study["scores"]["main"]
    return _score_grid(s, phases(s, study["options"]), "consistency")


def fig02_consistency_epochs(study: dict) -> dict:
    s = study["scores"][study["fig02_ensemble"]]
    idx = sorted({nearest_checkpoint(s["epoch"], e) for e in study["options"]["fig02_epochs"]})
    n = _n(s)
    return {"n": n, "label": str(s["attrs"]["label"]), "epoch": s["epoch"][idx],
            "hist": np.array([histogram(s["test"]["consistency"][ci], n) for ci in idx]),
            "bimodality": s["test"]["bimodality"][idx], "accuracy": s["test"]["accuracy"][idx]}


def fig03_consensus_phases(study: dict) -> dict:
    s = study["scores"]["main"]
    return _score_grid(s, phases(s, study["options"]), "consensus")


def _scatter(x: np.ndarray, y: np.ndarray) -> dict:
    r, p = pearson_r(x, y)
    return {"x": np.asarray(x, dtype=np.float64), "y": np.asarray(y, dtype=np.float64), "r": r, "p": p}


def fig04a_speed_two_halves(study: dict) -> dict:
    s = study["scores"]["main"]
    split = study["options"]["speed_split"]
    return {"split": split, "half": _n(s) // 2, **_scatter(s[split]["speed_half_a"], s[split]["speed_half_b"])}


def fig04b_speed_cross_arch(study: dict) -> dict:
    (role_a, role_b), sc = study["pair"], study["scores"]
    a, b = sc[role_a], sc[role_b]
    split = study["options"]["speed_split"]
    if not np.array_equal(a[split]["id"], b[split]["id"]):
        raise ValueError(f"fig04b: the ensembles {role_a} and {role_b} hold different examples")
    return {"split": split, "roles": [role_a, role_b], "n": [_n(a), _n(b)],
            **_scatter(a[split]["speed"], b[split]["speed"])}


def fig04cd_matched_epochs_2d(study: dict) -> dict:
    """2-D consistency histograms at the epoch pairs whose accuracies match the targets (see :func:`_matched_rows`
    for the same matching in the table)."""
    (role_a, role_b), options = study["pair"], study["options"]
    a, b = study["scores"][role_a], study["scores"][role_b]
    split, tol = options["match_split"], options["match_tolerance"]
    acc_a, acc_b = a[split]["accuracy"], b[split]["accuracy"]
    panels = {}
    for k, target in enumerate(matched_targets(acc_a, acc_b, options.get("matched_accuracies"))):
        pair = matched_pair_near(acc_a, acc_b, target, tol)
        if pair is None:
            raise ValueError(f"fig04cd: no epochs of {role_a} and {role_b} match within {tol} (accuracy ranges "
                             f"{acc_a.min():.2f}-{acc_a.max():.2f}, {acc_b.min():.2f}-{acc_b.max():.2f})")
        i, j = pair
        hist = consistency_histogram_2d(a["test"]["consistency"][i], b["test"]["consistency"][j], _n(a), _n(b))
        panels[str(k)] = {"hist": hist, "accuracy": [float(acc_a[i]), float(acc_b[j])],
                          "epoch": [float(a["epoch"][i]), float(b["epoch"][j])],
                          "corners": float(hist[0, 0] + hist[-1, -1])}
    return {"roles": [role_a, role_b], "n": [_n(a), _n(b)], "split": split, "match_tolerance": tol,
            "saturation": options["saturation"], "panels": panels}


def fig05ab_linear_vs_nonlinear(study: dict) -> dict:
    """Per configured epoch: the non-linear ensemble's test consistency histogram and the part of it that the
    linear ensemble classifies correctly (linear consistency > 0.5, a majority; the paper does not say)."""
    s, lin = study["scores"]["main"], study["scores"]["linear"]
    if not np.array_equal(s["test"]["id"], lin["test"]["id"]):
        raise ValueError("fig05ab: the linear and non-linear ensembles hold different test examples")
    panels = {}
    for k, e in enumerate(study["options"]["fig05_epochs"]):
        i, j = nearest_checkpoint(s["epoch"], e), nearest_checkpoint(lin["epoch"], e)
        c = s["test"]["consistency"][i]
        lin_ok = lin["test"]["consistency"][j] > 0.5
        panels[str(k)] = {"epoch": float(s["epoch"][i]), "hist_all": histogram(c, _n(s), len(c)),
                          "hist_linear_correct": histogram(c[lin_ok], _n(s), len(c)),
                          "linear_correct": int(lin_ok.sum()),
                          "share": float((c[lin_ok] > 0.5).mean()) if lin_ok.any() else math.nan}
    return {"n": _n(s), "panels": panels}


def _bimodality_curves(scores: dict) -> dict:
    ok = scores["epoch"] > 0
    return {"epoch": scores["epoch"][ok], **{split: scores[split]["bimodality"][ok] for split in SPLITS}}


def fig05c_linear_consistency(study: dict) -> dict:
    s, lin = study["scores"]["main"], study["scores"]["linear"]
    idx = [nearest_checkpoint(lin["epoch"], 1), len(lin["epoch"]) // 2, len(lin["epoch"]) - 1]
    return {"n": _n(lin), "epoch": lin["epoch"][idx],
            "hist": np.array([histogram(lin["test"]["consistency"][ci], _n(lin)) for ci in idx]),
            "bimodality": lin["test"]["bimodality"][idx], "accuracy": lin["test"]["accuracy"][idx],
            "curves": {"linear": _bimodality_curves(lin), "non-linear": _bimodality_curves(s)},
            "min_bimodality": {"linear": bimodality_summary(lin, "test")["min"],
                               "non-linear": bimodality_summary(s, "test")["min"]}}


def fig06a_adaboost_groups(study: dict) -> dict:
    c = study["classifiers"]
    return {"group_accuracy": c["group_acc"], "accuracy": c["boost_acc"]}


def fig06b_adaboost_vs_cnn(study: dict) -> dict:
    c = study["classifiers"]
    return {"x": c["difficulty"], "y": c["cnn_speed"], "r": c["r"], "p": c["p"]}


def fig07_other_classifiers(study: dict) -> dict:
    c = study["classifiers"]
    return {"names": c["names"], "accuracy": [c["acc"][n] for n in c["names"]], "epoch": c["fig07_epochs"],
            "frac_right": c["frac_right"], "frac_wrong": c["frac_wrong"], "cnn_accuracy": c["cnn_acc"]}


def fig08abc_random_labels(study: dict) -> dict:
    s = study["scores"]["random_labels"]
    stages = study["options"].get("fig08_epochs") or [1, round(float(s["epoch"][-1]) / 2), -1]
    grid = _score_grid(s, [nearest_checkpoint(s["epoch"], e) for e in stages], "consistency")
    return {**grid, "min_bimodality": {split: bimodality_summary(s, split)["min"] for split in SPLITS},
            "final_train_accuracy": float(s["train"]["accuracy"][-1])}


def fig08d_hard_dataset(study: dict) -> dict:
    """The hard set's consistency at the beginning and end of training, and test accuracy / Pearson's measure
    over training of the full train set, a random subset of the same size and the hard subset."""
    sc = study["scores"]
    hard = sc["hard_final"]
    grid = _score_grid(hard, [nearest_checkpoint(hard["epoch"], 1), len(hard["epoch"]) - 1], "consistency")
    curves = {}
    for name, role in (("full train set", "main"), ("random subset", "random_subset"),
                       ("hard subset", "hard_final")):
        s = sc[role]
        ok = s["epoch"] > 0
        curves[name] = {"epoch": s["epoch"][ok], "accuracy": s["test"]["accuracy"][ok],
                        "bimodality": s["test"]["bimodality"][ok], "n_train": len(s["train"]["id"]),
                        "final_accuracy": float(s["test"]["accuracy"][-1])}
    return {**grid, "curves": curves}


def fig09_class_hierarchy(study: dict) -> dict:
    """Train-set consistency histograms stacked by each image's most frequent predicted label, at the configured
    epochs or at the first checkpoint where 2 % of the train images reach c = 1, phase (iii) and the end."""
    s, options = study["scores"]["main"], study["options"]
    if options.get("fig09_epochs"):
        idx = [nearest_checkpoint(s["epoch"], e) for e in options["fig09_epochs"]]
    else:
        at_one = np.flatnonzero((s["train"]["consistency"] == 1).mean(axis=1) >= 0.02)
        first = int(at_one[0]) if at_one.size else phases(s, options)[1]
        idx = sorted({first, *phases(s, options)[2:]})
    k, n = int(s["attrs"]["num_classes"]), _n(s)
    panels = {}
    for col, ci in enumerate(idx):
        c, modal = s["train"]["consistency"][ci], s["train"]["modal_label"][ci]
        panels[str(col)] = {"epoch": float(s["epoch"][ci]),
                            "hist": np.array([histogram(c[modal == label], n, len(c)) for label in range(k)]),
                            "labels_at_one": sorted({int(v) for v in modal[c == 1]})}
    return {"n": n, "num_classes": k, "panels": panels}


def fig10_consistency_over_time(study: dict) -> dict:
    """Every example's consistency at every checkpoint, examples sorted by speed of learning (fastest first)."""
    s = study["scores"]["main"]
    out = {"label": str(s["attrs"]["label"]), "epoch": s["epoch"]}
    for split in SPLITS:
        order = np.argsort(-s[split]["speed"], kind="stable")
        out[split] = s[split]["consistency"][:, order].T
    return out


def fig11_example_trajectories(study: dict) -> dict:
    s = study["scores"]["main"]
    c = s["train"]["consistency"]
    picks = example_patterns(s["epoch"], c)
    return {"epoch": s["epoch"], "consistency": np.array([c[:, i] for i, _ in picks]),
            "id": [int(s["train"]["id"][i]) for i, _ in picks], "pattern": [label for _, label in picks],
            "chance": 1 / int(s["attrs"]["num_classes"])}


def robustness_moves(study: dict) -> dict:
    """§3 robustness: accuracy on the moved examples over the retrained ensemble's epochs (and, for the random
    move, on the whole test set)."""
    out = {}
    for which, ids in study["moves"].items():
        s = study["scores"][f"move_{which}"]
        out[which] = {"epoch": s["epoch"], "accuracy": moved_accuracy(s, ids),
                      "test_accuracy": s["test"]["accuracy"]}
    return out


FIGURE_DATA = {f.__name__: f for f in (
    fig01_consistency_phases, fig02_consistency_epochs, fig03_consensus_phases, fig04a_speed_two_halves,
    fig04b_speed_cross_arch, fig04cd_matched_epochs_2d, fig05ab_linear_vs_nonlinear, fig05c_linear_consistency,
    fig06a_adaboost_groups, fig06b_adaboost_vs_cnn, fig07_other_classifiers, fig08abc_random_labels,
    fig08d_hard_dataset, fig09_class_hierarchy, fig10_consistency_over_time, fig11_example_trajectories,
    robustness_moves)}


def consistency_analysis(scores_paths: dict[str, str], classifiers_path: str | Path, move_files: dict[str, str],
                         cross_pairs: Sequence[Sequence[str]], fig02_ensemble: str, options: dict, *,
                         out_csv: str | Path, out_md: str | Path, out_json: str | Path,
                         figure_data: dict[str, str]) -> None:
    """The study's one analysis job: the summary table and each figure's data.

    ``scores_paths``: role → scores.h5 (consistency_plan.role_scores); ``move_files``: which → index file of
    the moved ids; ``options``: the study's ``figures:`` section; ``figure_data``: figure name (a key of
    FIGURE_DATA) → the file it is written to. Figures compare the first of ``cross_pairs``.
    """
    unknown = sorted(set(figure_data) - set(FIGURE_DATA))
    if unknown:
        raise ValueError(f"consistency_analysis: no figure named {unknown}")
    study = {"scores": {role: read_scores(p) for role, p in scores_paths.items()},
             "classifiers": read_classifiers(classifiers_path),
             "moves": {which: read_ids(p) for which, p in move_files.items()},
             "pair": list(cross_pairs[0]), "fig02_ensemble": fig02_ensemble, "options": dict(options)}
    rows = summary_rows(study["scores"], study["classifiers"], study["moves"], cross_pairs, study["options"])
    write_summary(rows, out_csv, out_md, out_json)
    for name, path in figure_data.items():
        write_figure_data(path, FIGURE_DATA[name](study))
