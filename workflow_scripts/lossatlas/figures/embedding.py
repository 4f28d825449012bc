"""Figures of the embedding principle paper (embedding_principle.txt), one function per figure file.

Each reads only the analysis outputs (results/analysis/embedding/, lossatlas.analysis.embedding): ``inputs.data``,
the figure's own arrays (``<figure>.npz``), and ``inputs.summary``, its experiment's numbers (``<experiment>.json``).
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np

from lossatlas.figures.common import dispatch, save

BLUE = "tab:blue"


def _load(inputs) -> tuple[dict, dict]:
    with np.load(inputs["data"]) as data:
        arrays = {k: data[k] for k in data.files}
    with open(inputs["summary"]) as fh:
        return arrays, json.load(fh)


def _mark_blue(ax, loss: np.ndarray, point: dict, label: str) -> None:
    """The blue dot at the empirical critical point, and its stagnation stretch shaded."""
    start, end = point["stretch"]
    ax.axvspan(max(start, 1), end, color=BLUE, alpha=0.08, label="stagnation stretch")
    ax.plot([max(point["step"], 1)], [loss[point["step"]]], "o", color=BLUE, ms=8, label=label)


def fig01_stagnation(inputs, output: str) -> None:
    """Fig 1: (a) loss of the wide tanh net with its stagnation; (b) output at the blue dot vs narrow minimum."""
    a, s = _load(inputs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(len(a["loss"]))
    ax1.loglog(steps[1:], a["loss"][1:], color="k", lw=1)
    _mark_blue(ax1, a["loss"], s["blue_point"],
               f"blue dot: step {s['blue_point']['step']}, |grad R| = {s['blue_point']['grad_norm']:.1e}")
    ax1.set_xlabel("epoch (full-batch GD step)")
    ax1.set_ylabel("training loss R_S")
    ax1.set_title(f"Fig 1a: width-{s['width']} tanh NN, small init")
    ax1.legend(fontsize=8)
    width = s["closest_narrow_width"]
    ax2.plot(a["x"], a["y"], "ko", label="training data")
    ax2.plot(a["grid"], a["blue_output"], "-", color="tab:red", lw=2, label=f"width {s['width']} at blue dot")
    ax2.plot(a["grid"], a["closest_narrow_output"], "k--", lw=1.5,
             label=f"width-{width} minimum (loss {s['narrow_minima'][str(width)]['loss']:.4f})")
    ax2.plot(a["grid"], a["final_output"], ":", color="tab:gray", label=f"width {s['width']} at the last epoch")
    ax2.set_xlabel("x")
    ax2.set_ylabel("f(x)")
    ax2.set_title(f"Fig 1b: sup distance {s['sup_distance_blue_vs_closest_narrow']:.2g}")
    ax2.legend(fontsize=8)
    save(fig, output)


def _spectrum_figure(inputs, output: str, title: str) -> None:
    """Eigenvalues by index (ordered by |lambda|), |lambda| on a log axis: positive red, negative blue, zero
    (<= tau) grey crosses."""
    a, s = _load(inputs)
    levels = s["levels"]
    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 3.8), sharey=True)
    for ax, level in zip(np.atleast_1d(axes), levels, strict=True):
        lam = a[f"eigenvalues_w{level['width']}"]
        tau = level["zero_threshold"]
        idx = np.arange(1, len(lam) + 1)
        floor = max(np.abs(lam).min(), 1e-20)
        for mask, color, marker, label in ((lam > tau, "tab:red", "o", "positive"),
                                           (lam < -tau, BLUE, "o", "negative"),
                                           (np.abs(lam) <= tau, "tab:gray", "x", "zero (|λ| ≤ τ)")):
            if mask.any():
                ax.semilogy(idx[mask], np.maximum(np.abs(lam[mask]), floor), marker, color=color, label=label)
        ax.axhline(tau, color="k", ls=":", lw=0.8, label=f"τ = {tau:.1e}")
        ax.set_xlabel("index (by |λ|)")
        ax.set_title(f"width {level['width']} ({level['embedding_steps']}-step): "
                     f"#0={level['n_zero']} #neg={level['n_negative']}", fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("|Hessian eigenvalue|")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    cp = s["critical_point"]
    fig.suptitle(f"{title}; |grad R| = {cp['grad_norm']:.1e} (empirical {cp['grad_norm_empirical']:.1e})",
                 fontsize=10)
    save(fig, output)


def fig03a_hessian_spectrum_1d(inputs, output: str) -> None:
    """Fig 3a: Hessian spectra of a width-2 tanh critical point (1-D data) and its 1-, 2-step embeddings."""
    _spectrum_figure(inputs, output, "Fig 3a: 1-D fitting, tanh")


def fig03b_hessian_spectrum_iris(inputs, output: str) -> None:
    """Fig 3b: the same for Iris (sigmoid, MSE, Adam)."""
    _spectrum_figure(inputs, output, "Fig 3b: Iris, sigmoid, Adam")


def fig04_critical_point_diagram(inputs, output: str) -> None:
    """Fig 4: the critical points of the widest net, each with loss, output function, degeneracy, source width."""
    a, s = _load(inputs)
    rows = s["critical_points"]
    if not rows:
        raise ValueError(f"{inputs['summary']}: no critical point was found; nothing to draw")
    target = rows[0]["embedded_into_width"]
    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(3.2 * (len(rows) + 1), 3.6),
                             gridspec_kw={"width_ratios": [1.3] + [1] * len(rows)})
    diag = axes[0]
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(r["source_width"] for r in rows)))
    for r in rows:
        diag.semilogy([r["source_width"]], [r["loss"]], "o", ms=10, color=colors[r["source_width"] - 1])
        diag.annotate(f"#{r['index']}: deg {r['degeneracy']}, neg {r['n_negative']}",
                      (r["source_width"], r["loss"]), textcoords="offset points", xytext=(8, 0), fontsize=7)
    diag.set_xlabel("width it is embedded from")
    diag.set_ylabel("loss R_S")
    diag.set_xticks(sorted({r["source_width"] for r in rows}))
    diag.set_xlim(0.5, target + 1.5)
    diag.set_title(f"Fig 4: critical points of the width-{target} NN", fontsize=9)
    for ax, r in zip(axes[1:], rows, strict=True):
        ax.plot(a["x"], a["y"], "ko", ms=3)
        ax.plot(a["grid"], a[f"output_{r['index']}"], color=colors[r["source_width"] - 1], lw=2)
        verified = "" if r.get("verified", True) else f"\nnot verified: |grad| {r['grad_norm']:.0e} after polish"
        ax.set_title(f"#{r['index']}: from width {r['source_width']}\nloss {r['loss']:.2e}, "
                     f"degeneracy {r['degeneracy']}{verified}", fontsize=8)
        ax.set_xlabel("x")
        ax.set_yticks([])
    save(fig, output)


def fig05a_loss(inputs, output: str) -> None:
    """Fig 5a: training loss of the wide ReLU net (Adam, small init) with the blue dot at a stagnation."""
    a, s = _load(inputs)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    steps = np.arange(len(a["loss"]))
    ax.semilogy(steps, a["loss"], color="k", lw=1)
    _mark_blue(ax, a["loss"], s["blue_point"], f"blue dot: step {s['blue_point']['step']}")
    ax.set_xlabel("epoch (full-batch Adam step)")
    ax.set_ylabel("training loss R_S (MSE)")
    ax.set_title(f"Fig 5a: width-{s['width']} ReLU NN, {s['n_train']} digits", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, output)


def fig05b_similarity(inputs, output: str) -> None:
    """Fig 5b: cosine similarity of input weights of the non-negligible neurons, ordered by group."""
    a, s = _load(inputs)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(a["similarity"], cmap="RdBu_r", vmin=-1, vmax=1)
    for e in a["group_edges"]:
        ax.axhline(e, color="k", lw=0.6)
        ax.axvline(e, color="k", lw=0.6)
    fig.colorbar(image, ax=ax, label="cosine similarity of input weights")
    ax.set_xlabel("neuron (grouped)")
    ax.set_ylabel("neuron (grouped)")
    ax.set_title(f"Fig 5b: {s['n_groups']} groups at cos ≥ {s['cos_threshold']}\n"
                 f"({s['n_neglected']} small neurons neglected)", fontsize=9)
    save(fig, output)


def fig05c_reduced_loss(inputs, output: str) -> None:
    """Fig 5c: training loss of the reduced net from theta_reduced; blue dashed line = loss at the blue dot of 5a."""
    a, s = _load(inputs)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    steps = np.arange(len(a["reduced_loss"]))
    ax.semilogy(steps, a["reduced_loss"], color="k", lw=1, label=f"reduced NN (width {s['n_groups']})")
    ax.axhline(s["blue_point"]["loss"], color=BLUE, ls="--", label="loss at the blue dot of Fig 5a")
    red = s["reduced_blue_point"]
    ax.plot([red["step"]], [a["reduced_loss"][red["step"]]], "o", color=BLUE, ms=8, label="blue dot (reduced)")
    ax.set_xlabel("epoch (full-batch Adam step)")
    ax.set_ylabel("training loss R_S (MSE)")
    ax.set_title(f"Fig 5c: width {s['width']} → {s['n_groups']}; loss gap {s['loss_gap_blue_vs_reduced']:.1e}",
                 fontsize=10)
    ax.legend(fontsize=8)
    save(fig, output)


def fig05d_agreement(inputs, output: str) -> None:
    """Fig 5d: prediction of the original (blue dot of 5a) vs the reduced model (blue dot of 5c) on test data."""
    a, s = _load(inputs)
    frequency = a["frequency"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(frequency, cmap="viridis")
    fig.colorbar(image, ax=ax, label="frequency of the prediction pair")
    ax.set_xticks(range(len(frequency)))
    ax.set_yticks(range(len(frequency)))
    ax.set_xlabel("prediction of the reduced NN")
    ax.set_ylabel("prediction of the original NN")
    ax.set_title(f"Fig 5d: agreement {100 * s['agreement_rate']:.1f}% on {s['n_test']} test digits", fontsize=10)
    save(fig, output)


FIGURES = {
    "fig01_stagnation": fig01_stagnation,
    "fig03a_hessian_spectrum_1d": fig03a_hessian_spectrum_1d,
    "fig03b_hessian_spectrum_iris": fig03b_hessian_spectrum_iris,
    "fig04_critical_point_diagram": fig04_critical_point_diagram,
    "fig05a_loss": fig05a_loss,
    "fig05b_similarity": fig05b_similarity,
    "fig05c_reduced_loss": fig05c_reduced_loss,
    "fig05d_agreement": fig05d_agreement,
}


def draw(name: str, inputs, output: str) -> None:
    """Entry point of rule embedding_figure: draw the figure file ``name``."""
    dispatch(FIGURES, "embedding", name, inputs, output)
