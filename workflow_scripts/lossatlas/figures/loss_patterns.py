"""Figures 1-6 of Skorokhodov & Burtsev, *Loss Patterns of Neural Networks* (papers/loss_patterns_mpo.txt),
drawn from the study's analysis outputs only: searches/<name>.h5, bn/<model>/s<seed>.h5 and
fig04_bn_accuracy.json (see lossatlas/analysis/loss_patterns.py for their contents).

Every function is ``figNN_<what>(inputs, outputs, options)``: ``inputs`` maps the role names of
rules/loss_patterns.smk to files, ``outputs`` maps panel letters to PNG paths (one file per panel), ``options``
holds the figure's settings. No torch here: figure jobs stay cheap.
"""

from __future__ import annotations

import json

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from lossatlas.io import atomic_path  # noqa: E402

DPI = 110
PAPER = "Skorokhodov & Burtsev"
BLUE, RED = "#1f77b4", "#d62728"


def _save(fig, out_path: str) -> None:
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def read_search(path: str) -> dict:
    """A search file as plain arrays: picture, mask, train/test ce and acc maps, log, spec and summary."""
    with h5py.File(path, "r") as f:
        out = {"spec": json.loads(f.attrs["spec"]), "summary": json.loads(f.attrs["summary"]),
               "picture": f["picture"][()], "mask": f["mask"][()]}
        for split in ("train", "test"):
            out[split] = {k: f[f"{split}/{k}"][()] for k in ("ce", "acc")}
        out["log"] = {k: f[f"log/{k}"][()] for k in f["log"]}
    return out


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


def fig01_test_loss_surfaces(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 1a (FashionMNIST role) and 1b (CIFAR-10 role): test loss over the found plane, log colour scale."""
    for panel, role in (("a", "FashionMNIST role"), ("b", "CIFAR-10 role")):
        search = read_search(inputs[panel])
        fig, ax = plt.subplots(figsize=(6.2, 4.8))
        _surface(fig, ax, search["test"]["ce"], "ce",
                 f"{PAPER} Fig 1{panel} ({role}): test loss on the MPO plane\n{_describe(search)}\n"
                 f"{_stats(search, 'test')}")
        _save(fig, outputs[panel])


def fig02_pattern_to_accuracy_surface(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 2: (a) the picture, (b) its down-sampled binary parametrisation, (c) the found accuracy surface
    (test set; the paper does not say which split)."""
    search = read_search(inputs["search"])
    grid = search["spec"]["grid"]
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, search["picture"], f"{PAPER} Fig 2a: original picture '{search['spec']['picture']}'\n"
                f"({search['picture'].shape[0]}×{search['picture'].shape[1]}, drawn by the pipeline)")
    _save(fig, outputs["a"])
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, search["mask"], f"{PAPER} Fig 2b: pattern down-sampled to {grid}×{grid}\n"
                "(black = low-loss cell, white = high-loss cell)")
    _save(fig, outputs["b"])
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    _surface(fig, ax, search["test"]["acc"], "acc",
             f"{PAPER} Fig 2c: test accuracy on the found plane\n{_describe(search)}\n{_stats(search, 'test')}")
    _save(fig, outputs["c"])


def _bn_run(path: str, fill_probability: float) -> dict:
    with h5py.File(path, "r") as f:
        fills = f["fill_probabilities"][()]
        i = int(np.argmin(np.abs(fills - fill_probability)))
        if abs(fills[i] - fill_probability) > 1e-9:
            raise ValueError(f"{path}: no run at fill probability {fill_probability} (has {fills.tolist()})")
        spec = json.loads(f.attrs["spec"])
        return {"spec": spec, "mask": f["masks"][i], "ce": f["test_ce"][i], "acc": f["test_acc"][i],
                "acc_black": float(f["acc_black"][i]), "acc_white": float(f["acc_white"][i])}


def fig03_random_mask_without_with_bn(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 3: (a) a random mask with fill probability p (0.5 in the paper), (b, c) the test loss surfaces the
    models without and with BN found for it (the paper does not say loss or accuracy; loss, log scale, as in
    Fig 1; the black/white accuracies of Fig 4 are in the titles)."""
    p = float(options["fill_probability"])
    runs = {v: _bn_run(inputs[v], p) for v in ("without_bn", "with_bn")}
    mask = runs["without_bn"]["mask"]
    if not np.array_equal(mask, runs["with_bn"]["mask"]):
        raise ValueError("fig03: the runs without and with BN were fitted to different masks")
    size = mask.shape[0]
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    _mask_image(ax, mask, f"{PAPER} Fig 3a: random {size}×{size} mask, fill probability {p:g}\n"
                f"(black = low-loss cell; run seed {runs['without_bn']['spec']['seed']})")
    _save(fig, outputs["a"])
    for panel, variant, words in (("b", "without_bn", "without BN"), ("c", "with_bn", "with BN")):
        run = runs[variant]
        fig, ax = plt.subplots(figsize=(6.2, 4.8))
        _surface(fig, ax, run["ce"], "ce",
                 f"{PAPER} Fig 3{panel}: MPO result {words} ({run['spec']['architecture']['name']})\n"
                 f"test loss; test acc black {run['acc_black']:.2f} / white {run['acc_white']:.2f} "
                 f"(Δ = {run['acc_black'] - run['acc_white']:.2f})")
        _save(fig, outputs[panel])


def fig04_bn_accuracy(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 4a: Δ = mean test accuracy on black cells − on white cells vs fill probability, without / with BN,
    error bars = std across runs. Fig 4b: the two mean accuracies (blue = without BN, red = with BN; solid =
    black cells, dotted = white cells), as the paper's caption says."""
    with open(inputs["summary"]) as fh:
        s = json.load(fh)
    p = np.asarray(s["fill_probabilities"])
    runs = s["without_bn"]["runs"]
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for variant, colour, words in (("without_bn", BLUE, "without BN"), ("with_bn", RED, "with BN")):
        v = s[variant]
        ax.errorbar(p, v["delta_mean"], yerr=np.nan_to_num(v["delta_std"]), color=colour, marker="o", capsize=3,
                    label=words)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("filling probability p of the random mask")
    ax.set_ylabel("test accuracy: black cells − white cells")
    ax.set_title(f"{PAPER} Fig 4a: accuracy difference Δ (mean ± std over {runs} runs)", fontsize=9)
    ax.legend()
    _save(fig, outputs["a"])
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for variant, colour, words in (("without_bn", BLUE, "without BN"), ("with_bn", RED, "with BN")):
        v = s[variant]
        ax.plot(p, v["acc_black_mean"], color=colour, ls="-", marker="o", label=f"{words}, black cells")
        ax.plot(p, v["acc_white_mean"], color=colour, ls=":", marker="o", label=f"{words}, white cells")
    ax.set_xlabel("filling probability p of the random mask")
    ax.set_ylabel("mean test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{PAPER} Fig 4b: mean test accuracy per colour ({runs} runs)\n"
                 "blue: without BN, red: with BN; solid: black cells, dotted: white cells", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, outputs["b"])


def fig05_more_test_loss_surfaces(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 5 (App. D): more patterns on the FashionMNIST role, test loss surfaces only; each row shows the
    pattern and its surface, with the train/test map correlation (§4.1: almost indistinguishable)."""
    searches = [read_search(p) for p in inputs["searches"]]
    fig, axes = plt.subplots(len(searches), 2, figsize=(8.6, 4.0 * len(searches)), squeeze=False)
    for row, search in zip(axes, searches, strict=True):
        _mask_image(row[0], search["mask"], f"pattern '{search['spec']['picture']}'")
        r = search["summary"].get("train_test_log_ce_pearson", float("nan"))
        _surface(fig, row[1], search["test"]["ce"], "ce",
                 f"test loss — {_describe(search)}\n{_stats(search, 'test')}\n"
                 f"Pearson r(train, test log CE maps) = {r:.3f}")
    fig.suptitle(f"{PAPER} Fig 5: additional patterns (FashionMNIST role), test loss surfaces", fontsize=10)
    _save(fig, outputs["a"])


def fig06_train_test_surfaces(inputs: dict, outputs: dict, options: dict) -> None:
    """Fig 6 (App. D): more patterns on the CIFAR-10 role; left column train, right column test, loss
    (log scale) and accuracy surfaces for each pattern."""
    searches = [read_search(p) for p in inputs["searches"]]
    fig, axes = plt.subplots(2 * len(searches), 2, figsize=(9.0, 7.6 * len(searches)), squeeze=False)
    for i, search in enumerate(searches):
        for j, split in enumerate(("train", "test")):
            for k, kind in enumerate(("ce", "acc")):
                what = "loss" if kind == "ce" else "accuracy"
                _surface(fig, axes[2 * i + k, j], search[split][kind], kind,
                         f"{split} {what} — pattern '{search['spec']['picture']}'\n{_stats(search, split)}")
    fig.suptitle(f"{PAPER} Fig 6: additional patterns (CIFAR-10 role: {searches[0]['spec']['dataset']}); "
                 "left train, right test", fontsize=10)
    _save(fig, outputs["a"])
