"""Figures of *Universality Patterns in the Training of Neural Networks* (papers/universality_patterns.txt):
Table 1 and Figs 1-16, one function each, drawn only from results/analysis/universality/ (written by
lossatlas.analysis.universality.analyse).

Every curve is one training run (one architecture, training loss, optimiser, initialisation) traced through its
checkpoints. The paper does not label its axes; following §3 (L(θ_t; l_2) ≈ f(L(θ_t; l_1))) x is the first loss
of a pair (the training loss in Figs 1, 2, 5-8) and y the second (the 0/1 error). The black dashed line is the
isotonic fit the overlap measure D uses (pooled over the panel, or fitted on the reference group where the
figure compares groups); D values are in the legends / panel texts.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lossatlas.figures.common import dispatch, save

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*", "P", "h"]
LOSS_LABEL = {"ce": "l_CE", "mse_softmax": "l_MSE"}
METRIC_LABEL = {"ce": "L(l_CE)", "mse": "L(l_MSE)", "err01": "L(l_0/1)"}
FIGURE_TITLES = {
    "fig01": "Fig 1: train 0/1 error vs train loss, {cifar10}, all architectures",
    "fig02": "Fig 2: test 0/1 error vs test loss, {cifar10}, all architectures",
    "fig03": "Fig 3: pairs of losses across SGD and SGDm, {cifar10}, all architectures",
    "fig04": "Fig 4: pairs of losses across training losses l_MSE and l_CE, {cifar10}",
    "fig05": "Fig 5: deep and shallow (FC1) architectures, {cifar10}, train",
    "fig06": "Fig 6: train 0/1 error vs train loss, {imagenet20}, all architectures",
    "fig07": "Fig 7: 1-hidden-layer MLPs of varying width, {cifar10}, SGD, train",
    "fig08": "Fig 8: test 0/1 error vs test loss, {imagenet20}, all architectures",
    "fig09": "Fig 9: all pairs of losses, {cifar10}, train, across architectures",
    "fig10": "Fig 10: all pairs of losses, {imagenet20}, train, across architectures",
    "fig11": "Fig 11: all pairs of losses, {cifar10}, 2 random initialisations",
    "fig12": "Fig 12: all pairs of losses, {imagenet20}, 2 random initialisations",
    "fig13": "Fig 13: all pairs of losses across SGD and SGDm, {imagenet20}",
    "fig14": "Fig 14: all pairs of losses across training losses l_MSE and l_CE, {imagenet20}",
    "fig15": "Fig 15: all pairs of losses across {cifar10} and {random_pixels} (random pixels)",
    "fig16": "Fig 16: all pairs of losses across {cifar10} and {random_labels} (random labels)",
}
AXIS_NOTE = "axes end at 1.5× the loss at initialisation"


def metric_label(metric: str) -> str:
    if metric.startswith("lp_"):
        p = metric[3:]
        return f"L(l_ℓ{'∞' if p == 'inf' else p})"
    return METRIC_LABEL.get(metric, metric)


def panel_title(panel, roles: dict) -> str:
    """"Trained L(l) using O", naming the training loss and the optimiser where the panel has only one."""
    optimizer_name = {roles["sgd"]: "SGD", roles["sgdm"]: "SGDm"}
    title = "Trained"
    if len(panel.losses) == 1:
        title += f" L({LOSS_LABEL[panel.losses[0]]})"
    if len(panel.optimizers) == 1:
        title += f" using {optimizer_name[panel.optimizers[0]]}"
    return title


def _load(inputs, figure: str) -> dict:
    """The analysis tables, this figure's panels and, per panel, the rows of the curves table it draws."""
    with open(inputs["panels"]) as fh:
        meta = json.load(fh)
    panels = [SimpleNamespace(**p) for p in meta["panels"] if p["figure"] == figure]
    if not panels:
        raise ValueError(f"universality {figure}: no panels in {inputs['panels']}")
    curves = pd.read_csv(inputs["curves"])
    members = pd.read_csv(inputs["panel_curves"])
    frames = [curves.iloc[members[(members["figure"] == p.figure) & (members["letter"] == p.letter)]["row"]]
              for p in panels]
    return {"per_curve": pd.read_csv(inputs["overlap_curves"]), "fits": pd.read_csv(inputs["fits"]),
            "panels": panels, "frames": frames, "meta": meta, "curve_keys": meta["curve_keys"]}


def _suptitle(figure: str, meta: dict) -> str:
    roles = meta["roles"]
    lo, hi = meta["informative_range"]
    return (FIGURE_TITLES[figure].format(**{k: v for k, v in roles.items() if isinstance(v, str)})
            + f"\nD = mean |y − isotonic fit| over the informative range ({lo:g}–{hi:g} of the fit's range); "
            + AXIS_NOTE)


def _sort_key(value):
    return (isinstance(value, str), value)  # numbers (widths, seeds) numerically, names alphabetically


def _colors(values) -> dict:
    values = sorted(set(values), key=_sort_key)
    cmap = plt.get_cmap("tab10" if len(values) <= 10 else "viridis")
    n = max(len(values) - 1, 1)
    return {v: cmap(i if len(values) <= 10 else i / n) for i, v in enumerate(values)}


def _group_label(column: str, value) -> str:
    if column == "loss":
        return f"trained {LOSS_LABEL.get(value, value)}"
    if column == "width":
        return f"width {int(value)}"
    if column == "seed":
        return f"seed {value}"
    return str(value).removeprefix("uni_")  # config names carry the study prefix; legends need not


def _fit_line(fits: pd.DataFrame, panel, x: str, y: str, variant: str = "full"):
    sel = fits[(fits["figure"] == panel.figure) & (fits["panel"] == panel.letter) & (fits["x"] == x)
               & (fits["y"] == y) & (fits["variant"] == variant)]
    between = sel[sel["comparison"] == "between"]
    row = (between if len(between) else sel[sel["comparison"] == "pooled"])
    if row.empty:
        return None
    row = row.iloc[0]
    return np.array(json.loads(row["grid_x"])), np.array(json.loads(row["grid_y"])), row["comparison"], row["fit_on"]


def _curve_D(per_curve: pd.DataFrame, panel, x: str, y: str, variant: str = "full") -> pd.DataFrame:
    sel = per_curve[(per_curve["figure"] == panel.figure) & (per_curve["panel"] == panel.letter)
                    & (per_curve["x"] == x) & (per_curve["y"] == y) & (per_curve["variant"] == variant)]
    between = sel[sel["comparison"] == "between"]
    return between if len(between) else sel[sel["comparison"] == "pooled"]


def _group_summary(D: pd.DataFrame, column: str | None) -> str:
    if D.empty:
        return "D: no points in range"
    if column is None or D["comparison"].iloc[0] == "pooled":
        return f"D={D['D'].mean():.3f}"
    parts = []
    for value, g in D.groupby(column):
        ref = " (fit)" if bool(g["is_reference"].iloc[0]) else ""
        parts.append(f"{_group_label(column, value)}{ref}: {g['D'].mean():.3f}")
    return "D " + ", ".join(parts)


def _axis_limit(frame: pd.DataFrame, metric: str) -> float:
    """Upper axis limit: 1.5 x the loss at initialisation (median over curves), or the data's maximum if
    smaller. A run that spikes far above its starting loss (large constant rates) would otherwise squash every
    other curve into the axis; such points are cut off, and the caption says so."""
    top = float(frame[metric].max())
    start = frame[frame["checkpoint"] == 0][metric]
    if len(start):
        top = min(top, 1.5 * float(start.median()))
    return top * 1.04 if top > 0 else 1.0


# --------------------------------------------------------------------------------- curve figures (1, 2, 5-8)


def _curve_figure(inputs, figure: str, output: str) -> None:
    data = _load(inputs, figure)
    panels = data["panels"]
    ncols = 2
    nrows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.8 * nrows + 0.8), squeeze=False)
    for ax, panel, frame in zip(axes.flat, panels, data["frames"], strict=False):
        x, y = panel.pairs[0]
        D = _curve_D(data["per_curve"], panel, x, y)
        colors = _colors(frame[panel.color_by].dropna())
        groups = sorted(frame.groupby(data["curve_keys"]), key=lambda kg: _sort_key(kg[1][panel.color_by].iloc[0]))
        for i, (keys, g) in enumerate(groups):
            g = g.sort_values("checkpoint")
            value = g[panel.color_by].iloc[0]
            match = D[(D["arch"] == keys[2]) & (D["seed"] == keys[5]) & (D["dataset"] == keys[1])
                      & (D["optimizer"] == keys[3]) & (D["loss"] == keys[4])]
            d_text = f"  D={match['D'].iloc[0]:.3f}" if len(match) and np.isfinite(match["D"].iloc[0]) else ""
            shallow = g["arch_kind"].iloc[0] == "shallow"
            ax.plot(g[x], g[y], color=colors[value], lw=2.4 if shallow else 1.2, ls="--" if shallow else "-",
                    marker=MARKERS[i % len(MARKERS)], ms=2.5, alpha=0.9,
                    label=f"{_group_label(panel.color_by, value)}{' (FC1 role)' if shallow else ''}{d_text}")
        fit = _fit_line(data["fits"], panel, x, y)
        if fit is not None:
            xs, ys, comparison, fit_on = fit
            label = "isotonic fit, deep nets" if comparison == "between" else "isotonic fit, all curves"
            ax.plot(xs, ys, color="black", ls="--", lw=1.0, label=label)
        text = _group_summary(D, panel.compare_by)
        if panel.truncate:
            mono = _curve_D(data["per_curve"], panel, x, y, "monotone")
            text += f"\nmonotone part (up to the test-loss minimum): D={mono['D'].mean():.3f}"
        ax.text(0.98, 0.03, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        split = panel.split
        ax.set_xlabel(f"{split} {metric_label(x)} (training loss)")
        ax.set_ylabel(f"{split} {metric_label(y)}")
        ax.set_title(f"({panel.letter}) {panel_title(panel, data['meta']['roles'])}", fontsize=10)
        ax.set_xlim(0, _axis_limit(frame, x))
        ax.set_ylim(0, _axis_limit(frame, y))
        ax.legend(fontsize=6.5, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(_suptitle(figure, data["meta"]), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, output, tight_layout=False)


# ------------------------------------------------------------------------------- pair figures (3, 4, 9-16)


def _pairs_figure(inputs, figure: str, output: str) -> None:
    data = _load(inputs, figure)
    panels = data["panels"]
    metrics = list(dict.fromkeys([m for pair in panels[0].pairs for m in pair]))
    n = len(metrics) - 1
    ncols = 2
    nrows = (len(panels) + 1) // 2
    fig = plt.figure(figsize=(3.1 * n * ncols, 3.0 * n * nrows + 1.4))
    header, body = fig.subfigures(2, 1, height_ratios=[1.4, 3.0 * n * nrows])
    subfigs = np.atleast_1d(body.subfigures(nrows, ncols, wspace=0.04, hspace=0.04)).ravel()
    handles = {}
    for sub, panel, frame in zip(subfigs, panels, data["frames"], strict=False):
        colors = _colors(frame[panel.color_by].dropna())
        styles = ({v: LINESTYLES[i % len(LINESTYLES)] for i, v in enumerate(sorted(frame[panel.style_by].unique()))}
                  if panel.style_by else {})
        axes = sub.subplots(n, n, squeeze=False)
        sub.subplots_adjust(left=0.1, right=0.97, bottom=0.08, top=0.9, wspace=0.3, hspace=0.3)
        for row in range(n):
            for col in range(n):
                ax = axes[row, col]
                if col > row:
                    ax.axis("off")
                    continue
                x, y = metrics[col], metrics[row + 1]
                for _keys, g in frame.groupby(data["curve_keys"]):
                    g = g.sort_values("checkpoint")
                    value = g[panel.color_by].iloc[0]
                    style = styles.get(g[panel.style_by].iloc[0], "-") if panel.style_by else "-"
                    label = _group_label(panel.color_by, value)
                    if panel.style_by and panel.style_by != panel.color_by:
                        label += f" / {_group_label(panel.style_by, g[panel.style_by].iloc[0])}"
                    (line,) = ax.plot(g[x], g[y], color=colors[value], ls=style, lw=0.9, alpha=0.85)
                    handles.setdefault(label, line)
                fit = _fit_line(data["fits"], panel, x, y)
                if fit is not None:
                    ax.plot(fit[0], fit[1], color="black", ls="--", lw=0.8)
                D = _curve_D(data["per_curve"], panel, x, y)
                ax.text(0.97, 0.03, _group_summary(D, panel.compare_by).replace(", ", "\n"),
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=5.5,
                        bbox={"facecolor": "white", "alpha": 0.75, "lw": 0})
                ax.set_xlim(0, _axis_limit(frame, x))
                ax.set_ylim(0, _axis_limit(frame, y))
                ax.tick_params(labelsize=6)
                if row == n - 1:
                    ax.set_xlabel(metric_label(x), fontsize=7)
                if col == 0:
                    ax.set_ylabel(metric_label(y), fontsize=7)
                ax.grid(alpha=0.3)
        sub.suptitle(f"({panel.letter}) {panel_title(panel, data['meta']['roles'])}", fontsize=10)
    for sub in subfigs[len(panels):]:
        sub.set_visible(False)
    header.legend(list(handles.values()), list(handles.keys()), loc="center right", fontsize=7,
                  ncols=max(1, min(4, len(handles) // 4 + 1)))
    header.text(0.01, 0.5, _suptitle(figure, data["meta"]) + "\nblack dashed = the isotonic fit D is measured "
                "against (on the reference group where the figure compares groups)", fontsize=10, va="center")
    save(fig, output, tight_layout=False)


# ------------------------------------------------------------------------------------------------ Table 1


def table01_datasets(inputs, output: str) -> None:
    """Table 1 (datasets used), rendered from the dataset files this study trained on."""
    table = pd.read_csv(inputs["datasets"]).fillna("")
    columns = ["paper_role", "dataset", "train_examples", "test_examples", "classes", "dimension"]
    header = ["paper's dataset", "dataset here", "train examples", "test examples", "classes", "dimension"]
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.42 * (len(table) + 1)))
    ax.axis("off")
    cells = [[str(v) for v in row] for row in table[columns].itertuples(index=False)]
    tab = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.auto_set_column_width(col=list(range(len(header))))
    tab.scale(1, 1.4)
    ax.set_title("Table 1: datasets used (read from the dataset files of this run)", fontsize=10)
    save(fig, output, tight_layout=False)


# ----------------------------------------------------------------------------------- one function a figure


def fig01_train_loss_vs_error(inputs, output: str) -> None:
    _curve_figure(inputs, "fig01", output)


def fig02_test_loss_vs_error(inputs, output: str) -> None:
    _curve_figure(inputs, "fig02", output)


def fig03_pairs_across_optimizers(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig03", output)


def fig04_pairs_across_losses(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig04", output)


def fig05_deep_vs_shallow(inputs, output: str) -> None:
    _curve_figure(inputs, "fig05", output)


def fig06_train_loss_vs_error_imagenet20(inputs, output: str) -> None:
    _curve_figure(inputs, "fig06", output)


def fig07_widths(inputs, output: str) -> None:
    _curve_figure(inputs, "fig07", output)


def fig08_test_loss_vs_error_imagenet20(inputs, output: str) -> None:
    _curve_figure(inputs, "fig08", output)


def fig09_all_pairs(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig09", output)


def fig10_all_pairs_imagenet20(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig10", output)


def fig11_all_pairs_seeds(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig11", output)


def fig12_all_pairs_seeds_imagenet20(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig12", output)


def fig13_pairs_across_optimizers_imagenet20(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig13", output)


def fig14_pairs_across_losses_imagenet20(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig14", output)


def fig15_pairs_across_random_pixels(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig15", output)


def fig16_pairs_across_random_labels(inputs, output: str) -> None:
    _pairs_figure(inputs, "fig16", output)


FIGURES = {
    "table01_datasets": table01_datasets,
    "fig01_train_loss_vs_error": fig01_train_loss_vs_error,
    "fig02_test_loss_vs_error": fig02_test_loss_vs_error,
    "fig03_pairs_across_optimizers": fig03_pairs_across_optimizers,
    "fig04_pairs_across_losses": fig04_pairs_across_losses,
    "fig05_deep_vs_shallow": fig05_deep_vs_shallow,
    "fig06_train_loss_vs_error_imagenet20": fig06_train_loss_vs_error_imagenet20,
    "fig07_widths": fig07_widths,
    "fig08_test_loss_vs_error_imagenet20": fig08_test_loss_vs_error_imagenet20,
    "fig09_all_pairs": fig09_all_pairs,
    "fig10_all_pairs_imagenet20": fig10_all_pairs_imagenet20,
    "fig11_all_pairs_seeds": fig11_all_pairs_seeds,
    "fig12_all_pairs_seeds_imagenet20": fig12_all_pairs_seeds_imagenet20,
    "fig13_pairs_across_optimizers_imagenet20": fig13_pairs_across_optimizers_imagenet20,
    "fig14_pairs_across_losses_imagenet20": fig14_pairs_across_losses_imagenet20,
    "fig15_pairs_across_random_pixels": fig15_pairs_across_random_pixels,
    "fig16_pairs_across_random_labels": fig16_pairs_across_random_labels,
}


def draw(name: str, inputs, output: str) -> None:
    """Entry point of rule universality_figure: draw the figure file ``name``."""
    dispatch(FIGURES, "universality", name, inputs, output)
