"""The analysis step of Skorokhodov & Burtsev, *Loss Patterns of Neural Networks* (papers/loss_patterns_mpo.txt):
from the finished pattern searches and BN runs (the experiments, lossatlas/analysis/loss_patterns_mpo.py) to
every table the claims read and every array the figures draw.

``loss_patterns_analysis`` writes ``fig04_bn_accuracy.json``/``.csv`` (Fig 4's numbers), ``searches_by_figure.json``
(the search summaries keyed by figure, so claims name figures, not config-specific search names) and one
``figure_data/<figure>.h5`` per figure file (lossatlas.io.write_figure_data), made by the function of that
figure's name here. No torch: this job stays cheap, and editing it reruns no search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lossatlas.figure_data import write_figure_data
from lossatlas.io import atomic_path, write_json
from lossatlas.loss_patterns_specs import bn_gamma_words

VARIANTS = ("without_bn", "with_bn")
# What each searches_by_figure.json entry keeps from a search summary (loss_patterns_mpo.run_search).
KEPT = ("search", "picture", "dataset", "architecture", "grid", "final_scale", "train_test_log_ce_pearson",
        "train", "test")


def read_search(path: str | Path) -> dict:
    """A search file as plain arrays: picture, mask, train/test ce and acc maps, spec and summary."""
    import h5py

    with h5py.File(path, "r") as f:
        out = {"spec": json.loads(f.attrs["spec"]), "summary": json.loads(f.attrs["summary"]),
               "picture": f["picture"][()], "mask": f["mask"][()]}
        for split in ("train", "test"):
            out[split] = {k: f[f"{split}/{k}"][()] for k in ("ce", "acc")}
    return out


def bn_run_at(path: str | Path, fill_probability: float) -> dict:
    """One BN run's fit at ``fill_probability``: spec, mask, test ce and acc maps, black / white accuracy."""
    import h5py

    with h5py.File(path, "r") as f:
        fills = f["fill_probabilities"][()]
        i = int(np.argmin(np.abs(fills - fill_probability)))
        if abs(fills[i] - fill_probability) > 1e-9:
            raise ValueError(f"{path}: no run at fill probability {fill_probability} (has {fills.tolist()})")
        return {"spec": json.loads(f.attrs["spec"]), "mask": f["masks"][i], "ce": f["test_ce"][i],
                "acc": f["test_acc"][i], "acc_black": float(f["acc_black"][i]),
                "acc_white": float(f["acc_white"][i])}


# ------------------------------------------------------------------------------------------------- tables


def bn_runs_by_protocol(protocols: list[str], seeds: int, runs: dict[str, list[str]]) -> dict[str, dict]:
    """Split each variant's run files (protocol by protocol, ``seeds`` each, as the rule lists them) into
    protocol -> variant -> its runs in seed order."""
    for variant, paths in runs.items():
        if len(paths) != len(protocols) * seeds:
            raise ValueError(f"{variant}: {len(paths)} run files for {len(protocols)} protocols × {seeds} seeds")
    return {protocol: {variant: paths[i * seeds : (i + 1) * seeds] for variant, paths in runs.items()}
            for i, protocol in enumerate(protocols)}


def _bn_variant(paths: list[str], fill) -> tuple[dict, np.ndarray]:
    """Fig 4's numbers of one model under one protocol: per p, mean ± std over the KEPT runs (a run the run
    selection dropped, ``dropped_at`` ≥ 0, counts in ``dropped`` and nowhere else)."""
    import h5py

    black, white, dropped = [], [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            p = f["fill_probabilities"][()]
            if fill is not None and not np.allclose(p, fill):
                raise ValueError(f"{path}: fill probabilities {p} differ from the other runs' {fill}")
            fill = p
            black.append(f["acc_black"][()])
            white.append(f["acc_white"][()])
            dropped.append(f["dropped_at"][()] >= 0 if "dropped_at" in f else np.zeros(len(p), dtype=bool))
    black, white, dropped = np.asarray(black, float), np.asarray(white, float), np.asarray(dropped, bool)
    black[dropped], white[dropped] = np.nan, np.nan  # (runs, P)
    delta = black - white

    def mean(a: np.ndarray) -> np.ndarray:
        n = np.sum(np.isfinite(a), axis=0)
        return np.where(n > 0, np.nansum(a, axis=0) / np.maximum(n, 1), np.nan)

    def std(a: np.ndarray) -> np.ndarray:
        n = np.sum(np.isfinite(a), axis=0)
        dev = np.nansum((a - mean(a)) ** 2, axis=0)
        return np.where(n > 1, np.sqrt(dev / np.maximum(n - 1, 1)), np.nan)

    out = {"runs": len(paths), "kept": (~dropped).sum(axis=0).tolist(), "dropped": dropped.sum(axis=0).tolist(),
           "acc_black_mean": mean(black).tolist(), "acc_black_std": std(black).tolist(),
           "acc_white_mean": mean(white).tolist(), "acc_white_std": std(white).tolist(),
           "delta_mean": mean(delta).tolist(), "delta_std": std(delta).tolist()}
    return out, fill


def summarize_bn_protocol(without_bn: list[str], with_bn: list[str]) -> dict:
    """The numbers behind Fig 4 under one protocol: per model and fill probability p, mean ± std over the kept
    runs of the test accuracy on black cells, on white cells, and of Δ = acc_black − acc_white (FIGURES.md
    §4.3; which cells enter the means is the runs' ``delta_cells``).

    std is the sample standard deviation (ddof = 1) across kept runs (NaN below two); the paper's error bars are
    "standard deviations across 5 runs" without saying which. A p whose masks lack a colour, or whose runs were
    all dropped, gives NaN for it. ``delta_with_minus_without``: Δ_BN − Δ_noBN per p;
    ``mean_delta_with_minus_without``: its mean over the p where both are defined (``p_compared`` of them);
    ``dropped_runs`` / ``fits``: planes the run selection dropped / planes fitted, both models together.
    """
    import h5py

    summary: dict[str, Any] = {}
    fill = None
    for variant, paths in (("without_bn", without_bn), ("with_bn", with_bn)):
        summary[variant], fill = _bn_variant(paths, fill)
        with h5py.File(paths[0], "r") as f:
            spec = json.loads(f.attrs["spec"])
        summary[variant]["architecture"] = spec["architecture"]["name"]
        summary[variant]["delta_cells"] = spec.get("delta_cells", "all")
        summary[variant]["mask_frame"] = bool(spec.get("mask_frame", False))
    summary["bn_gamma"] = bn_gamma_words(spec["architecture"])
    summary["fill_probabilities"] = [float(v) for v in fill]
    d_no, d_bn = np.asarray(summary["without_bn"]["delta_mean"]), np.asarray(summary["with_bn"]["delta_mean"])
    diff = d_bn - d_no
    both = np.isfinite(diff)
    summary["delta_with_minus_without"] = diff.tolist()
    summary["mean_delta_with_minus_without"] = float(diff[both].mean()) if both.any() else float("nan")
    summary["p_compared"] = int(both.sum())
    summary["bn_delta_smaller_fraction"] = float(np.mean(diff[both] < 0)) if both.any() else float("nan")
    summary["dropped_runs"] = int(sum(summary[v]["dropped"][i] for v in VARIANTS for i in range(len(fill))))
    summary["fits"] = int(sum(summary[v]["runs"] for v in VARIANTS) * len(fill))
    return summary


def summarize_bn_experiment(runs: dict[str, dict[str, list[str]]], out_json: str, out_csv: str) -> dict:
    """Fig 4's numbers under every protocol (``runs``: protocol -> variant -> run files in seed order; see
    ``summarize_bn_protocol``): the json maps protocol -> its summary; the csv has one row per (protocol, p,
    model)."""
    summary = {protocol: summarize_bn_protocol(r["without_bn"], r["with_bn"]) for protocol, r in runs.items()}
    rows = ["protocol,fill_probability,model,runs,kept,acc_black_mean,acc_black_std,acc_white_mean,acc_white_std,"
            "delta_mean,delta_std"]
    for protocol, s in summary.items():
        for i, p in enumerate(s["fill_probabilities"]):
            for variant in VARIANTS:
                v = s[variant]
                rows.append(",".join([protocol, f"{p:g}", variant, str(v["runs"]), str(v["kept"][i])] + [
                    f"{v[k][i]:.6g}" for k in ("acc_black_mean", "acc_black_std", "acc_white_mean",
                                              "acc_white_std", "delta_mean", "delta_std")]))
    with atomic_path(out_csv) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    write_json(out_json, summary)
    return summary


def _entry(summary: dict) -> dict[str, Any]:
    missing = [k for k in ("test", "train_test_log_ce_pearson", "final_scale") if k not in summary]
    if missing:
        raise ValueError(f"search summary of '{summary.get('search')}' lacks {missing}")
    return {k: summary[k] for k in KEPT if k in summary}


def searches_by_figure(figures: dict[str, str | list[str]], summaries: dict[str, dict],
                       out_json: str | Path) -> dict:
    """``figures``: figure key -> search name or list of names (the study's ``figures:``); ``summaries``:
    search name -> its summary. One search: the figure's entry is that search's numbers. Several: the entry has
    ``searches`` (in config order) and the smallest test accuracy gap and train/test log-CE Pearson r over them
    (``test_acc_gap_min``, ``train_test_log_ce_pearson_min``: "any pattern" / "every search")."""
    out: dict[str, Any] = {}
    for figure, names in sorted(figures.items()):
        for name in [names] if isinstance(names, str) else names:
            if name not in summaries:
                raise ValueError(f"studies.loss_patterns.figures names search '{name}' with no summary file")
        if isinstance(names, str):
            out[figure] = _entry(summaries[names])
            continue
        entries = [_entry(summaries[n]) for n in names]
        out[figure] = {"searches": entries,
                       "test_acc_gap_min": min(e["test"]["acc_gap"] for e in entries),
                       "train_test_log_ce_pearson_min": min(e["train_test_log_ce_pearson"] for e in entries)}
    write_json(out_json, out)
    return out


# ------------------------------------------------------------------------------------ what each figure draws


def _searches(searches: list[dict]) -> dict:
    """Searches in figure order, as groups '0', '1', …"""
    return {"searches": {str(i): s for i, s in enumerate(searches)}}


def fig01a_test_loss_surface(study: dict) -> dict:
    return _searches([study["searches"]["fig01a"]])


def fig01b_test_loss_surface(study: dict) -> dict:
    return _searches([study["searches"]["fig01b"]])


def fig02a_picture(study: dict) -> dict:
    return _searches([study["searches"]["fig02"]])


def fig02b_pattern_mask(study: dict) -> dict:
    return _searches([study["searches"]["fig02"]])


def fig02c_accuracy_surface(study: dict) -> dict:
    return _searches([study["searches"]["fig02"]])


def _fig03(study: dict) -> dict:
    """Fig 3's mask and the two models' fits to it (the first BN run seed, the example fill probability)."""
    runs = study["fig03_runs"]
    if not np.array_equal(runs["without_bn"]["mask"], runs["with_bn"]["mask"]):
        raise ValueError("fig03: the runs without and with BN were fitted to different masks")
    return {"fill_probability": study["fig03_fill_probability"], **runs}


def fig03a_random_mask(study: dict) -> dict:
    return _fig03(study)


def fig03b_without_bn(study: dict) -> dict:
    return _fig03(study)


def fig03c_with_bn(study: dict) -> dict:
    return _fig03(study)


def fig04a_accuracy_difference(study: dict) -> dict:
    return study["bn_summary"]


def fig04b_mean_accuracy(study: dict) -> dict:
    return study["bn_summary"]


def fig05_more_test_loss_surfaces(study: dict) -> dict:
    return _searches(study["searches"]["fig05"])


def fig06_train_test_surfaces(study: dict) -> dict:
    return _searches(study["searches"]["fig06"])


FIGURE_DATA = {f.__name__: f for f in (
    fig01a_test_loss_surface, fig01b_test_loss_surface, fig02a_picture, fig02b_pattern_mask,
    fig02c_accuracy_surface, fig03a_random_mask, fig03b_without_bn, fig03c_with_bn, fig04a_accuracy_difference,
    fig04b_mean_accuracy, fig05_more_test_loss_surfaces, fig06_train_test_surfaces)}


def loss_patterns_analysis(figures: dict[str, str | list[str]], search_files: dict[str, str],
                           bn_runs: dict[str, dict[str, list[str]]], fig03_fill_probability: float, *,
                           bn_json: str, bn_csv: str, searches_json: str, figure_data: dict[str, str]) -> None:
    """The study's one analysis job.

    ``figures``: the study's ``figures:`` (figure key -> search name or names); ``search_files``: search name ->
    its .h5; ``bn_runs``: protocol -> variant -> its runs' .h5 in seed order (Fig 3 shows the first seed of the
    ``paper`` protocol); ``figure_data``: figure name (a key of FIGURE_DATA) -> the file it is written to.
    """
    searches = {name: read_search(path) for name, path in search_files.items()}
    if "paper" not in bn_runs:
        raise ValueError(f"loss_patterns_analysis: no 'paper' protocol among {sorted(bn_runs)}")
    bn_summary = summarize_bn_experiment(bn_runs, bn_json, bn_csv)
    searches_by_figure(figures, {name: s["summary"] for name, s in searches.items()}, searches_json)
    study = {
        "searches": {key: searches[names] if isinstance(names, str) else [searches[n] for n in names]
                     for key, names in figures.items()},
        "fig03_fill_probability": float(fig03_fill_probability),
        "fig03_runs": {v: bn_run_at(bn_runs["paper"][v][0], fig03_fill_probability) for v in VARIANTS},
        "bn_summary": bn_summary,
    }
    unknown = sorted(set(figure_data) - set(FIGURE_DATA))
    if unknown:
        raise ValueError(f"loss_patterns_analysis: no figure named {unknown}")
    for name, path in figure_data.items():
        write_figure_data(path, FIGURE_DATA[name](study))
