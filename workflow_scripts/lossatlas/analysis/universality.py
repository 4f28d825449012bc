"""Universality patterns (papers/universality_patterns.txt): the learning-rate rule, the loss curves of every
run, and an overlap measure for the paper's "the curves overlap" claims.

Paper, §3: for any two losses l_1, l_2 evaluated along a training run, L(θ_t; l_2) ≈ f(L(θ_t; l_1)) with f
monotone, and f is the same for every architecture, optimiser and training loss. The paper shows this by eye
(Figs 1-16) and gives no number, so the pipeline defines one (FIGURES.md §1.4):

* per panel, pool the checkpoints (x_t, y_t) of the curves, fit one isotonic (non-decreasing) curve f̂ of y on
  x, and report per curve D_a = mean_t |y_t - f̂(x_t)| over the *informative range* (checkpoints where f̂(x_t)
  lies in [lo, hi] as fractions of f̂'s own range; default 0.05-0.8, so the many converged points near zero
  error do not dominate) -- comparison "pooled";
* to compare groups (datasets, optimisers, training losses, seeds, FC1 vs deep nets), fit f̂ on the reference
  group only and report D for the curves of every group, using only their points inside the reference's x-range
  (no extrapolation) -- comparison "between". A curve that is the reference curve shifted by δ gets D = δ.

Everything here reads metrics.h5 summaries (contract: lossatlas/evaluation.py) and writes plain tables under
results/analysis/universality/ (``analyse``; the rule names the files): the figure functions
(lossatlas/figures/universality.py) read only those, the panels' curves included (``panel_curves.csv``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from lossatlas.io import atomic_path, write_json

log = logging.getLogger(__name__)

# Training loss name (recipe `losses:`) -> the metric of metrics.h5 that measures it.
TRAINING_LOSS_METRIC = {"ce": "ce", "mse_softmax": "mse"}


# --------------------------------------------------------------------------------------------- curves


def load_curves(metrics_paths: list[str], runs: list[dict], shallow: list[str],
                widths: dict[str, int | None]) -> pd.DataFrame:
    """One row per (run, member seed, split, valid checkpoint) with every summary metric of metrics.h5.

    ``runs[i]`` (recipe, dataset, arch, optimizer, loss) describes ``metrics_paths[i]``.
    """
    import h5py

    frames = []
    for path, run in zip(metrics_paths, runs, strict=True):
        with h5py.File(path, "r") as h5:
            members = np.asarray(h5["members"][()])
            epoch = np.asarray(h5["checkpoints/epoch"][()], dtype=float)
            valid = np.asarray(h5["checkpoints/valid"][()], dtype=bool)
            for split in ("train", "test"):
                if f"{split}/summary" not in h5:
                    continue
                summary = {name: np.asarray(ds[()], dtype=float) for name, ds in h5[f"{split}/summary"].items()}
                for m, seed in enumerate(members):
                    row = {name: values[m] for name, values in summary.items()}
                    keep = valid[m] & np.all([np.isfinite(v) for v in row.values()], axis=0)
                    frame = pd.DataFrame({k: v[keep] for k, v in row.items()})
                    frame.insert(0, "epoch", epoch[keep])
                    frame.insert(0, "checkpoint", np.flatnonzero(keep))
                    for key, value in (("split", split), ("seed", int(seed)), ("width", widths.get(run["arch"])),
                                       ("arch_kind", "shallow" if run["arch"] in shallow else "deep"),
                                       ("loss", run["loss"]), ("optimizer", run["optimizer"]),
                                       ("arch", run["arch"]), ("dataset", run["dataset"]),
                                       ("recipe", run["recipe"])):
                        frame.insert(0, key, value)
                    frames.append(frame)
    if not frames:
        raise ValueError("universality: no curves (no metrics files, or every checkpoint invalid)")
    return pd.concat(frames, ignore_index=True)


CURVE_KEYS = ["recipe", "dataset", "arch", "optimizer", "loss", "seed", "split"]


# ----------------------------------------------------------------------------------------- overlap measure


def isotonic_fit(x: np.ndarray, y: np.ndarray):
    """Non-decreasing least-squares fit of y on x (every pair of the paper's losses moves together)."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(increasing=True, out_of_bounds="clip")
    model.fit(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return model


def curve_residual(model, x: np.ndarray, y: np.ndarray, informative: tuple[float, float]) -> tuple[float, int]:
    """D = mean |y - f̂(x)| over the curve's points inside the fit's x-range whose f̂(x) lies in the
    informative band (fractions ``informative`` of f̂'s range). Returns (D, number of points used)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    lo_x, hi_x = model.X_min_, model.X_max_
    fitted_range = (float(np.min(model.y_thresholds_)), float(np.max(model.y_thresholds_)))
    span = fitted_range[1] - fitted_range[0]
    band = (fitted_range[0] + informative[0] * span, fitted_range[0] + informative[1] * span)
    fx = model.predict(np.clip(x, lo_x, hi_x))
    use = (x >= lo_x) & (x <= hi_x) & (fx >= band[0]) & (fx <= band[1])
    if not use.any():
        return math.nan, 0
    return float(np.mean(np.abs(y[use] - fx[use]))), int(use.sum())


def truncate_at_minimum(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The monotone part of a test curve: checkpoints up to the one where ``metric`` is smallest (Fig 8:
    "if the over-fitting stage (non-monotonic part of the curves) is ignored")."""
    frame = frame.sort_values("checkpoint")
    stop = int(np.argmin(frame[metric].to_numpy()))
    return frame.iloc[: stop + 1]


# ------------------------------------------------------------------------------------------------ panels


@dataclass(frozen=True)
class Panel:
    """One panel of a paper figure: which curves, which loss pairs, how they are compared (its title is drawing:
    lossatlas/figures/universality.py)."""

    figure: str
    letter: str
    split: str
    datasets: tuple[str, ...]
    optimizers: tuple[str, ...]
    losses: tuple[str, ...]
    archs: str  # "deep" | "deep_and_shallow" | "widths"
    pairs: tuple[tuple[str, str], ...]
    color_by: str
    compare_by: str | None = None  # a curve column; None = pooled fit only
    reference: str | int | None = None  # the value of compare_by the between-fit is made on
    seeds: str = "first"  # "first" (one initialisation) | "all"
    truncate: bool = False  # also measure the monotone part (test curves)
    style_by: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.figure}{self.letter}"


def figure_panels(roles: dict, pair_metrics: list[str]) -> list[Panel]:
    """Every panel of Figs 1-16 as the paper's captions describe them (FIGURES.md §1.1).

    Choices where the paper is silent: x = the training loss, y = 0/1 error in Figs 1, 2, 5-8; "all pairs" =
    every pair of ``pair_metrics`` (x earlier in the list); FC1 appears only in Fig 5; one initialisation
    (the first seed) except in Figs 11-12.
    """
    sgd, sgdm = roles["sgd"], roles["sgdm"]
    all_pairs = tuple(itertools.combinations(pair_metrics, 2))
    four = [("a", "mse_softmax", sgd), ("b", "ce", sgd), ("c", "mse_softmax", sgdm), ("d", "ce", sgdm)]
    four_15 = [("a", "mse_softmax", sgd), ("b", "mse_softmax", sgdm), ("c", "ce", sgd), ("d", "ce", sgdm)]

    def curve_pair(loss: str) -> tuple[tuple[str, str], ...]:
        return ((TRAINING_LOSS_METRIC[loss], "err01"),)

    panels: list[Panel] = []
    for fig, ds, split, archs, truncate in (("fig01", "cifar10", "train", "deep", False),
                                            ("fig02", "cifar10", "test", "deep", True),
                                            ("fig05", "cifar10", "train", "deep_and_shallow", False),
                                            ("fig06", "imagenet20", "train", "deep", False),
                                            ("fig08", "imagenet20", "test", "deep", True)):
        for letter, loss, opt in four:
            shallow = archs == "deep_and_shallow"
            panels.append(Panel(fig, letter, split, (roles[ds],), (opt,), (loss,), archs,
                                curve_pair(loss), color_by="arch",
                                compare_by="arch_kind" if shallow else None,
                                reference="deep" if shallow else None, truncate=truncate))
    for letter, loss in (("a", "mse_softmax"), ("b", "ce")):
        panels.append(Panel("fig07", letter, "train",
                            (roles["cifar10"],), (sgd,), (loss,), "widths", curve_pair(loss), color_by="width"))
    for fig, ds in (("fig03", "cifar10"), ("fig13", "imagenet20")):
        for letter, loss in (("a", "mse_softmax"), ("b", "ce")):
            panels.append(Panel(fig, letter, "train", (roles[ds],),
                                (sgd, sgdm), (loss,), "deep", all_pairs, color_by="optimizer",
                                compare_by="optimizer", reference=sgd, style_by="arch"))
    for fig, ds in (("fig04", "cifar10"), ("fig14", "imagenet20")):
        for letter, opt in (("a", sgd), ("b", sgdm)):
            panels.append(Panel(fig, letter, "train", (roles[ds],), (opt,),
                                ("mse_softmax", "ce"), "deep", all_pairs, color_by="loss", compare_by="loss",
                                reference="ce", style_by="arch"))
    for fig, ds, seeds in (("fig09", "cifar10", "first"), ("fig10", "imagenet20", "first"),
                           ("fig11", "cifar10", "all"), ("fig12", "imagenet20", "all")):
        for letter, loss, opt in four:
            by_seed = seeds == "all"
            panels.append(Panel(fig, letter, "train", (roles[ds],), (opt,), (loss,), "deep",
                                all_pairs, color_by="arch", compare_by="seed" if by_seed else None,
                                reference=None, seeds=seeds, style_by="seed" if by_seed else None))
    for fig, other in (("fig15", "random_pixels"), ("fig16", "random_labels")):
        for letter, loss, opt in four_15:
            panels.append(Panel(fig, letter, "train", (roles["cifar10"], roles[other]), (opt,),
                                (loss,), "deep", all_pairs, color_by="dataset", compare_by="dataset",
                                reference=roles["cifar10"], style_by="arch"))
    return sorted(panels, key=lambda p: (p.figure, p.letter))


def primary_pair(panel: Panel) -> tuple[str, str]:
    """The pair the headline numbers use: (training loss of the panel, or CE when it mixes losses; 0/1 error)."""
    x = TRAINING_LOSS_METRIC[panel.losses[0]] if len(panel.losses) == 1 else "ce"
    return (x, "err01")


def panel_curves(curves: pd.DataFrame, panel: Panel, width_recipe: str) -> pd.DataFrame:
    """The checkpoints a panel draws (rows of the curves table)."""
    sel = (curves["split"] == panel.split) & curves["dataset"].isin(panel.datasets)
    sel &= curves["optimizer"].isin(panel.optimizers) & curves["loss"].isin(panel.losses)
    if panel.archs == "widths":
        sel &= curves["recipe"] == width_recipe
    else:
        sel &= curves["recipe"] != width_recipe
        if panel.archs == "deep":
            sel &= curves["arch_kind"] == "deep"
    out = curves[sel]
    if panel.seeds == "first" and len(out):
        out = out[out["seed"] == out["seed"].min()]
    return out


def _curve_groups(frame: pd.DataFrame):
    return frame.groupby(CURVE_KEYS, sort=True)


def _fit_grid(model, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    xs = np.linspace(model.X_min_, model.X_max_, n)
    return xs, model.predict(xs)


def measure_panel(frame: pd.DataFrame, panel: Panel, informative: tuple[float, float]):
    """Overlap rows (one per curve, pair, comparison, variant) and fitted curves of one panel."""
    rows, fits = [], []
    variants = [("full", frame)]
    if panel.truncate:
        x_metric = panel.pairs[0][0]
        mono = pd.concat([truncate_at_minimum(g, x_metric) for _, g in _curve_groups(frame)], ignore_index=True)
        variants.append(("monotone", mono))
    for variant, data in variants:
        curves = list(_curve_groups(data))
        for x, y in panel.pairs:
            comparisons = [("pooled", None, data)]
            reference = panel.reference
            if panel.compare_by == "seed" and reference is None:
                reference = int(data["seed"].min())  # the seed comparison is made against the first seed
            if panel.compare_by is not None and reference is not None:
                ref = data[data[panel.compare_by] == reference]
                if len(ref):
                    comparisons.append(("between", reference, ref))
            for comparison, fit_on, fit_data in comparisons:
                if len(fit_data) < 2:
                    continue
                model = isotonic_fit(fit_data[x], fit_data[y])
                span = float(np.ptp(model.y_thresholds_)) or math.nan  # to compare D across pairs of losses
                xs, ys = _fit_grid(model)
                fits.append({"figure": panel.figure, "panel": panel.letter, "variant": variant, "x": x, "y": y,
                             "comparison": comparison, "fit_on": str(fit_on), "grid_x": json.dumps(xs.tolist()),
                             "grid_y": json.dumps(ys.tolist())})
                for keys, g in curves:
                    D, n = curve_residual(model, g[x].to_numpy(), g[y].to_numpy(), informative)
                    row = dict(zip(CURVE_KEYS, keys, strict=True))
                    row.update(arch_kind=g["arch_kind"].iloc[0], width=g["width"].iloc[0])
                    group = row.get(panel.compare_by) if panel.compare_by else None
                    rows.append({"figure": panel.figure, "panel": panel.letter, "variant": variant, "x": x,
                                 "y": y, "comparison": comparison, "fit_on": str(fit_on),
                                 "group": str(group) if group is not None else "",
                                 "is_reference": comparison == "between" and group == fit_on,
                                 **row, "D": D, "D_rel": D / span, "n_points": n})
    return rows, fits


def summarise_overlap(per_curve: pd.DataFrame) -> pd.DataFrame:
    """Per (figure, panel, variant, pair, comparison, group): mean / max D over curves, the curve count, and
    the mean of D_rel = D / (range of the fitted curve), which compares pairs of losses on different scales."""
    keys = ["figure", "panel", "variant", "x", "y", "comparison", "fit_on", "group", "is_reference"]
    grouped = per_curve.groupby(keys, dropna=False)
    out = grouped["D"].agg(D_mean="mean", D_max="max", n_curves="count")
    out["D_rel_mean"] = grouped["D_rel"].mean()
    return out.reset_index()


def headline(per_curve: pd.DataFrame, panels: list[Panel]) -> dict:
    """The numbers the report quotes (issue 4): within-architecture residuals, FC1, across datasets,
    train vs test, across optimisers / losses / seeds, per width. Each on the panel's primary pair."""
    by_key = {p.key: p for p in panels}

    def select(figure: str, comparison: str, variant: str = "full"):
        parts = []
        for letter in "abcd":
            panel = by_key.get(f"{figure}{letter}")
            if panel is None:
                continue
            x, y = primary_pair(panel)
            sel = per_curve[(per_curve["figure"] == figure) & (per_curve["panel"] == letter)
                            & (per_curve["variant"] == variant) & (per_curve["x"] == x) & (per_curve["y"] == y)
                            & (per_curve["comparison"] == comparison)]
            parts.append(sel)
        return pd.concat(parts) if parts else per_curve.iloc[:0]

    def stats(frame: pd.DataFrame) -> dict:
        d = frame["D"].dropna()
        return {"mean": float(d.mean()) if len(d) else None, "max": float(d.max()) if len(d) else None,
                "n_curves": int(len(d))}

    def per_panel(frame: pd.DataFrame, group_col: str | None = None) -> dict:
        out = {}
        for letter, g in frame.groupby("panel"):
            if group_col is None:
                out[letter] = stats(g)
            else:
                out[letter] = {str(k): stats(gg) for k, gg in g.groupby(group_col)}
        return out

    def between(figure: str, variant: str = "full") -> dict:
        frame = select(figure, "between", variant)
        return {"reference": stats(frame[frame["is_reference"]]),
                "others": stats(frame[~frame["is_reference"]]),
                "per_panel": per_panel(frame, "group")}

    result = {
        "what": "D = mean |y - isotonic fit| over the informative range, primary pair (training loss, 0/1 error)",
        "within_architectures_train": {"cifar10 (fig01)": {**stats(select("fig01", "pooled")),
                                                           "per_arch": per_panel(select("fig01", "pooled"), "arch")},
                                       "imagenet20 (fig06)": stats(select("fig06", "pooled"))},
        "train_vs_test": {"cifar10 train (fig01)": stats(select("fig01", "pooled")),
                          "cifar10 test (fig02)": stats(select("fig02", "pooled")),
                          "cifar10 test, monotone part (fig02)": stats(select("fig02", "pooled", "monotone")),
                          "imagenet20 train (fig06)": stats(select("fig06", "pooled")),
                          "imagenet20 test (fig08)": stats(select("fig08", "pooled")),
                          "imagenet20 test, monotone part (fig08)": stats(select("fig08", "pooled", "monotone"))},
        "fc1_vs_deep (fig05, fit on deep nets)": between("fig05"),
        "across_datasets": {"random pixels (fig15, fit on cifar10 role)": between("fig15"),
                            "random labels (fig16, fit on cifar10 role)": between("fig16")},
        "across_optimizers (fit on SGD)": {"fig03": between("fig03"), "fig13": between("fig13")},
        "across_training_losses (fit on CE-trained)": {"fig04": between("fig04"), "fig14": between("fig14")},
        "across_seeds (fit on first seed)": {"fig11": between("fig11"), "fig12": between("fig12")},
        "widths (fig07, pooled)": per_panel(select("fig07", "pooled"), "width"),
        "all_pairs_pooled (fig09)": _pairs_table(per_curve, "fig09"),
    }
    return result


def _pairs_table(per_curve: pd.DataFrame, figure: str) -> dict:
    sel = per_curve[(per_curve["figure"] == figure) & (per_curve["comparison"] == "pooled")]
    return {f"{x} vs {y}": {"D": float(g["D"].mean()), "D_rel": float(g["D_rel"].mean())}
            for (x, y), g in sel.groupby(["x", "y"])}


# ------------------------------------------------------------------------------------------ monotonicity


def goodman_kruskal_gamma(x: np.ndarray, y: np.ndarray) -> float:
    """γ = (C - D) / (C + D) over pairs of points, C / D = concordant / discordant pairs; pairs tied in x or y
    are left out, so γ = 1 exactly when y is a non-decreasing function of x (plateaus allowed). NaN if no pair
    is untied."""
    dx = np.sign(np.subtract.outer(x, x))
    dy = np.sign(np.subtract.outer(y, y))
    prod = np.triu(dx * dy, k=1)
    concordant, discordant = int((prod > 0).sum()), int((prod < 0).sum())
    if concordant + discordant == 0:
        return math.nan
    return (concordant - discordant) / (concordant + discordant)


def monotonicity(curves: pd.DataFrame, split: str = "train") -> dict:
    """§3 "f is monotonic": per curve (run, seed) on ``split``, a rank correlation between x = the run's
    training loss (``TRAINING_LOSS_METRIC``) and y = the 0/1 error over its valid checkpoints; min / median
    over curves. The paper gives no number.

    * Spearman ρ (ties averaged): 1 only for a strictly monotone curve; the many checkpoints at 0/1 error 0
      once a net fits its training set are ties, which lower ρ although f stays monotone.
    * Goodman-Kruskal γ (``goodman_kruskal_gamma``): ignores ties, so γ = 1 iff no pair of checkpoints has
      the error moving against the loss -- the direct test of "f is (non-strictly) monotone".

    Curves with fewer than 3 checkpoints or a constant x or y are skipped and counted in ``n_undefined``.
    """
    from scipy.stats import spearmanr

    rhos, gammas, n_undefined = [], [], 0
    frame = curves[curves["split"] == split]
    for _, g in frame.groupby(CURVE_KEYS, sort=True):
        x = g[TRAINING_LOSS_METRIC[g["loss"].iloc[0]]].to_numpy(dtype=float)
        y = g["err01"].to_numpy(dtype=float)
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            n_undefined += 1
            continue
        rhos.append(float(spearmanr(x, y).statistic))
        gammas.append(goodman_kruskal_gamma(x, y))
    return {"what": f"per-curve rank correlation of (training loss, 0/1 error) on {split} curves "
                    "(paper §3: f monotonic); gamma ignores ties (plateaus at 0 error)",
            "spearman_min": min(rhos) if rhos else None,
            "spearman_median": float(np.median(rhos)) if rhos else None,
            "gamma_min": min(gammas) if gammas else None,
            "gamma_median": float(np.median(gammas)) if gammas else None,
            "n_curves": len(rhos), "n_undefined": n_undefined}


# ----------------------------------------------------------------------------------------- datasets table


def dataset_table(dataset_paths: dict[str, str], roles: dict) -> pd.DataFrame:
    """Table 1: name, train / test examples, classes and input shape, read from each dataset file."""
    import h5py

    role_of = {roles[r]: label for r, label in (("cifar10", "CIFAR-10"), ("random_labels", "CIFAR-10 RANDOM"),
                                                ("random_pixels", "RANDOM"), ("imagenet20", "IMAGENET-20"))}
    rows = []
    for name, path in dataset_paths.items():
        with h5py.File(path, "r") as h5:
            shape = h5["train/x"].shape
            rows.append({"paper_role": role_of.get(name, ""), "dataset": name,
                         "train_examples": int(shape[0]), "test_examples": int(h5["test/x"].shape[0]),
                         "classes": int(h5.attrs["num_classes"]),
                         "dimension": "×".join(str(s) for s in shape[1:]),
                         "derivation": str(h5.attrs.get("derivation", ""))})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- the analysis


def analyse(metrics_paths: list[str], runs: list[dict], dataset_paths: dict[str, str], roles: dict,
            pair_metrics: list[str], informative_range: list[float], widths: dict[str, int | None],
            out: dict[str, str]) -> dict:
    """The whole universality analysis in one job: curves, overlap tables, fits, panels and the curves each
    draws, headline, Table 1. ``out`` maps curves, overlap_curves, overlap, fits, panels, panel_curves, headline,
    datasets to their files."""
    informative = (float(informative_range[0]), float(informative_range[1]))
    if not informative[0] < informative[1]:
        raise ValueError(f"studies.universality.informative_range must be increasing, got {informative_range}")
    curves = load_curves(metrics_paths, runs, list(roles.get("shallow", [])), widths)
    missing = [m for m in pair_metrics if m not in curves.columns]
    if missing:
        raise ValueError(f"studies.universality.pair_metrics: {missing} not in metrics.h5 summaries "
                         f"(have {sorted(set(curves.columns) - set(CURVE_KEYS))}); add the p to eval.lp")
    panels = figure_panels(roles, list(pair_metrics))
    rows, fits, members = [], [], []
    for panel in panels:
        frame = panel_curves(curves, panel, roles["width_recipe"])
        members.append(pd.DataFrame({"figure": panel.figure, "letter": panel.letter, "row": frame.index}))
        if frame.empty:
            log.warning("universality: panel %s has no curves", panel.key)
            continue
        r, f = measure_panel(frame, panel, informative)
        rows += r
        fits += f
    per_curve = pd.DataFrame(rows)
    summary = summarise_overlap(per_curve)
    for name, table in (("curves", curves), ("overlap_curves", per_curve), ("overlap", summary),
                        ("fits", pd.DataFrame(fits)), ("panel_curves", pd.concat(members, ignore_index=True)),
                        ("datasets", dataset_table(dataset_paths, roles))):
        with atomic_path(out[name]) as tmp:
            table.to_csv(tmp, index=False)
    write_json(out["panels"], {"roles": roles, "width_recipe": roles["width_recipe"],
                               "informative_range": list(informative), "curve_keys": CURVE_KEYS,
                               "panels": [asdict(p) for p in panels]})
    result = headline(per_curve, panels)
    result["monotonicity"] = monotonicity(curves)
    write_json(out["headline"], result)
    return result
