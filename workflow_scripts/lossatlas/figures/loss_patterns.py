"""Figures 1-6 of Skorokhodov & Burtsev, *Loss Patterns of Neural Networks* (papers/loss_patterns_mpo.txt), one
function per figure file, named by the file's stem. Each takes ``(inputs, output)``: ``inputs["data"]`` is what
the analysis wrote for it (results/analysis/loss_patterns/figure_data/<figure>.h5, made by the function of the
same name in lossatlas/analysis/loss_patterns.py); ``output`` is the PNG path. Drawing only: no torch, no analysis.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from lossatlas.figure_data import read_figure_data
from lossatlas.figures.common import dispatch, save

PAPER = "Skorokhodov & Burtsev"
BLUE, RED = "#1f77b4", "#d62728"


def _searches(inputs) -> list[dict]:
    """The figure's searches in figure order."""
    groups = read_figure_data(inputs["data"])["searches"]
    return [groups[str(i)] for i in range(len(groups))]


def _describe(search: dict) -> str:
    s = search["spec"]
    return f"{s['dataset']}, {s['architecture']['name']}, pattern '{s['picture']}' on {s['grid']}×{s['grid']}"


def _mask_image(ax, mask: np.ndarray, title: str) -> None:
    ax.imshow(mask, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _surface(fig, ax, values: np.ndarray, kind: str, title: str) -> None:
    """A heat map over the plane's cells: CE with a logarithmic colour scale (Fig 1 caption), accuracy linear."""
    if kind == "ce":
        positive = values[values > 0]
        lo = float(positive.min()) if positive.size else 1e-6
        image = ax.imshow(np.maximum(values, lo), norm=LogNorm(vmin=lo, vmax=max(float(values.max()), lo * 1.01)),
                          cmap="viridis", interpolation="nearest")
        label = "cross-entropy (log scale)"
    else:
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        label = "accuracy"
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("α (w_right direction, cells)")
    ax.set_ylabel("β (w_up direction, cells)")
    ax.set_xticks([])
    ax.set_yticks([])


def _stats(search: dict, split: str) -> str:
    s = search["summary"][split]
    return (f"{split} acc black {s['acc_black']:.2f} / white {s['acc_white']:.2f}; "
            f"CE black {s['ce_black']:.2f} / white {s['ce_white']:.2f}")


def _fig01(inputs, output: str, panel: str, role: str) -> None:
    """Fig 1a (FashionMNIST role) and 1b (CIFAR-10 role): test loss over the found plane, log colour scale."""
    (search,) = _searches(inputs)
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    _surface(fig, ax, search["test"]["ce"], "ce",
             f"{PAPER} Fig 1{panel} ({role}): test loss on the MPO plane\n{_describe(search)}\n"
             f"{_stats(search, 'test')}")
    save(fig, output)


def fig01a_test_loss_surface(inputs, output: str) -> None:
    _fig01(inputs, output, "a", "FashionMNIST role")


def fig01b_test_loss_surface(inputs, output: str) -> None:
    _fig01(inputs, output, "b", "CIFAR-10 role")


def fig02a_picture(inputs, output: str) -> None:
    """Fig 2a: the picture the pattern is made from."""
    (search,) = _searches(inputs)
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, search["picture"], f"{PAPER} Fig 2a: original picture '{search['spec']['picture']}'\n"
                f"({search['picture'].shape[0]}×{search['picture'].shape[1]}, drawn by the pipeline)")
    save(fig, output)


def fig02b_pattern_mask(inputs, output: str) -> None:
    """Fig 2b: the picture's down-sampled binary parametrisation."""
    (search,) = _searches(inputs)
    grid = search["spec"]["grid"]
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, search["mask"], f"{PAPER} Fig 2b: pattern down-sampled to {grid}×{grid}\n"
                "(black = low-loss cell, white = high-loss cell)")
    save(fig, output)


def fig02c_accuracy_surface(inputs, output: str) -> None:
    """Fig 2c: the found accuracy surface (test set; the paper does not say which split)."""
    (search,) = _searches(inputs)
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    _surface(fig, ax, search["test"]["acc"], "acc",
             f"{PAPER} Fig 2c: test accuracy on the found plane\n{_describe(search)}\n{_stats(search, 'test')}")
    save(fig, output)


def fig03a_random_mask(inputs, output: str) -> None:
    """Fig 3a: a random mask with fill probability p (0.5 in the paper)."""
    d = read_figure_data(inputs["data"])
    mask, p = d["without_bn"]["mask"], d["fill_probability"]
    size = mask.shape[0]
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, mask, f"{PAPER} Fig 3a: random {size}×{size} mask, fill probability {p:g}\n"
                f"(black = low-loss cell; run seed {d['without_bn']['spec']['seed']})")
    save(fig, output)


def _fig03_surface(inputs, output: str, panel: str, variant: str, words: str) -> None:
    """Fig 3b, c: the test loss surface the model without / with BN found for Fig 3a's mask (the paper does not
    say loss or accuracy; loss, log scale, as in Fig 1; the black/white accuracies of Fig 4 are in the title)."""
    run = read_figure_data(inputs["data"])[variant]
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    _surface(fig, ax, run["ce"], "ce",
             f"{PAPER} Fig 3{panel}: MPO result {words} ({run['spec']['architecture']['name']})\n"
             f"test loss; test acc black {run['acc_black']:.2f} / white {run['acc_white']:.2f} "
             f"(Δ = {run['acc_black'] - run['acc_white']:.2f})")
    save(fig, output)


def fig03b_without_bn(inputs, output: str) -> None:
    _fig03_surface(inputs, output, "b", "without_bn", "without BN")


def fig03c_with_bn(inputs, output: str) -> None:
    _fig03_surface(inputs, output, "c", "with_bn", "with BN")


PROTOCOL_STYLE = {"paper": ("-", "o"), "official": ("--", "s")}


def _protocols(s: dict) -> list[str]:
    """The protocols of Fig 4's data, paper first."""
    return sorted(s, key=lambda name: (name != "paper", name))


def _protocol_words(name: str, summary: dict) -> str:
    """A protocol as the legend names it, with its run count and, where the run selection dropped any, how
    many planes it dropped (reported, never hidden)."""
    v = summary["without_bn"]
    cells = "trainable cells" if v["delta_cells"] == "trainable" else "all cells"
    masks = "framed masks" if v["mask_frame"] else "fully random masks"
    return (f"{name} protocol: {masks}, Δ over {cells}, {v['runs']} runs, {summary['dropped_runs']} of "
            f"{summary['fits']} fits dropped by the run selection\n    BN {summary['bn_gamma']}")


def fig04a_accuracy_difference(inputs, output: str) -> None:
    """Fig 4a: Δ = mean test accuracy on black cells − on white cells vs fill probability, without / with BN,
    error bars = std across (kept) runs; one line style per protocol (solid: the paper's, dashed: the released
    code's random-squares protocol)."""
    data = read_figure_data(inputs["data"])
    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    for name in _protocols(data):
        s = data[name]
        p = np.asarray(s["fill_probabilities"])
        ls, marker = PROTOCOL_STYLE.get(name, (":", "^"))
        for variant, colour, words in (("without_bn", BLUE, "without BN"), ("with_bn", RED, "with BN")):
            v = s[variant]
            ax.errorbar(p, v["delta_mean"], yerr=np.nan_to_num(np.asarray(v["delta_std"], dtype=float)),
                        color=colour, ls=ls, marker=marker, capsize=3, label=f"{words}, {name} protocol")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("filling probability p of the random mask")
    ax.set_ylabel("test accuracy: black cells − white cells")
    lines = "\n".join(_protocol_words(name, data[name]) for name in _protocols(data))
    ax.set_title(f"{PAPER} Fig 4a: accuracy difference Δ (mean ± std over runs)\n{lines}", fontsize=7)
    ax.legend(fontsize=7)
    save(fig, output)


def fig04b_mean_accuracy(inputs, output: str) -> None:
    """Fig 4b: the two mean accuracies (blue = without BN, red = with BN; solid = black cells, dotted = white
    cells), as the paper's caption says; one panel per protocol."""
    data = read_figure_data(inputs["data"])
    names = _protocols(data)
    fig, axes = plt.subplots(1, len(names), figsize=(6.8 * len(names), 4.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        s = data[name]
        p = np.asarray(s["fill_probabilities"])
        for variant, colour, words in (("without_bn", BLUE, "without BN"), ("with_bn", RED, "with BN")):
            v = s[variant]
            ax.plot(p, v["acc_black_mean"], color=colour, ls="-", marker="o", label=f"{words}, black cells")
            ax.plot(p, v["acc_white_mean"], color=colour, ls=":", marker="o", label=f"{words}, white cells")
        ax.set_xlabel("filling probability p of the random mask")
        ax.set_ylabel("mean test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(f"{PAPER} Fig 4b: mean test accuracy per colour\n{_protocol_words(name, s)}\n"
                     "blue: without BN, red: with BN; solid: black cells, dotted: white cells", fontsize=8)
        ax.legend(fontsize=7)
    save(fig, output)


def fig05_more_test_loss_surfaces(inputs, output: str) -> None:
    """Fig 5 (App. D): more patterns on the FashionMNIST role, test loss surfaces only; each row shows the
    pattern and its surface, with the train/test map correlation (§4.1: almost indistinguishable)."""
    searches = _searches(inputs)
    fig, axes = plt.subplots(len(searches), 2, figsize=(8.6, 4.0 * len(searches)), squeeze=False)
    for row, search in zip(axes, searches, strict=True):
        _mask_image(row[0], search["mask"], f"pattern '{search['spec']['picture']}'")
        r = search["summary"].get("train_test_log_ce_pearson", float("nan"))
        _surface(fig, row[1], search["test"]["ce"], "ce",
                 f"test loss — {_describe(search)}\n{_stats(search, 'test')}\n"
                 f"Pearson r(train, test log CE maps) = {r:.3f}")
    fig.suptitle(f"{PAPER} Fig 5: additional patterns (FashionMNIST role), test loss surfaces", fontsize=10)
    save(fig, output)


def fig06_train_test_surfaces(inputs, output: str) -> None:
    """Fig 6 (App. D): more patterns on the CIFAR-10 role; left column train, right column test, loss
    (log scale) and accuracy surfaces for each pattern."""
    searches = _searches(inputs)
    fig, axes = plt.subplots(2 * len(searches), 2, figsize=(9.0, 7.6 * len(searches)), squeeze=False)
    for i, search in enumerate(searches):
        for j, split in enumerate(("train", "test")):
            for k, kind in enumerate(("ce", "acc")):
                what = "loss" if kind == "ce" else "accuracy"
                _surface(fig, axes[2 * i + k, j], search[split][kind], kind,
                         f"{split} {what} — pattern '{search['spec']['picture']}'\n{_stats(search, split)}")
    fig.suptitle(f"{PAPER} Fig 6: additional patterns (CIFAR-10 role: {searches[0]['spec']['dataset']}); "
                 "left train, right test", fontsize=10)
    save(fig, output)


FIGURES = {f.__name__: f for f in (
    fig01a_test_loss_surface, fig01b_test_loss_surface, fig02a_picture, fig02b_pattern_mask,
    fig02c_accuracy_surface, fig03a_random_mask, fig03b_without_bn, fig03c_with_bn, fig04a_accuracy_difference,
    fig04b_mean_accuracy, fig05_more_test_loss_surfaces, fig06_train_test_surfaces)}


def draw(name: str, inputs, output: str) -> None:
    dispatch(FIGURES, "loss_patterns", name, inputs, output)
