"""Figures 1-11 of Hacohen & Weinshall, *All Neural Networks are Created Equal* (papers/created_equal.txt), plus
the §3 robustness experiment: one function per figure file, named by the file's stem. Each takes
``(inputs, output)``: ``inputs["data"]`` is what the analysis wrote for it
(results/analysis/consistency/figure_data/<figure>.h5, made by the function of the same name in
lossatlas/analysis/consistency.py); ``output`` is the PNG path. Drawing only: panel layout, titles, colours.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lossatlas.figure_data import read_figure_data
from lossatlas.figures.common import dispatch, save

PAPER = "Hacohen & Weinshall"
BLUE, RED = "#1f77b4", "#d62728"
SPLITS = ("train", "test")
PHASE_NAMES = ["(a) initialisation", "(b) beginning of learning", "(c) bi-modality", "(d) end of learning"]


def _bars(ax, frac: np.ndarray, color: str = BLUE, label: str | None = None,
          bottom: np.ndarray | None = None) -> None:
    """A consistency histogram (fractions on the grid {0, 1/N, ..., 1})."""
    n = len(frac) - 1
    ax.bar(np.arange(n + 1) / n, frac, width=0.9 / n, color=color, label=label, bottom=bottom)
    ax.set_xlim(-0.05, 1.05)


def _epoch_label(epoch: float) -> str:
    return f"epoch {epoch:g}" if float(epoch).is_integer() else f"epoch {epoch:.2f}"


def _b(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:.3f}"


def _panels(d: dict) -> list[dict]:
    """Groups '0', '1', … of a figure's data, in order."""
    return [d["panels"][str(i)] for i in range(len(d["panels"]))]


def _score_grid(d: dict, titles: list[str], key: str, figure: str, what: str) -> plt.Figure:
    """Histograms at the data's checkpoints (columns), train (top) and test (bottom)."""
    cols = len(d["epoch"])
    fig, axes = plt.subplots(2, cols, figsize=(3.1 * cols, 5.4), sharex=True, squeeze=False)
    for row, split in enumerate(SPLITS):
        for col, title in enumerate(titles):
            ax = axes[row, col]
            _bars(ax, d[split]["hist"][col])
            extra = (f"Pearson B = {_b(d[split]['bimodality'][col])}" if key == "consistency"
                     else f"mean consensus {d[split]['mean'][col]:.2f}")
            ax.set_title(f"{title}\n{split}, {_epoch_label(d['epoch'][col])}\n{extra}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{split}: fraction of examples")
            if row == 1:
                ax.set_xlabel(what)
    fig.suptitle(f"{figure} ({PAPER}): {what} of N={d['n']} instances; top train, bottom test", fontsize=10)
    return fig


def _scatter(ax, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> None:
    ax.scatter(x, y, s=8, alpha=0.5, color=BLUE, edgecolors="none")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)


def fig01_consistency_phases(inputs, output: str) -> None:
    """Fig 1 (a)-(d): consistency histograms in the 4 phases of learning, train (top) and test (bottom)."""
    d = read_figure_data(inputs["data"])
    save(_score_grid(d, PHASE_NAMES, "consistency", "Fig 1", "consistency score c^e(x,y)"), output)


def fig02_consistency_epochs(inputs, output: str) -> None:
    """Fig 2: consistency histograms on the test set at the listed epochs (paper: 27 ResNet-50 on ImageNet at
    0, 1, 5, 30, 40, 100)."""
    d = read_figure_data(inputs["data"])
    cols = len(d["epoch"])
    fig, axes = plt.subplots(1, cols, figsize=(2.6 * cols, 3.0), sharey=True, squeeze=False)
    for col, ax in enumerate(axes[0]):
        _bars(ax, d["hist"][col])
        ax.set_title(f"{_epoch_label(d['epoch'][col])}\nB = {_b(d['bimodality'][col])}, "
                     f"acc {d['accuracy'][col]:.2f}", fontsize=8)
        ax.set_xlabel("consistency c^e (test)")
    axes[0, 0].set_ylabel("fraction of test examples")
    fig.suptitle(f"Fig 2 ({PAPER}): test-set consistency over training, {d['label']}, N={d['n']}", fontsize=10)
    save(fig, output)


def fig03_consensus_phases(inputs, output: str) -> None:
    """Fig 3: consensus-score histograms at the epochs of Fig 1 (train top, test bottom)."""
    d = read_figure_data(inputs["data"])
    save(_score_grid(d, PHASE_NAMES, "consensus", "Fig 3", "consensus score s^e(x,y)"), output)


def fig04a_speed_two_halves(inputs, output: str) -> None:
    """Fig 4a: speed of learning of every example, one half of the instances against the other half."""
    d = read_figure_data(inputs["data"])
    split, h = d["split"], d["half"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    _scatter(ax, d["x"], d["y"], f"speed of learning, instances 1-{h}",
             f"speed of learning, instances {h + 1}-{2 * h}")
    ax.set_title(f"Fig 4a ({PAPER}): {split} set, {h} vs {h} instances\n"
                 f"r = {d['r']:.3f}, p = {d['p']:.1e} (paper 0.99)", fontsize=8)
    save(fig, output)


def fig04b_speed_cross_arch(inputs, output: str) -> None:
    """Fig 4b: speed of learning of every example, architecture A against architecture B."""
    d = read_figure_data(inputs["data"])
    (role_a, role_b), (n_a, n_b), split = d["roles"], d["n"], d["split"]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    _scatter(ax, d["x"], d["y"], f"speed of learning, {role_a} (N={n_a})", f"speed of learning, {role_b} (N={n_b})")
    ax.set_title(f"Fig 4b ({PAPER}): {split} set, {role_a} vs {role_b}\n"
                 f"r = {d['r']:.3f}, p = {d['p']:.1e} (paper 0.87, ResNet-50 vs AlexNet)", fontsize=8)
    save(fig, output)


def fig04cd_matched_epochs_2d(inputs, output: str) -> None:
    """Fig 4c-d: 2-D distribution of consistency pairs (A on x, B on y) at two pairs of epochs whose mean
    accuracies match within the tolerance; entries above the saturation level are white."""
    d = read_figure_data(inputs["data"])
    (role_a, role_b), (n_a, n_b) = d["roles"], d["n"]
    panels = _panels(d)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.4), squeeze=False)
    for ax, panel, letter in zip(axes[0], panels, "cdefgh", strict=False):
        (acc_a, acc_b), (epoch_a, epoch_b) = panel["accuracy"], panel["epoch"]
        ax.imshow(panel["hist"].T, origin="lower", cmap="gray", vmin=0, vmax=d["saturation"],
                  extent=(-0.5 / n_a, 1 + 0.5 / n_a, -0.5 / n_b, 1 + 0.5 / n_b), aspect="auto")
        ax.set_title(f"({letter}) accuracy {acc_a:.2f} / {acc_b:.2f}: {role_a} "
                     f"{_epoch_label(epoch_a)},\n{role_b} {_epoch_label(epoch_b)}; "
                     f"P(0,0)+P(1,1) = {panel['corners']:.2f}", fontsize=8)
        ax.set_xlabel(f"consistency, {role_a} (N={n_a}), test")
        ax.set_ylabel(f"consistency, {role_b} (N={n_b}), test")
    fig.suptitle(f"Fig 4c-d ({PAPER}): epochs matched by {d['split']} accuracy (±{d['match_tolerance']:g}); "
                 f"white = above {d['saturation']:g}", fontsize=9)
    save(fig, output)


def fig05ab_linear_vs_nonlinear(inputs, output: str) -> None:
    """Fig 5a-b: consistency histogram of the non-linear ensemble (blue) and, in red, the part of it that the
    linear ensemble classifies correctly."""
    d = read_figure_data(inputs["data"])
    panels = _panels(d)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, panel, letter in zip(axes[0], panels, "abcdef", strict=False):
        _bars(ax, panel["hist_all"], BLUE, "non-linear: all test examples")
        _bars(ax, panel["hist_linear_correct"], RED, "of which correct for the linear nets")
        ax.set_title(f"({letter}) {_epoch_label(panel['epoch'])}: {panel['linear_correct']} linear-correct "
                     f"examples,\n{panel['share']:.0%} of them correct for the non-linear majority", fontsize=8)
        ax.set_xlabel("consistency of the non-linear ensemble (test)")
        ax.set_ylabel("fraction of test examples")
        ax.legend(fontsize=7, loc="upper center")
    fig.suptitle(f"Fig 5a-b ({PAPER}): non-linear vs linear st-VGG stand-ins", fontsize=10)
    save(fig, output)


def fig05c_linear_consistency(inputs, output: str) -> None:
    """Fig 5c: consistency histograms of the linear ensemble (test) at three epochs, and Pearson's measure
    over training for the linear and non-linear ensembles."""
    d = read_figure_data(inputs["data"])
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for col, ax in enumerate(axes[:3]):
        _bars(ax, d["hist"][col], RED)
        ax.set_title(f"linear, {_epoch_label(d['epoch'][col])}: B = {_b(d['bimodality'][col])}, "
                     f"acc {d['accuracy'][col]:.2f}", fontsize=8)
        ax.set_xlabel("consistency (test)")
    axes[0].set_ylabel("fraction of test examples")
    ax = axes[3]
    for name, color in (("linear", RED), ("non-linear", BLUE)):
        curves = d["curves"][name]
        for split, ls in (("test", "-"), ("train", ":")):
            ax.plot(curves["epoch"], curves[split], ls, color=color, label=f"{name}, {split}")
    ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Pearson B (lower = more bi-modal)")
    mins = d["min_bimodality"]
    ax.set_title(f"test min B: linear {_b(mins['linear'])}, non-linear {_b(mins['non-linear'])}\n"
                 "(paper 0.055 vs 0.22)", fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"Fig 5c ({PAPER}): linear st-VGG stand-in, N={d['n']}", fontsize=10)
    save(fig, output)


def fig06a_adaboost_groups(inputs, output: str) -> None:
    """Fig 6a: AdaBoost (SAMME, linear weak learners) test accuracy against the number k of weak learners,
    for the difficult / intermediate / easy thirds of the examples by CNN speed of learning, and overall."""
    d = read_figure_data(inputs["data"])
    k = np.arange(1, len(d["accuracy"]) + 1)
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    for g, (name, color) in enumerate((("difficult", RED), ("intermediate", "#ff7f0e"), ("easy", "#2ca02c"))):
        ax.plot(k, d["group_accuracy"][g], color=color, label=f"{name} (CNN)")
    ax.plot(k, d["accuracy"], color="black", ls="--", label="all test examples")
    ax.set_xlabel("number of weak linear classifiers k")
    ax.set_ylabel("AdaBoost test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Fig 6a ({PAPER}): AdaBoost accuracy by CNN difficulty group", fontsize=9)
    save(fig, output)


def fig06b_adaboost_vs_cnn(inputs, output: str) -> None:
    """Fig 6b: difficulty by AdaBoost (mean correctness over k) against the CNN speed of learning."""
    d = read_figure_data(inputs["data"])
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    _scatter(ax, d["x"], d["y"], "AdaBoost: mean correctness over k (test)", "CNN: speed of learning (test)")
    ax.set_title(f"Fig 6b ({PAPER}): r = {d['r']:.3f}, p = {d['p']:.1e} (paper 0.83)", fontsize=9)
    save(fig, output)


def fig07_other_classifiers(inputs, output: str) -> None:
    """Fig 7: for each classifier, the fraction of test examples it classifies correctly among those the CNN
    ensemble classifies correctly (blue) and incorrectly (red), at the listed CNN epochs."""
    d = read_figure_data(inputs["data"])
    names = d["names"]
    x = np.arange(len(names))
    epochs = d["epoch"]
    fig, axes = plt.subplots(1, len(epochs), figsize=(5.6 * len(epochs), 4.2), sharey=True, squeeze=False)
    for i, (ax, e) in enumerate(zip(axes[0], epochs, strict=True)):
        ax.bar(x - 0.2, d["frac_right"][i], width=0.4, color=BLUE, label="CNN correct")
        ax.bar(x + 0.2, d["frac_wrong"][i], width=0.4, color=RED, label="CNN wrong")
        ax.set_xticks(x, [f"{n}\n({acc:.2f})" for n, acc in zip(names, d["accuracy"], strict=True)], fontsize=7)
        ax.set_title(f"CNN at {_epoch_label(e)}", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("fraction classified correctly")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Fig 7 ({PAPER}): other classifiers (test accuracy) vs the CNN ensemble "
                 f"(test accuracy {d['cnn_accuracy']:.2f})", fontsize=10)
    save(fig, output)


def fig08abc_random_labels(inputs, output: str) -> None:
    """Fig 8a-c: consistency histograms of the ensemble trained on random labels without dropout, train (top)
    and test (bottom), at three stages; titles give Pearson's measure and its minimum over training."""
    d = read_figure_data(inputs["data"])
    cols = len(d["epoch"])
    titles = ["(a)", "(b)", "(c)"][:cols] + [""] * max(0, cols - 3)
    fig = _score_grid(d, titles, "consistency", "Fig 8a-c", "consistency score (random labels)")
    mins = d["min_bimodality"]
    fig.suptitle(f"Fig 8a-c ({PAPER}): random labels, dropout removed, N={d['n']}; "
                 f"min B train {_b(mins['train'])}, test {_b(mins['test'])} (paper 1.07, 1.35);\n"
                 f"final train accuracy {d['final_train_accuracy']:.2f}", fontsize=9)
    save(fig, output)


def fig08d_hard_dataset(inputs, output: str) -> None:
    """Fig 8d: consistency histograms of the ensemble trained on the artificially hard dataset at the
    beginning (top) and end (bottom) of training, and test accuracy / Pearson's measure over training for the
    full train set, a random subset of the same size and the hard subset."""
    d = read_figure_data(inputs["data"])
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    for row in range(2):
        for col, split in enumerate(SPLITS):
            ax = axes[row, col]
            _bars(ax, d[split]["hist"][row], RED)
            stage = "beginning" if row == 0 else "end"
            ax.set_title(f"hard set, {stage} ({_epoch_label(d['epoch'][row])}), "
                         f"{split}: B = {_b(d[split]['bimodality'][row])}", fontsize=8)
            ax.set_xlabel(f"consistency ({split})")
            ax.set_ylabel("fraction of examples")
    for name, color in (("full train set", BLUE), ("random subset", "grey"), ("hard subset", RED)):
        c = d["curves"][name]
        axes[0, 2].plot(c["epoch"], c["accuracy"], color=color,
                        label=f"{name} ({c['n_train']} train): {c['final_accuracy']:.2f}")
        axes[1, 2].plot(c["epoch"], c["bimodality"], color=color, label=name)
    axes[0, 2].set_ylabel("test accuracy (ensemble mean)")
    axes[0, 2].set_title("paper: 0.56 full, 0.47 random 20 %, 0.3 hard 20 %", fontsize=8)
    axes[0, 2].legend(fontsize=7)
    axes[1, 2].set_ylabel("Pearson B, test")
    axes[1, 2].legend(fontsize=7)
    for ax in axes[:, 2]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"Fig 8d ({PAPER}): training on the artificially hard dataset, N={d['n']}", fontsize=10)
    save(fig, output)


def fig09_class_hierarchy(inputs, output: str) -> None:
    """Fig 9 (Supp. C): train-set consistency histograms stacked by each image's most frequent predicted
    label over the ensemble."""
    d = read_figure_data(inputs["data"])
    panels, k, n = _panels(d), d["num_classes"], d["n"]
    colors = plt.get_cmap("tab10")(np.arange(k) % 10)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        bottom = np.zeros(n + 1)
        for label in range(k):
            _bars(ax, panel["hist"][label], colors[label], f"label {label}", bottom.copy())
            bottom += panel["hist"][label]
        ax.set_title(f"{_epoch_label(panel['epoch'])}: labels at c = 1: {panel['labels_at_one']}", fontsize=8)
        ax.set_xlabel("consistency (train)")
    axes[0, 0].set_ylabel("fraction of train examples")
    axes[0, 0].legend(fontsize=7, title="most frequent label", title_fontsize=7)
    fig.suptitle(f"Fig 9 ({PAPER}): consistency coloured by the ensemble's most frequent label, N={n}",
                 fontsize=10)
    save(fig, output)


def fig10_consistency_over_time(inputs, output: str) -> None:
    """Fig 10 (Supp. C, 'consistency score over time'): c^e of every example (rows, sorted by speed of
    learning, fastest on top) at every checkpoint (columns), train and test."""
    d = read_figure_data(inputs["data"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), layout="constrained")
    ticks = [i for i, e in enumerate(d["epoch"]) if e in (0, 1, 2, 5) or (e >= 10 and e % 10 == 0)]
    for ax, split in zip(axes, SPLITS, strict=True):
        im = ax.imshow(d[split], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(ticks, [f"{d['epoch'][i]:g}" for i in ticks])
        ax.set_xlabel("epoch (checkpoint)")
        ax.set_ylabel(f"{split} examples, by speed of learning")
        ax.set_title(f"{split}: {len(d[split])} examples", fontsize=9)
    fig.colorbar(im, ax=axes, label="consistency c^e")
    fig.suptitle(f"Fig 10 ({PAPER}): consistency score over time, {d['label']}", fontsize=10)
    save(fig, output, tight_layout=False)  # constrained layout already


def fig11_example_trajectories(inputs, output: str) -> None:
    """Fig 11 (Supp. C): consistency as a function of epoch for 5 train images chosen to show the typical
    patterns (lossatlas.analysis.consistency.example_patterns)."""
    d = read_figure_data(inputs["data"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd"]
    for curve, example, pattern, color in zip(d["consistency"], d["id"], d["pattern"], colors, strict=True):
        ax.plot(d["epoch"], curve, marker=".", color=color, label=f"id {example}: {pattern}")
    ax.axhline(d["chance"], color="grey", ls=":", lw=0.8, label="chance")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("consistency c^e (train)")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    ax.set_title(f"Fig 11 ({PAPER}): consistency of 5 train images over training", fontsize=9)
    save(fig, output)


def robustness_moves(inputs, output: str) -> None:
    """§3 Robustness (no figure in the paper): accuracy on the examples moved from the train set to the test
    set (easiest / hardest / random by the original ensemble), over the retrained ensemble's epochs."""
    d = read_figure_data(inputs["data"])
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    colors = {"easiest": "#2ca02c", "hardest": RED, "random": "grey"}
    for which in ("easiest", "hardest", "random"):
        if which not in d:
            continue
        move = d[which]
        ax.plot(move["epoch"], move["accuracy"], marker=".", color=colors[which],
                label=f"{which} moved: {move['accuracy'][-1]:.2f} at the end")
        if which == "random":
            ax.plot(move["epoch"], move["test_accuracy"], ls="--", color="black", label="whole test set")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy on the moved examples")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    ax.set_title(f"§3 robustness ({PAPER}): moved train→test, paper: easiest 1.0,\nhardest 0.08 at "
                 "epoch 1 → 0, random ≈ test accuracy", fontsize=9)
    save(fig, output)


FIGURES = {f.__name__: f for f in (
    fig01_consistency_phases, fig02_consistency_epochs, fig03_consensus_phases, fig04a_speed_two_halves,
    fig04b_speed_cross_arch, fig04cd_matched_epochs_2d, fig05ab_linear_vs_nonlinear, fig05c_linear_consistency,
    fig06a_adaboost_groups, fig06b_adaboost_vs_cnn, fig07_other_classifiers, fig08abc_random_labels,
    fig08d_hard_dataset, fig09_class_hierarchy, fig10_consistency_over_time, fig11_example_trajectories,
    robustness_moves)}


def draw(name: str, inputs, output: str) -> None:
    dispatch(FIGURES, "consistency", name, inputs, output)
