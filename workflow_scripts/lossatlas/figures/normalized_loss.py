"""Figures 1-20 of Liao et al., *A Surprising Linear Relationship Predicts Test Performance in Deep Networks*
(papers/normalized_loss_linear.txt), drawn from the study's analysis outputs only (results/analysis/
normalized_loss/, lossatlas/analysis/normalized_loss.py): the figure's experiment's ``points.csv``, the fit table
``fits.csv``, ``correlations.csv``, ``psi_overlay.csv``, and for Figs 19/20 ``max_logits.csv`` and
``max_logit_values.npz``.

Every function is ``figNN_<what>(inputs, output)``; ``inputs`` maps those role names (``points``, ``fits``, …)
to files. Point labels follow the paper: the corruption fraction q of the pretraining labels, the init standard
deviation σ, "0" for natural runs without random pretraining, "RL" for random-label runs.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lossatlas.figures.common import dispatch, save

PAPER = "Liao et al."
NATURAL, RL, FIT = "#1f77b4", "#d62728", "#2ca02c"


def _points(inputs: dict) -> pd.DataFrame:
    pts = pd.read_csv(inputs["points"], dtype={"label": str})
    if pts.empty:
        raise ValueError(f"{inputs['points']}: no points")
    pts["label"] = pts["label"].astype(str)
    return pts


def _fit_row(inputs: dict, figure: str, panel: str) -> pd.Series:
    fits = pd.read_csv(inputs["fits"])
    rows = fits[(fits["figure"] == figure) & (fits["panel"] == panel)]
    if len(rows) != 1:
        raise ValueError(f"{inputs['fits']}: expected one fit for {figure} / {panel}, found {len(rows)}")
    return rows.iloc[0]


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def _fit_text(row: pd.Series) -> str:
    text = (f"slope {_fmt(row['slope'])}, intercept {_fmt(row['intercept'])}\n"
            f"R² {_fmt(row['r2'], 5)}, adj. R² {_fmt(row['adj_r2'], 5)}, n = {int(row['n'])}\n"
            f"RMSE {_fmt(row['rmse'], 4)} (n−2), {_fmt(row['rmse_n'], 4)} (n)\n"
            f"a·lnK + b − lnK = {_fmt(row['fixed_point_gap'], 3)}")
    if np.isfinite(row.get("paper_slope", math.nan)):
        text += (f"\npaper: slope {row['paper_slope']:g}, intercept {row['paper_intercept']:g}, "
                 f"R² {row['paper_r2']:g}, RMSE {row['paper_rmse']:.4g}")
    return text


def _scatter(ax, pts: pd.DataFrame, x: str, y: str, annotate: bool = True) -> None:
    """Points coloured by kind (natural / RL), each annotated with its label (q, σ, 0 or RL)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5))  # long tick labels (2.30050) must not overlap
    for kind, color, marker in (("natural", NATURAL, "o"), ("RL", RL, "s")):
        sub = pts[pts["kind"] == kind]
        if sub.empty:
            continue
        ax.scatter(sub[x], sub[y], s=22, color=color, marker=marker, zorder=3,
                   label="natural labels" if kind == "natural" else "random labels (RL)")
        if annotate:
            for _, r in sub.iterrows():
                ax.annotate(r["label"], (r[x], r[y]), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=color)


def _fit_panel(ax, pts: pd.DataFrame, row: pd.Series, title: str, xlabel: str, ylabel: str,
               show_all: bool = False) -> None:
    """Scatter of the row's x/y columns with its fitted line; only the fitted points unless ``show_all``."""
    fitted = pts if row["points"] == "all" else pts[pts["kind"] == "natural"]
    if "in_fit" in fitted:  # networks left out of the fit (training error not 0) are not drawn as fitted
        fitted = fitted[fitted["in_fit"].astype(bool)]
    _scatter(ax, pts if show_all else fitted, row["x"], row["y"])
    if np.isfinite(row["slope"]) and len(fitted):
        xs = np.linspace(fitted[row["x"]].min(), fitted[row["x"]].max(), 50)
        left_out = int(row.get("left_out", 0))
        ax.plot(xs, row["slope"] * xs + row["intercept"], color=FIT, lw=1.2,
                label=f"OLS fit ({'natural + RL' if row['points'] == 'all' else 'natural only'}"
                      + (f"; {left_out} left out: training error ≠ 0" if left_out else "") + ")")
    ax.text(0.02, 0.98, _fit_text(row), transform=ax.transAxes, va="top", ha="left", fontsize=6.5,
            bbox=dict(boxstyle="round", fc="white", alpha=0.85, lw=0.5))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6.5, loc="lower right")


def _sweep_panels(pts: pd.DataFrame, x: str, xlabel: str, figure: str, what: str, output: str) -> None:
    """Figs 1, 2, 9, 10: training loss (≈ equal by snapshot selection), test loss and test error vs the sweep."""
    nat = pts[pts["kind"] == "natural"].sort_values(x)
    xs = nat[x] * (100 if x == "q" else 1)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, col, name in zip(axes, ("train_ce", "test_ce", "test_err"),
                             ("training loss (CE)", "test loss (CE)", "test error"), strict=True):
        ax.scatter(xs, nat[col], s=18, color=NATURAL, zorder=3, label="one seed")
        means = nat.groupby(x)[col].mean()
        ax.plot(means.index * (100 if x == "q" else 1), means.values, color="k", lw=1, label="mean over seeds")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    errs = ", ".join(f"{v:.3g}" for v in sorted(set(np.round(nat["train_err"], 4))))
    fig.suptitle(f"{PAPER} {figure}: {what} (snapshot closest to the reference training loss; "
                 f"training error(s): {errs})", fontsize=9)
    save(fig, output)


def _four_panels(pts: pd.DataFrame, inputs: dict, figure: str, what: str, output: str) -> None:
    """Figs 4, 5, 11, 12: unnormalised loss, product of L2 norms, normalised loss, error vs normalised loss."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    _fit_panel(axes[0, 0], pts, _fit_row(inputs, figure, "top-left (unnormalised)"),
               "top-left: unnormalised networks", "training loss (CE)", "test loss (CE)", show_all=True)
    ax = axes[0, 1]
    _scatter(ax, pts, "product_fro", "test_ce")
    ax.set_xscale("log")
    ax.set_title("top-right: test loss vs product of layer Frobenius norms", fontsize=9)
    ax.set_xlabel("product of layer Frobenius norms ∏ ‖W_l‖_F (BN absorbed)")
    ax.set_ylabel("test loss (CE), unnormalised")
    ax.legend(fontsize=6.5)
    row = _fit_row(inputs, figure, "bottom-left (normalised)")
    _fit_panel(axes[1, 0], pts, row, "bottom-left: layerwise Frobenius-normalised networks",
               "normalised training loss (CE)", "normalised test loss (CE)", show_all=True)
    ax = axes[1, 1]
    _scatter(ax, pts, "train_ce_fro", "test_err_fro")
    psi = pd.read_csv(inputs["psi_overlay"])
    psi = psi[psi["experiment"] == pts["experiment"].iloc[0]]
    if len(psi):  # over all points: RL gives the chance-error end
        ax.plot(psi["x"], psi["y"], color="purple", lw=1, ls="--", label="ψ(x) = 1 − √(1 − x²), rescaled to the points")
    same = bool(np.all(pts["test_err_fro"] == pts["test_err"]))
    ax.set_title(f"bottom-right: test error vs normalised training loss\n(error unchanged by normalisation: "
                 f"{same})", fontsize=9)
    ax.set_xlabel("normalised training loss (CE)")
    ax.set_ylabel("test error")
    ax.legend(fontsize=6.5)
    fig.suptitle(f"{PAPER} {_name(figure)}: {what}", fontsize=10)
    save(fig, output)


def _two_fits(inputs: dict, figure: str, panels: list[tuple[str, str, str, str]], what: str,
              output: str) -> None:
    pts = _points(inputs)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (panel, title, xlabel, ylabel) in zip(axes[0], panels, strict=True):
        _fit_panel(ax, pts, _fit_row(inputs, figure, panel), title, xlabel, ylabel)
    fig.suptitle(f"{PAPER} {_name(figure)}: {what}", fontsize=10)
    save(fig, output)


def _name(figure: str) -> str:
    """fig04 -> Fig 4."""
    return f"Fig {int(figure[3:])}"


NORM_X, NORM_Y = "normalised training loss (CE)", "normalised test loss (CE)"
RAW_X, RAW_Y = "training loss (CE), unnormalised", "test loss (CE), unnormalised"


# ------------------------------------------------------------------------------------------------ figures


def fig01_corruption_vs_generalization(inputs, output: str) -> None:
    """Fig 1: BN net, pretraining on labels corrupted at q, snapshot at the reference training loss."""
    _sweep_panels(_points(inputs), "q", "labels corrupted in pretraining (%)", "Fig 1",
                  "random pretraining vs generalisation (BN net, BN absorbed)", output)


def fig02_init_std_vs_generalization(inputs, output: str) -> None:
    """Fig 2: BN net, Gaussian initialisation with standard deviation σ."""
    _sweep_panels(_points(inputs), "sigma", "init standard deviation σ", "Fig 2",
                  "init standard deviation vs generalisation (BN net)", output)


def fig03_normalized_vs_unnormalized(inputs, output: str) -> None:
    """Fig 3: 3-layer net (bias in layer 1 only), q sweep; left normalised, right unnormalised test vs train CE."""
    _two_fits(inputs, "fig03", [("left (normalised)", "left: Frobenius-normalised", NORM_X, NORM_Y),
                                ("right (unnormalised)", "right: unnormalised", RAW_X, RAW_Y)],
              "test vs training loss, 3-layer net, labels = corruption q", output)


def fig04_corruption_four_panels(inputs, output: str) -> None:
    """Fig 4: BN net, random pretraining: the four panels."""
    _four_panels(_points(inputs), inputs, "fig04", "random pretraining, BN net (labels = q; RL = random labels)",
                 output)


def fig05_init_four_panels(inputs, output: str) -> None:
    """Fig 5: BN net, init σ sweep plus the RL point: the four panels."""
    _four_panels(_points(inputs), inputs, "fig05", "init standard deviation σ, BN net (labels = σ; RL = random "
                 "labels)", output)


def fig06_natural_and_random_labels(inputs, output: str) -> None:
    """Fig 6: natural (0) and random-label (RL) runs; left unnormalised, right normalised, fit on both."""
    _two_fits(inputs, "fig06", [("left (unnormalised)", "left: unnormalised", RAW_X, RAW_Y),
                                ("right (normalised, 0 and RL)", "right: Frobenius-normalised", NORM_X, NORM_Y)],
              "natural (0) and random-label (RL) networks", output)


def fig07_wide_net_init(inputs, output: str) -> None:
    """Fig 7: the wider 3-layer net (G.1.2 stand-in), init σ sweep, normalised test vs train CE."""
    _two_fits(inputs, "fig07", [("normalised", "Frobenius-normalised, labels = init σ", NORM_X, NORM_Y)],
              "wider 3-layer net (MNIST stand-in)", output)


def fig08_wide_net_init_random_labels(inputs, output: str) -> None:
    """Fig 8: as Fig 7 plus random-label points."""
    _two_fits(inputs, "fig08", [("normalised, with RL", "Frobenius-normalised, σ labels and RL", NORM_X,
                                 NORM_Y)], "wider 3-layer net with random-label points", output)


def fig09_corruption_many_classes(inputs, output: str) -> None:
    """Fig 9: Fig 1 on the many-class data set (CIFAR-100 stand-in)."""
    _sweep_panels(_points(inputs), "q", "labels corrupted in pretraining (%)", "Fig 9",
                  "as Fig 1, many classes", output)


def fig10_init_std_many_classes(inputs, output: str) -> None:
    """Fig 10: Fig 2 on the many-class data set."""
    _sweep_panels(_points(inputs), "sigma", "init standard deviation σ", "Fig 10", "as Fig 2, many classes",
                  output)


def fig11_corruption_four_panels_many_classes(inputs, output: str) -> None:
    """Fig 11: Fig 4 on the many-class data set."""
    _four_panels(_points(inputs), inputs, "fig11", "as Fig 4, many classes", output)


def fig12_init_four_panels_many_classes(inputs, output: str) -> None:
    """Fig 12: Fig 5 on the many-class data set."""
    _four_panels(_points(inputs), inputs, "fig12", "as Fig 5, many classes", output)


def fig13_l1_normalization(inputs, output: str) -> None:
    """Fig 13: networks of Fig 3 normalised layerwise by the L1 norm divided by 100: test loss and error."""
    pts = _points(inputs)
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.4))
    _fit_panel(axes[0], pts, _fit_row(inputs, "fig13", "test loss (L1/100)"), "test loss, L1/100-normalised",
               "normalised training loss (CE)", "normalised test loss (CE)")
    _scatter(axes[1], pts[pts["kind"] == "natural"], "train_ce_l1", "test_err_l1")
    axes[1].set_title("test error vs L1/100-normalised training loss", fontsize=9)
    axes[1].set_xlabel("normalised training loss (CE)")
    axes[1].set_ylabel("test error")
    fig.suptitle(f"{PAPER} Fig 13: layerwise L1 normalisation (‖W‖₁ / 100), labels = corruption q", fontsize=10)
    save(fig, output)


def fig14_stopped_at_equal_loss(inputs, output: str) -> None:
    """Fig 14: runs stopped at (about) the same training loss; normalised test loss and test error."""
    pts = _points(inputs)
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.4))
    _fit_panel(axes[0], pts, _fit_row(inputs, "fig14", "test loss (normalised)"),
               "test loss, Frobenius-normalised", NORM_X, NORM_Y)
    _scatter(axes[1], pts, "train_ce_fro", "test_err_fro")
    axes[1].set_title("test error vs normalised training loss", fontsize=9)
    axes[1].set_xlabel(NORM_X)
    axes[1].set_ylabel("test error")
    lo, hi = pts["train_ce"].min(), pts["train_ce"].max()
    elo, ehi = pts["epoch_train_loss"].min(), pts["epoch_train_loss"].max()
    fig.suptitle(f"{PAPER} Fig 14: stopped at equal training loss (epoch-mean loss at the stop {elo:.4g}–{ehi:.4g}; "
                 f"snapshot train CE {lo:.4g}–{hi:.4g}), labels = corruption q", fontsize=9)
    save(fig, output)


def fig15_natural_only(inputs, output: str) -> None:
    """Fig 15: natural runs only (no random pretraining); left normalised, right unnormalised."""
    pts = _points(inputs)
    lo, hi = pts.loc[pts["kind"] == "natural", "train_ce"].agg(["min", "max"])
    _two_fits(inputs, "fig15", [("left (normalised)", "left: Frobenius-normalised", NORM_X, NORM_Y),
                                ("right (unnormalised)", "right: unnormalised", RAW_X, RAW_Y)],
              f"natural runs only (train CE {lo:.3g}–{hi:.3g})", output)


def fig16_natural_and_random_labels_fit(inputs, output: str) -> None:
    """Fig 16: normalised test vs train CE of natural (0) and random-label (1 = RL) networks, fit on both."""
    _two_fits(inputs, "fig16", [("normalised, 0 and RL", "Frobenius-normalised", NORM_X, NORM_Y)],
              "natural (0) and random-label (RL) networks", output)


def fig17_corruption_and_random_labels_fit(inputs, output: str) -> None:
    """Fig 17: normalised test vs train CE of the randomly pretrained networks plus random-label networks."""
    _two_fits(inputs, "fig17", [("normalised, corruption and RL", "Frobenius-normalised", NORM_X, NORM_Y)],
              "random pretraining (labels = q) and random-label (RL) networks", output)


def fig18_product_norm_vs_test_error(inputs, output: str) -> None:
    """Fig 18: test error vs the product of layer Frobenius norms, runs stopped at equal training loss."""
    pts = _points(inputs)
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    _scatter(ax, pts, "product_fro", "test_err")
    corr = pd.read_csv(inputs["correlations"])
    row = corr[corr["figure"] == "fig18"]
    if len(row):
        r = row.iloc[0]
        ax.text(0.02, 0.98, f"Pearson r {_fmt(r['pearson_r'], 3)}, Spearman ρ {_fmt(r['spearman_rho'], 3)}, "
                f"n = {int(r['n'])}", transform=ax.transAxes, va="top", fontsize=7)
    ax.set_xlabel("‖W‖_product = ∏ ‖W_l‖_F")
    ax.set_ylabel("test error")
    ax.set_title(f"{PAPER} Fig 18: capacity (product norm) vs test error\n(stopped at equal training loss, "
                 "labels = corruption q)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, output)


def _max_logit_hist(inputs: dict, which: str, figure: str, paper_mean: float, paper_std: float,
                    output: str) -> None:
    with np.load(inputs["max_logit_values"]) as data:
        values = data[which]
    table = pd.read_csv(inputs["max_logits"], dtype={"label": str})
    if table.empty:
        raise ValueError(f"{inputs['max_logits']}: no network for the max-logit histograms")
    r = table.iloc[0]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.hist(values, bins=50, color=NATURAL if which == "normalised" else RL)
    ax.set_xlabel(f"max_k f_k(x) of the {which} network")
    ax.set_ylabel("training examples")
    ax.set_title(f"{PAPER} {figure}: max logit of the {which} network over the training set\n"
                 f"mean {values.mean():.6g}, std {values.std():.6g} (paper: {paper_mean:g}, {paper_std:g})\n"
                 f"net: {r['arch']}, init σ label {r['label']}, seed {r['seed']}", fontsize=8)
    save(fig, output)


def fig19_max_logit_normalized(inputs, output: str) -> None:
    """Fig 19: histogram of the most likely class's output of the layerwise-normalised net (training set)."""
    _max_logit_hist(inputs, "normalised", "Fig 19", 0.026683, 0.007144, output)


def fig20_max_logit_unnormalized(inputs, output: str) -> None:
    """Fig 20: the same for the unnormalised net."""
    _max_logit_hist(inputs, "unnormalised", "Fig 20", 60.564373, 16.214078, output)



FIGURES = {
    "fig01_corruption_vs_generalization": fig01_corruption_vs_generalization,
    "fig02_init_std_vs_generalization": fig02_init_std_vs_generalization,
    "fig03_normalized_vs_unnormalized": fig03_normalized_vs_unnormalized,
    "fig04_corruption_four_panels": fig04_corruption_four_panels,
    "fig05_init_four_panels": fig05_init_four_panels,
    "fig06_natural_and_random_labels": fig06_natural_and_random_labels,
    "fig07_wide_net_init": fig07_wide_net_init,
    "fig08_wide_net_init_random_labels": fig08_wide_net_init_random_labels,
    "fig09_corruption_many_classes": fig09_corruption_many_classes,
    "fig10_init_std_many_classes": fig10_init_std_many_classes,
    "fig11_corruption_four_panels_many_classes": fig11_corruption_four_panels_many_classes,
    "fig12_init_four_panels_many_classes": fig12_init_four_panels_many_classes,
    "fig13_l1_normalization": fig13_l1_normalization,
    "fig14_stopped_at_equal_loss": fig14_stopped_at_equal_loss,
    "fig15_natural_only": fig15_natural_only,
    "fig16_natural_and_random_labels_fit": fig16_natural_and_random_labels_fit,
    "fig17_corruption_and_random_labels_fit": fig17_corruption_and_random_labels_fit,
    "fig18_product_norm_vs_test_error": fig18_product_norm_vs_test_error,
    "fig19_max_logit_normalized": fig19_max_logit_normalized,
    "fig20_max_logit_unnormalized": fig20_max_logit_unnormalized,
}


def draw(name: str, inputs, output: str) -> None:
    """Entry point of rule normalized_loss_figure: draw the figure file ``name``."""
    dispatch(FIGURES, "normalized_loss", name, inputs, output)
