"""Figures 1-11 of Hacohen & Weinshall, *All Neural Networks are Created Equal* (papers/created_equal.txt),
plus the §3 robustness experiment, drawn from the study's analysis outputs only (scores.h5 of each ensemble
and classifiers.h5, see lossatlas/analysis/consistency.py).

Every function is ``figNN_<what>(inputs, options, out_path)``: ``inputs`` maps the role names of
rules/consistency.smk to files, ``options`` holds the ``studies.consistency.figures`` keys the figure uses.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lossatlas.analysis import consistency as an  # noqa: E402
from lossatlas.io import atomic_path  # noqa: E402

DPI = 110
PAPER = "Hacohen & Weinshall"
BLUE, RED = "#1f77b4", "#d62728"


def _save(fig, out_path: str) -> None:
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def _n(scores: dict) -> int:
    return int(scores["attrs"]["n_members"])


def _hist(ax, values: np.ndarray, n: int, color: str = BLUE, label: str | None = None,
          total: int | None = None, bottom: np.ndarray | None = None) -> np.ndarray:
    """Histogram on the grid {0, 1/N, ..., 1}, as a fraction of ``total`` examples (default: len(values))."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.rint(values[np.isfinite(values)] * n).astype(int), minlength=n + 1)[: n + 1]
    frac = counts / float(total if total is not None else max(len(values), 1))
    ax.bar(np.arange(n + 1) / n, frac, width=0.9 / n, color=color, label=label, bottom=bottom)
    ax.set_xlim(-0.05, 1.05)
    return frac


def _epoch_label(epoch: float) -> str:
    return f"epoch {epoch:g}" if float(epoch).is_integer() else f"epoch {epoch:.2f}"


def _b(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:.3f}"


def _phases(scores: dict, options: dict) -> list[int]:
    if options.get("phase_epochs"):
        return [an.nearest_checkpoint(scores["epoch"], e) for e in options["phase_epochs"]]
    return an.phase_checkpoints(scores["epoch"], scores["train"]["consistency"], scores["test"]["bimodality"])


PHASE_NAMES = ["(a) initialisation", "(b) beginning of learning", "(c) bi-modality", "(d) end of learning"]


def _score_grid(scores: dict, idx: list[int], titles: list[str], key: str, figure: str,
                what: str) -> plt.Figure:
    n = _n(scores)
    fig, axes = plt.subplots(2, len(idx), figsize=(3.1 * len(idx), 5.4), sharex=True, squeeze=False)
    for row, split in enumerate(an.SPLITS):
        for col, (ci, title) in enumerate(zip(idx, titles, strict=True)):
            ax = axes[row, col]
            vals = scores[split][key][ci]
            _hist(ax, vals, n)
            extra = (f"Pearson B = {_b(scores[split]['bimodality'][ci])}" if key == "consistency"
                     else f"mean consensus {np.nanmean(vals):.2f}")
            ax.set_title(f"{title}\n{split}, {_epoch_label(scores['epoch'][ci])}\n{extra}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{split}: fraction of examples")
            if row == 1:
                ax.set_xlabel(what)
    fig.suptitle(f"{figure} ({PAPER}): {what} of N={n} instances; top train, bottom test", fontsize=10)
    return fig


def fig01_consistency_phases(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 1 (a)-(d): consistency histograms in the 4 phases of learning, train (top) and test (bottom)."""
    s = an.read_scores(inputs["main"])
    fig = _score_grid(s, _phases(s, options), PHASE_NAMES, "consistency", "Fig 1",
                      "consistency score c^e(x,y)")
    _save(fig, out_path)


def fig02_consistency_epochs(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 2: consistency histograms on the test set at the listed epochs (paper: 27 ResNet-50 on ImageNet at
    0, 1, 5, 30, 40, 100)."""
    s = an.read_scores(inputs["ensemble"])
    idx = sorted({an.nearest_checkpoint(s["epoch"], e) for e in options["fig02_epochs"]})
    n = _n(s)
    fig, axes = plt.subplots(1, len(idx), figsize=(2.6 * len(idx), 3.0), sharey=True, squeeze=False)
    for ax, ci in zip(axes[0], idx, strict=True):
        _hist(ax, s["test"]["consistency"][ci], n)
        ax.set_title(f"{_epoch_label(s['epoch'][ci])}\nB = {_b(s['test']['bimodality'][ci])}, "
                     f"acc {s['test']['accuracy'][ci]:.2f}", fontsize=8)
        ax.set_xlabel("consistency c^e (test)")
    axes[0, 0].set_ylabel("fraction of test examples")
    fig.suptitle(f"Fig 2 ({PAPER}): test-set consistency over training, {s['attrs']['label']}, N={n}",
                 fontsize=10)
    _save(fig, out_path)


def fig03_consensus_phases(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 3: consensus-score histograms at the epochs of Fig 1 (train top, test bottom)."""
    s = an.read_scores(inputs["main"])
    fig = _score_grid(s, _phases(s, options), PHASE_NAMES, "consensus", "Fig 3", "consensus score s^e(x,y)")
    _save(fig, out_path)


def _scatter(ax, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> tuple[float, float]:
    r, p = an.pearson_r(x, y)
    ax.scatter(x, y, s=8, alpha=0.5, color=BLUE, edgecolors="none")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    return r, p


def fig04a_speed_two_halves(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 4a: speed of learning of every example, one half of the instances against the other half."""
    s = an.read_scores(inputs["main"])
    split = options["speed_split"]
    h = _n(s) // 2
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    r, p = _scatter(ax, s[split]["speed_half_a"], s[split]["speed_half_b"],
                    f"speed of learning, instances 1-{h}", f"speed of learning, instances {h + 1}-{2 * h}")
    ax.set_title(f"Fig 4a ({PAPER}): {split} set, {h} vs {h} instances\n"
                 f"r = {r:.3f}, p = {p:.1e} (paper 0.99)", fontsize=8)
    _save(fig, out_path)


def fig04b_speed_cross_arch(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 4b: speed of learning of every example, architecture A against architecture B."""
    a, b = an.read_scores(inputs["a"]), an.read_scores(inputs["b"])
    split = options["speed_split"]
    if not np.array_equal(a[split]["id"], b[split]["id"]):
        raise ValueError(f"fig04b: {inputs['a']} and {inputs['b']} hold different examples")
    roles = options["roles"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    r, p = _scatter(ax, a[split]["speed"], b[split]["speed"],
                    f"speed of learning, {roles['a']} (N={_n(a)})",
                    f"speed of learning, {roles['b']} (N={_n(b)})")
    ax.set_title(f"Fig 4b ({PAPER}): {split} set, {roles['a']} vs {roles['b']}\n"
                 f"r = {r:.3f}, p = {p:.1e} (paper 0.87, ResNet-50 vs AlexNet)", fontsize=8)
    _save(fig, out_path)


def fig04cd_matched_epochs_2d(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 4c-d: 2-D distribution of consistency pairs (A on x, B on y) at two pairs of epochs whose mean
    accuracies match within the tolerance; entries above the saturation level are white."""
    a, b = an.read_scores(inputs["a"]), an.read_scores(inputs["b"])
    split = options["match_split"]
    acc_a, acc_b = a[split]["accuracy"], b[split]["accuracy"]
    targets = an.matched_targets(acc_a, acc_b, options.get("matched_accuracies"))
    roles = options["roles"]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.4 * len(targets), 4.4), squeeze=False)
    for ax, target, letter in zip(axes[0], targets, "cdefgh", strict=False):
        pair = an.matched_pair_near(acc_a, acc_b, target, options["match_tolerance"])
        if pair is None:
            raise ValueError(f"fig04cd: no epochs of {roles['a']} and {roles['b']} match within "
                             f"{options['match_tolerance']} (accuracy ranges "
                             f"{acc_a.min():.2f}-{acc_a.max():.2f}, {acc_b.min():.2f}-{acc_b.max():.2f})")
        i, j = pair
        hist = an.consistency_histogram_2d(a["test"]["consistency"][i], b["test"]["consistency"][j],
                                           _n(a), _n(b))
        ax.imshow(hist.T, origin="lower", cmap="gray", vmin=0, vmax=options["saturation"],
                  extent=(-0.5 / _n(a), 1 + 0.5 / _n(a), -0.5 / _n(b), 1 + 0.5 / _n(b)), aspect="auto")
        corners = hist[0, 0] + hist[-1, -1]
        ax.set_title(f"({letter}) accuracy {acc_a[i]:.2f} / {acc_b[j]:.2f}: {roles['a']} "
                     f"{_epoch_label(a['epoch'][i])},\n{roles['b']} {_epoch_label(b['epoch'][j])}; "
                     f"P(0,0)+P(1,1) = {corners:.2f}", fontsize=8)
        ax.set_xlabel(f"consistency, {roles['a']} (N={_n(a)}), test")
        ax.set_ylabel(f"consistency, {roles['b']} (N={_n(b)}), test")
    fig.suptitle(f"Fig 4c-d ({PAPER}): epochs matched by {split} accuracy (±{options['match_tolerance']:g}); "
                 f"white = above {options['saturation']:g}", fontsize=9)
    _save(fig, out_path)


def fig05ab_linear_vs_nonlinear(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 5a-b: consistency histogram of the non-linear ensemble (blue) and, in red, the part of it that the
    linear ensemble classifies correctly (linear consistency > 0.5, a majority; the paper does not say)."""
    s, lin = an.read_scores(inputs["main"]), an.read_scores(inputs["linear"])
    if not np.array_equal(s["test"]["id"], lin["test"]["id"]):
        raise ValueError("fig05ab: the linear and non-linear ensembles hold different test examples")
    epochs = options["fig05_epochs"]
    fig, axes = plt.subplots(1, len(epochs), figsize=(4.4 * len(epochs), 3.8), squeeze=False)
    for ax, e, letter in zip(axes[0], epochs, "abcdef", strict=False):
        i, j = an.nearest_checkpoint(s["epoch"], e), an.nearest_checkpoint(lin["epoch"], e)
        c = s["test"]["consistency"][i]
        lin_ok = lin["test"]["consistency"][j] > 0.5
        total = len(c)
        _hist(ax, c, _n(s), BLUE, "non-linear: all test examples", total)
        _hist(ax, c[lin_ok], _n(s), RED, "of which correct for the linear nets", total)
        share = float((c[lin_ok] > 0.5).mean()) if lin_ok.any() else math.nan
        ax.set_title(f"({letter}) {_epoch_label(s['epoch'][i])}: {lin_ok.sum()} linear-correct examples,\n"
                     f"{share:.0%} of them correct for the non-linear majority", fontsize=8)
        ax.set_xlabel("consistency of the non-linear ensemble (test)")
        ax.set_ylabel("fraction of test examples")
        ax.legend(fontsize=7, loc="upper center")
    fig.suptitle(f"Fig 5a-b ({PAPER}): non-linear vs linear st-VGG stand-ins", fontsize=10)
    _save(fig, out_path)


def fig05c_linear_consistency(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 5c: consistency histograms of the linear ensemble (test) at three epochs, and Pearson's measure
    over training for the linear and non-linear ensembles."""
    s, lin = an.read_scores(inputs["main"]), an.read_scores(inputs["linear"])
    idx = [an.nearest_checkpoint(lin["epoch"], 1), len(lin["epoch"]) // 2, len(lin["epoch"]) - 1]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for ax, ci in zip(axes[:3], idx, strict=True):
        _hist(ax, lin["test"]["consistency"][ci], _n(lin), RED)
        ax.set_title(f"linear, {_epoch_label(lin['epoch'][ci])}: B = {_b(lin['test']['bimodality'][ci])}, "
                     f"acc {lin['test']['accuracy'][ci]:.2f}", fontsize=8)
        ax.set_xlabel("consistency (test)")
    axes[0].set_ylabel("fraction of test examples")
    ax = axes[3]
    for scores, name, color in ((lin, "linear", RED), (s, "non-linear", BLUE)):
        for split, ls in (("test", "-"), ("train", ":")):
            ok = scores["epoch"] > 0
            ax.plot(scores["epoch"][ok], scores[split]["bimodality"][ok], ls, color=color,
                    label=f"{name}, {split}")
    ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Pearson B (lower = more bi-modal)")
    bl, bn = an.bimodality_summary(lin, "test"), an.bimodality_summary(s, "test")
    ax.set_title(f"test min B: linear {_b(bl['min'])}, non-linear {_b(bn['min'])}\n(paper 0.055 vs 0.22)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"Fig 5c ({PAPER}): linear st-VGG stand-in, N={_n(lin)}", fontsize=10)
    _save(fig, out_path)


def _read_classifiers(path: str) -> dict:
    import json

    import h5py

    with h5py.File(path, "r") as f:
        names = json.loads(f.attrs["classifiers"])
        return {
            "names": names,
            "acc": {n: float(f[f"clf/{n}"].attrs["accuracy"]) for n in names},
            "boost_acc": f["adaboost/accuracy"][:],
            "group_acc": f["adaboost/group_accuracy"][:],
            "difficulty": f["adaboost/difficulty"][:],
            "cnn_speed": f["adaboost/cnn_speed"][:],
            "r": float(f["adaboost"].attrs["r"]),
            "p": float(f["adaboost"].attrs["p"]),
            "fig07_epochs": f["fig07/epochs"][:],
            "frac_right": f["fig07/frac_cnn_correct"][:],
            "frac_wrong": f["fig07/frac_cnn_wrong"][:],
            "cnn_acc": float(f.attrs["cnn_test_accuracy"]),
        }


def fig06a_adaboost_groups(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 6a: AdaBoost (SAMME, linear weak learners) test accuracy against the number k of weak learners,
    for the difficult / intermediate / easy thirds of the examples by CNN speed of learning, and overall."""
    c = _read_classifiers(inputs["classifiers"])
    k = np.arange(1, len(c["boost_acc"]) + 1)
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    for g, (name, color) in enumerate((("difficult", RED), ("intermediate", "#ff7f0e"), ("easy", "#2ca02c"))):
        ax.plot(k, c["group_acc"][g], color=color, label=f"{name} (CNN)")
    ax.plot(k, c["boost_acc"], color="black", ls="--", label="all test examples")
    ax.set_xlabel("number of weak linear classifiers k")
    ax.set_ylabel("AdaBoost test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Fig 6a ({PAPER}): AdaBoost accuracy by CNN difficulty group", fontsize=9)
    _save(fig, out_path)


def fig06b_adaboost_vs_cnn(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 6b: difficulty by AdaBoost (mean correctness over k) against the CNN speed of learning."""
    c = _read_classifiers(inputs["classifiers"])
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    _scatter(ax, c["difficulty"], c["cnn_speed"], "AdaBoost: mean correctness over k (test)",
             "CNN: speed of learning (test)")
    ax.set_title(f"Fig 6b ({PAPER}): r = {c['r']:.3f}, p = {c['p']:.1e} (paper 0.83)", fontsize=9)
    _save(fig, out_path)


def fig07_other_classifiers(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 7: for each classifier, the fraction of test examples it classifies correctly among those the CNN
    ensemble classifies correctly (blue) and incorrectly (red), at the listed CNN epochs."""
    c = _read_classifiers(inputs["classifiers"])
    names = c["names"]
    x = np.arange(len(names))
    epochs = c["fig07_epochs"]
    fig, axes = plt.subplots(1, len(epochs), figsize=(5.6 * len(epochs), 4.2), sharey=True, squeeze=False)
    for i, (ax, e) in enumerate(zip(axes[0], epochs, strict=True)):
        ax.bar(x - 0.2, c["frac_right"][i], width=0.4, color=BLUE, label="CNN correct")
        ax.bar(x + 0.2, c["frac_wrong"][i], width=0.4, color=RED, label="CNN wrong")
        ax.set_xticks(x, [f"{n}\n({c['acc'][n]:.2f})" for n in names], fontsize=7)
        ax.set_title(f"CNN at {_epoch_label(e)}", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("fraction classified correctly")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Fig 7 ({PAPER}): other classifiers (test accuracy) vs the CNN ensemble "
                 f"(test accuracy {c['cnn_acc']:.2f})", fontsize=10)
    _save(fig, out_path)


def fig08abc_random_labels(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 8a-c: consistency histograms of the ensemble trained on random labels without dropout, train (top)
    and test (bottom), at three stages; titles give Pearson's measure and its minimum over training."""
    s = an.read_scores(inputs["random_labels"])
    last = float(s["epoch"][-1])
    stages = options.get("fig08_epochs") or [1, round(last / 2), -1]
    idx = [an.nearest_checkpoint(s["epoch"], e) for e in stages]
    fig = _score_grid(s, idx, ["(a)", "(b)", "(c)"][: len(idx)] + [""] * max(0, len(idx) - 3), "consistency",
                      "Fig 8a-c", "consistency score (random labels)")
    tr, te = an.bimodality_summary(s, "train"), an.bimodality_summary(s, "test")
    fig.suptitle(f"Fig 8a-c ({PAPER}): random labels, dropout removed, N={_n(s)}; "
                 f"min B train {_b(tr['min'])}, test {_b(te['min'])} (paper 1.07, 1.35);\n"
                 f"final train accuracy {s['train']['accuracy'][-1]:.2f}", fontsize=9)
    _save(fig, out_path)


def fig08d_hard_dataset(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 8d: consistency histograms of the ensemble trained on the artificially hard dataset at the
    beginning (top) and end (bottom) of training, and test accuracy / Pearson's measure over training for the
    full train set, a random subset of the same size and the hard subset."""
    hard = an.read_scores(inputs["hard_final"])
    rnd = an.read_scores(inputs["random_subset"])
    full = an.read_scores(inputs["main"])
    idx = [an.nearest_checkpoint(hard["epoch"], 1), len(hard["epoch"]) - 1]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    for row, ci in enumerate(idx):
        for col, split in enumerate(an.SPLITS):
            ax = axes[row, col]
            _hist(ax, hard[split]["consistency"][ci], _n(hard), RED)
            stage = "beginning" if row == 0 else "end"
            ax.set_title(f"hard set, {stage} ({_epoch_label(hard['epoch'][ci])}), "
                         f"{split}: B = {_b(hard[split]['bimodality'][ci])}", fontsize=8)
            ax.set_xlabel(f"consistency ({split})")
            ax.set_ylabel("fraction of examples")
    curves = (("full train set", full, BLUE), ("random subset", rnd, "grey"), ("hard subset", hard, RED))
    for name, sc, color in curves:
        ok = sc["epoch"] > 0
        n_train = len(sc["train"]["id"])
        axes[0, 2].plot(sc["epoch"][ok], sc["test"]["accuracy"][ok], color=color,
                        label=f"{name} ({n_train} train): {sc['test']['accuracy'][-1]:.2f}")
        axes[1, 2].plot(sc["epoch"][ok], sc["test"]["bimodality"][ok], color=color, label=name)
    axes[0, 2].set_ylabel("test accuracy (ensemble mean)")
    axes[0, 2].set_title("paper: 0.56 full, 0.47 random 20 %, 0.3 hard 20 %", fontsize=8)
    axes[0, 2].legend(fontsize=7)
    axes[1, 2].set_ylabel("Pearson B, test")
    axes[1, 2].legend(fontsize=7)
    for ax in axes[:, 2]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"Fig 8d ({PAPER}): training on the artificially hard dataset, N={_n(hard)}", fontsize=10)
    _save(fig, out_path)


def fig09_class_hierarchy(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 9 (Supp. C): train-set consistency histograms stacked by each image's most frequent predicted
    label over the ensemble."""
    s = an.read_scores(inputs["main"])
    if options.get("fig09_epochs"):
        idx = [an.nearest_checkpoint(s["epoch"], e) for e in options["fig09_epochs"]]
    else:  # the first checkpoint where 2 % of the train images reach c = 1, phase (iii), the end
        at_one = np.flatnonzero((s["train"]["consistency"] == 1).mean(axis=1) >= 0.02)
        first = int(at_one[0]) if at_one.size else _phases(s, options)[1]
        idx = sorted({first, *_phases(s, options)[2:]})
    k = int(s["attrs"]["num_classes"])
    colors = plt.get_cmap("tab10")(np.arange(k) % 10)
    n = _n(s)
    fig, axes = plt.subplots(1, len(idx), figsize=(4.2 * len(idx), 3.8), sharey=True, squeeze=False)
    for ax, ci in zip(axes[0], idx, strict=True):
        c = s["train"]["consistency"][ci]
        modal = s["train"]["modal_label"][ci]
        bottom = np.zeros(n + 1)
        for label in range(k):
            bottom += _hist(ax, c[modal == label], n, colors[label], f"label {label}", len(c), bottom.copy())
        at_one = sorted({int(v) for v in modal[c == 1]})
        ax.set_title(f"{_epoch_label(s['epoch'][ci])}: labels at c = 1: {at_one}", fontsize=8)
        ax.set_xlabel("consistency (train)")
    axes[0, 0].set_ylabel("fraction of train examples")
    axes[0, 0].legend(fontsize=7, title="most frequent label", title_fontsize=7)
    fig.suptitle(f"Fig 9 ({PAPER}): consistency coloured by the ensemble's most frequent label, N={n}",
                 fontsize=10)
    _save(fig, out_path)


def fig10_consistency_over_time(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 10 (Supp. C, 'consistency score over time'): c^e of every example (rows, sorted by speed of
    learning, fastest on top) at every checkpoint (columns), train and test."""
    s = an.read_scores(inputs["main"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), layout="constrained")
    ticks = [i for i, e in enumerate(s["epoch"]) if e in (0, 1, 2, 5) or (e >= 10 and e % 10 == 0)]
    for ax, split in zip(axes, an.SPLITS, strict=True):
        order = np.argsort(-s[split]["speed"], kind="stable")
        im = ax.imshow(s[split]["consistency"][:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       interpolation="nearest")
        ax.set_xticks(ticks, [f"{s['epoch'][i]:g}" for i in ticks])
        ax.set_xlabel("epoch (checkpoint)")
        ax.set_ylabel(f"{split} examples, by speed of learning")
        ax.set_title(f"{split}: {len(order)} examples", fontsize=9)
    fig.colorbar(im, ax=axes, label="consistency c^e")
    fig.suptitle(f"Fig 10 ({PAPER}): consistency score over time, {s['attrs']['label']}", fontsize=10)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def fig11_example_trajectories(inputs: dict, options: dict, out_path: str) -> None:
    """Fig 11 (Supp. C): consistency as a function of epoch for 5 train images chosen to show the typical
    patterns (lossatlas.analysis.consistency.example_patterns)."""
    s = an.read_scores(inputs["main"])
    c = s["train"]["consistency"]
    picks = an.example_patterns(s["epoch"], c)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (i, label), color in zip(picks, ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"], strict=True):
        ax.plot(s["epoch"], c[:, i], marker=".", color=color, label=f"id {s['train']['id'][i]}: {label}")
    ax.axhline(1 / int(s["attrs"]["num_classes"]), color="grey", ls=":", lw=0.8, label="chance")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("consistency c^e (train)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    ax.set_title(f"Fig 11 ({PAPER}): consistency of 5 train images over training", fontsize=9)
    _save(fig, out_path)


def robustness_moves(inputs: dict, options: dict, out_path: str) -> None:
    """§3 Robustness (no figure in the paper): accuracy on the examples moved from the train set to the test
    set (easiest / hardest / random by the original ensemble), over the retrained ensemble's epochs."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    colors = {"easiest": "#2ca02c", "hardest": RED, "random": "grey"}
    for which in ("easiest", "hardest", "random"):
        if f"move_{which}" not in inputs:
            continue
        s = an.read_scores(inputs[f"move_{which}"])
        acc = an.moved_accuracy(s, an.read_ids(inputs[f"index_{which}"]))
        ax.plot(s["epoch"], acc, marker=".", color=colors[which],
                label=f"{which} moved: {acc[-1]:.2f} at the end")
        if which == "random":
            ax.plot(s["epoch"], s["test"]["accuracy"], ls="--", color="black", label="whole test set")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy on the moved examples")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    ax.set_title(f"§3 robustness ({PAPER}): moved train→test, paper: easiest 1.0,\nhardest 0.08 at "
                 "epoch 1 → 0, random ≈ test accuracy", fontsize=9)
    _save(fig, out_path)
