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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lossatlas.analysis import universality as uni  # noqa: E402
from lossatlas.io import atomic_path  # noqa: E402

DPI = 110
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "v", "D", "x", "+", "*", "P", "h"]


def _load(analysis_dir: str | Path) -> dict:
    d = Path(analysis_dir)
    panels, meta = uni.load_panels(d / uni.PANELS_FILE)
    return {"curves": pd.read_csv(d / uni.CURVES_FILE), "per_curve": pd.read_csv(d / uni.OVERLAP_CURVES_FILE),
            "fits": pd.read_csv(d / uni.FITS_FILE), "panels": panels, "meta": meta}


def _save(fig, out_path: str | Path) -> None:
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)


def _suptitle(figure: str, meta: dict) -> str:
    roles = meta["roles"]
    lo, hi = meta["informative_range"]
    return (uni.FIGURE_TITLES[figure].format(**{k: v for k, v in roles.items() if isinstance(v, str)})
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
        return f"trained {uni.LOSS_LABEL.get(value, value)}"
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


AXIS_NOTE = "axes end at 1.5× the loss at initialisation"


# --------------------------------------------------------------------------------- curve figures (1, 2, 5-8)


def _curve_figure(analysis_dir: str | Path, figure: str, out_path: str | Path) -> None:
    data = _load(analysis_dir)
    panels = [p for p in data["panels"] if p.figure == figure]
    if not panels:
        raise ValueError(f"universality {figure}: no panels in {analysis_dir}/{uni.PANELS_FILE}")
    ncols = 2
    nrows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.8 * nrows + 0.8), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        frame = uni.panel_curves(data["curves"], panel, data["meta"]["width_recipe"])
        x, y = panel.pairs[0]
        D = _curve_D(data["per_curve"], panel, x, y)
        colors = _colors(frame[panel.color_by].dropna())
        groups = sorted(frame.groupby(uni.CURVE_KEYS), key=lambda kg: _sort_key(kg[1][panel.color_by].iloc[0]))
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
        ax.set_xlabel(f"{split} {uni.metric_label(x)} (training loss)")
        ax.set_ylabel(f"{split} {uni.metric_label(y)}")
        ax.set_title(f"({panel.letter}) {panel.title}", fontsize=10)
        ax.set_xlim(0, _axis_limit(frame, x))
        ax.set_ylim(0, _axis_limit(frame, y))
        ax.legend(fontsize=6.5, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(_suptitle(figure, data["meta"]), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(fig, out_path)


# ------------------------------------------------------------------------------- pair figures (3, 4, 9-16)


def _pairs_figure(analysis_dir: str | Path, figure: str, out_path: str | Path) -> None:
    data = _load(analysis_dir)
    panels = [p for p in data["panels"] if p.figure == figure]
    if not panels:
        raise ValueError(f"universality {figure}: no panels in {analysis_dir}/{uni.PANELS_FILE}")
    metrics = list(dict.fromkeys([m for pair in panels[0].pairs for m in pair]))
    n = len(metrics) - 1
    ncols = 2
    nrows = (len(panels) + 1) // 2
    fig = plt.figure(figsize=(3.1 * n * ncols, 3.0 * n * nrows + 1.4))
    header, body = fig.subfigures(2, 1, height_ratios=[1.4, 3.0 * n * nrows])
    subfigs = np.atleast_1d(body.subfigures(nrows, ncols, wspace=0.04, hspace=0.04)).ravel()
    handles = {}
    for sub, panel in zip(subfigs, panels, strict=False):
        frame = uni.panel_curves(data["curves"], panel, data["meta"]["width_recipe"])
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
                for _keys, g in frame.groupby(uni.CURVE_KEYS):
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
                    ax.set_xlabel(uni.metric_label(x), fontsize=7)
                if col == 0:
                    ax.set_ylabel(uni.metric_label(y), fontsize=7)
                ax.grid(alpha=0.3)
        sub.suptitle(f"({panel.letter}) {panel.title}", fontsize=10)
    for sub in subfigs[len(panels):]:
        sub.set_visible(False)
    header.legend(list(handles.values()), list(handles.keys()), loc="center right", fontsize=7,
                  ncols=max(1, min(4, len(handles) // 4 + 1)))
    header.text(0.01, 0.5, _suptitle(figure, data["meta"]) + "\nblack dashed = the isotonic fit D is measured "
                "against (on the reference group where the figure compares groups)", fontsize=10, va="center")
    _save(fig, out_path)


# ------------------------------------------------------------------------------------------------ Table 1


def table01_datasets(analysis_dir: str | Path, out_path: str | Path) -> None:
    """Table 1 (datasets used), rendered from the dataset files this study trained on."""
    table = pd.read_csv(Path(analysis_dir) / uni.DATASETS_FILE).fillna("")
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
    _save(fig, out_path)


# ----------------------------------------------------------------------------------- one function a figure


def fig01_train_loss_vs_error(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig01", out_path)


def fig02_test_loss_vs_error(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig02", out_path)


def fig03_pairs_across_optimizers(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig03", out_path)


def fig04_pairs_across_losses(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig04", out_path)


def fig05_deep_vs_shallow(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig05", out_path)


def fig06_train_loss_vs_error_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig06", out_path)


def fig07_widths(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig07", out_path)


def fig08_test_loss_vs_error_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _curve_figure(analysis_dir, "fig08", out_path)


def fig09_all_pairs(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig09", out_path)


def fig10_all_pairs_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig10", out_path)


def fig11_all_pairs_seeds(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig11", out_path)


def fig12_all_pairs_seeds_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig12", out_path)


def fig13_pairs_across_optimizers_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig13", out_path)


def fig14_pairs_across_losses_imagenet20(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig14", out_path)


def fig15_pairs_across_random_pixels(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig15", out_path)


def fig16_pairs_across_random_labels(analysis_dir: str | Path, out_path: str | Path) -> None:
    _pairs_figure(analysis_dir, "fig16", out_path)


def draw(function: str, analysis_dir: str | Path, out_path: str | Path) -> None:
    """Draw the figure made by ``function`` (one of this module's table01_/figNN_ functions); what the rule's
    entry script calls (rules/universality.smk maps each figure file to its function)."""
    fn = globals().get(function)
    if fn is None or not function.startswith(("fig", "table")):
        raise ValueError(f"universality: no figure function '{function}' in {__name__}")
    fn(analysis_dir, out_path)
