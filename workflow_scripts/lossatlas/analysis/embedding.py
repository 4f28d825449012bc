"""Experiments and analysis of the embedding principle paper (embedding_principle.txt §3.2, App. B; FIGURES.md §5).

Experiments (rule embedding_experiment, one job each, keyed like the config: fig01, fig03a, fig03b, fig04, fig05):
each ``figNN_<what>_experiment`` trains small full-batch float64 nets (lossatlas.embedding) and writes
``<experiment>.npz`` (raw arrays) and ``<experiment>.json`` (the numbers the claims read: eigenvalue counts,
thresholds, how each empirical critical point was located, group counts, agreement rate). Settings come from
``studies.embedding.<experiment>`` (schemas/studies/embedding.schema.yaml documents every key).

Analysis (rule embedding_analysis, one job): ``analyse`` writes ``<figure>.npz`` for every figure file, the
arrays that figure draws, made by its function in ``FIGURE_DATA`` (``<figure>_data``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lossatlas import embedding as emb
from lossatlas.io import atomic_path, write_json

log = logging.getLogger("lossatlas.embedding")


# ------------------------------------------------------------------------------------------- helpers


def load_xy(dataset_path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, dict]:
    """Inputs (n, D) float64 and targets (n, d_out) float64 of one split.

    Regression targets are used as they are; class labels become one-hot targets (MSE on one-hot codes, the
    paper's Iris and MNIST set-ups). Images are flattened.
    """
    from lossatlas.datasets import load_dataset

    data = load_dataset(dataset_path)
    x = np.asarray(getattr(data, f"x_{split}"), dtype=np.float64)
    x = x.reshape(len(x), -1)
    y = np.asarray(getattr(data, f"y_{split}"))
    if data.attrs["task"] == "regression":
        y = y.astype(np.float64).reshape(len(y), -1)
    else:
        y = np.eye(int(data.num_classes))[y.astype(np.int64)]
    return x, y, data.attrs


def _save(out_path: str | Path, arrays: dict, summary: dict) -> None:
    """``out_path`` is the .npz; the summary goes beside it as .json (both atomic)."""
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json(out_path.with_suffix(".json"), summary)


def _train(cfg: dict, net: emb.FCN, x: np.ndarray, y: np.ndarray, epochs_key: str = "epochs") -> emb.TrainRecord:
    opt = cfg["optimizer"]
    return emb.train_full_batch(net, x, y, opt["name"], float(opt["lr"]), int(cfg[epochs_key]),
                                int(cfg["snapshot_every"]))


def _stagnation_point(record: emb.TrainRecord, stag: dict) -> tuple[int, dict]:
    """Snapshot index of the empirical critical point and how it was located (§3.2)."""
    loss = record.loss if record.loss.ndim == 1 else record.loss[:, 0]
    stretch = emb.find_stagnation(loss, int(stag["window"]), float(stag["rel_tol"]), int(stag["min_length"]),
                                  bool(stag["skip_initial"]))
    if stretch is None:
        raise ValueError(f"no stagnation stretch found (window {stag['window']}, rel_tol {stag['rel_tol']}, "
                         f"min_length {stag['min_length']}): train longer or loosen the stagnation settings")
    if stag.get("point", "min_grad_norm") == "min_grad_norm":
        index = emb.empirical_critical_point(record, stretch)
        where = "the snapshot with the smallest gradient norm"
    else:  # "stretch_end": the last snapshot of the stretch, just before the loss escapes
        index = max(i for i, s in enumerate(record.snapshot_steps) if s <= stretch[1])
        where = "its last snapshot"
    step = int(record.snapshot_steps[index])
    how = {"method": "first stretch where (L_t - L_{t+window}) / L_t < rel_tol for >= min_length steps"
                     + (", skipping a stretch that starts at step 0" if stag["skip_initial"] else "")
                     + f"; inside it, {where}",
           **stag, "stretch": [int(stretch[0]), int(stretch[1])], "step": step,
           "loss": float(loss[step]), "grad_norm": float(np.ravel(record.grad_norm[step])[0])}
    return index, how


def _grid(x: np.ndarray, points: int) -> np.ndarray:
    return np.linspace(x.min(), x.max(), points)[:, None]


def _hidden_widths(net: emb.FCN) -> list[int]:
    return net.widths[1:-1]


# ------------------------------------------------------------------------------------------- Fig 1


def fig01_stagnation_experiment(cfg: dict, dataset_path: str, out_path: str) -> dict:
    """Fig 1: a wide tanh net with small initialisation stagnates at a critical point embedded from a narrow net.

    (a) loss of the wide net under full-batch GD with the stagnation located as in ``_stagnation_point``;
    (b) its output at the blue dot against the output of the narrow nets' global minima (the best of
    ``narrow_trials`` trials per narrow width, polished by ``polish_critical_point``). The narrow width of the
    paper is lost; every width in ``narrow_widths`` is trained and the closest (sup distance on the grid) drawn.
    """
    x, y, _ = load_xy(dataset_path)
    grid = _grid(x, int(cfg["grid_points"]))
    wide0 = emb.init_fcn([x.shape[1], int(cfg["width"]), y.shape[1]], cfg["activation"], float(cfg["init_std"]),
                         int(cfg["seed"]), bool(cfg["output_bias"]))
    record = _train(cfg, wide0, x, y)
    index, how = _stagnation_point(record, cfg["stagnation"])
    blue = record.snapshots[index]
    blue_out = emb.forward(blue, grid)[:, 0]
    arrays = {"loss": record.loss, "grad_norm": record.grad_norm, "x": x[:, 0], "y": y[:, 0], "grid": grid[:, 0],
              "blue_output": blue_out, "final_output": emb.forward(record.final, grid)[:, 0]}
    narrow = {}
    for width in cfg["narrow_widths"]:
        stack = emb.init_trials([x.shape[1], int(width), y.shape[1]], cfg["activation"],
                                float(cfg["narrow_init_std"]), int(cfg["seed"]), int(cfg["narrow_trials"]),
                                bool(cfg["output_bias"]))
        rec = _train(cfg, stack, x, y, "narrow_epochs")
        best = int(np.argmin(rec.loss[-1]))
        net, history = emb.polish_critical_point(rec.final.member(best), x, y)
        out = emb.forward(net, grid)[:, 0]
        arrays[f"narrow_output_w{width}"] = out
        narrow[str(width)] = {"loss": float(emb.risk(net, x, y)), "grad_norm": history[-1],
                              "grad_norm_before_polish": history[0], "best_trial": best,
                              "sup_distance_to_blue": float(np.abs(out - blue_out).max())}
    closest = min(narrow, key=lambda w: narrow[w]["sup_distance_to_blue"])
    summary = {"figure": "embedding Fig 1", "width": int(cfg["width"]), "blue_point": how,
               "final_loss": float(record.loss[-1]), "narrow_minima": narrow, "closest_narrow_width": int(closest),
               "sup_distance_blue_vs_closest_narrow": narrow[closest]["sup_distance_to_blue"],
               "paper": {"wide_width": 500, "narrow_width": "lost ([R, uncertain] 1)"}}
    _save(out_path, arrays, summary)
    log.info("Fig 1: blue dot at step %d (loss %.5g), closest narrow width %s, sup distance %.3g",
             how["step"], how["loss"], closest, narrow[closest]["sup_distance_to_blue"])
    return summary


# ------------------------------------------------------------------------------------------- Fig 3


def fig03_hessian_spectra_experiment(cfg: dict, dataset_path: str, out_path: str) -> dict:
    """Figs 3a/3b: Hessian spectrum at an empirical critical point of a narrow net and after 1- and 2-step
    embeddings (Def. 5 with the configured (neuron, delta) per step; Lemma 2: one more zero eigenvalue per step).

    The critical point is the snapshot with the smallest gradient norm in the last ``tail_fraction`` of
    training, then (``polish``) refined by Levenberg-Marquardt on grad R_S = 0 so that zero eigenvalues are zero
    to rounding. Zero: |lambda| <= zero_rel_tol * max|lambda|; 'significant' negative: lambda <
    -significant_rel_tol * max|lambda| (the paper's thresholds are lost).
    """
    x, y, _ = load_xy(dataset_path)
    net0 = emb.init_fcn([x.shape[1], int(cfg["width"]), y.shape[1]], cfg["activation"], float(cfg["init_std"]),
                        int(cfg["seed"]), bool(cfg["output_bias"]))
    record = _train(cfg, net0, x, y)
    tail_start = int((1.0 - float(cfg["tail_fraction"])) * int(cfg["epochs"]))
    tail = [i for i, s in enumerate(record.snapshot_steps) if s >= tail_start]
    index = min(tail, key=lambda i: float(record.grad_norm[record.snapshot_steps[i]]))
    point = record.snapshots[index]
    history = [float(record.grad_norm[record.snapshot_steps[index]])]
    if cfg["polish"]:
        point, history = emb.polish_critical_point(point, x, y)
    arrays = {"loss": record.loss, "grad_norm": record.grad_norm}
    levels = []
    net = point
    steps = [(1, int(s["neuron"]), float(s["delta"])) for s in cfg["embedding_steps"]]
    for k in range(len(steps) + 1):
        if k > 0:
            net = emb.one_step_embedding(net, *steps[k - 1])
        loss, grads = emb.risk_and_gradient(net, x, y)
        lam = np.linalg.eigvalsh(emb.hessian(net, x, y))
        arrays[f"eigenvalues_w{_hidden_widths(net)[0]}"] = lam
        counts = emb.spectrum_counts(lam, float(cfg["zero_rel_tol"]), float(cfg["significant_rel_tol"]))
        levels.append({"width": _hidden_widths(net)[0], "embedding_steps": k, "loss": float(loss),
                       "grad_norm": float(emb.gradient_norm(grads)),
                       "max_output_change": float(np.abs(emb.forward(net, x) - emb.forward(point, x)).max()),
                       **counts})
    summary = {"figure": cfg["figure"], "critical_point": {
        "located_by": f"smallest gradient norm among snapshots in the last {cfg['tail_fraction']} of training"
                      + (", then Levenberg-Marquardt polish" if cfg["polish"] else ""),
        "step": int(record.snapshot_steps[index]), "grad_norm_empirical": history[0],
        "grad_norm": history[-1]}, "embedding_steps": cfg["embedding_steps"], "levels": levels,
        "zero_rel_tol": cfg["zero_rel_tol"], "significant_rel_tol": cfg["significant_rel_tol"],
        "paper": {"zero_increment_per_step": 1, "n_negative": "0 at width 2 (all eigenvalues positive, 3a); "
                  "later counts lost"}}
    _save(out_path, arrays, summary)
    log.info("%s: zero %s, negative %s", cfg["figure"], [v["n_zero"] for v in levels],
             [v["n_negative"] for v in levels])
    return summary


# ------------------------------------------------------------------------------------------- Fig 4


def cluster_critical_points(losses: np.ndarray, outputs: np.ndarray, grad_norms: np.ndarray,
                            loss_rel_tol: float, output_tol: float) -> list[list[int]]:
    """Greedy clustering of empirical critical points by loss value and output function (App. B):
    smallest gradient norm first, each unassigned point opens a cluster holding every unassigned point with
    |L - L_0| <= loss_rel_tol * L_0 and sup_x |f - f_0| <= output_tol. Each cluster lists its opener first."""
    order = np.argsort(grad_norms, kind="stable")
    free = np.ones(len(losses), dtype=bool)
    clusters = []
    for i in order:
        if not free[i]:
            continue
        near = (np.abs(losses - losses[i]) <= loss_rel_tol * abs(losses[i])) & \
               (np.abs(outputs - outputs[i]).max(axis=1) <= output_tol) & free
        members = [int(i)] + [int(j) for j in np.flatnonzero(near) if j != i]
        free[members] = False
        clusters.append(members)
    return clusters


def fig04_critical_points_experiment(cfg: dict, dataset_path: str, out_path: str) -> dict:
    """Fig 4: empirical diagram of the critical points of the widest net (App. B).

    For each width, ``trials`` nets (stacked) are trained by full-batch GD; every snapshot whose gradient norm
    is below ``grad_threshold`` is an empirical critical point. They are clustered by loss and output function
    (``cluster_critical_points``); the constant-zero output (sup |f| <= zero_output_tol) is excluded. A cluster
    whose output matches (sup distance <= output_tol) a cluster found at a narrower width is that point embedded;
    the others are new at their width. Each new point (polished) is embedded into the widest net by
    ``embedding_steps`` (deltas cycling through ``deltas``) and its Hessian degeneracy counted there.
    A point is ``verified`` when the polish brings its gradient norm below ``verified_grad_norm``; a cluster
    that is not is a slow stretch of the trajectories (e.g. a valley leading to infinitely large weights), not
    a finite critical point. The counts ``n_per_source_width`` hold every cluster, as the paper's definition
    (gradient below a threshold) does; ``n_verified_per_source_width`` only the verified ones.
    """
    x, y, _ = load_xy(dataset_path)
    grid = _grid(x, int(cfg["grid_points"]))
    widths = sorted(int(w) for w in cfg["widths"])
    target = widths[-1]
    points, arrays = [], {"x": x[:, 0], "y": y[:, 0], "grid": grid[:, 0]}
    for width in widths:
        stack = emb.init_trials([x.shape[1], width, y.shape[1]], cfg["activation"], float(cfg["init_std"]),
                                int(cfg["seed"]) + 1000 * width, int(cfg["trials"]), bool(cfg["output_bias"]))
        rec = _train(cfg, stack, x, y)
        cand_loss, cand_out, cand_norm, cand_net, cand_trial = [], [], [], [], []
        for s_index, step in enumerate(rec.snapshot_steps):
            below = np.flatnonzero(rec.grad_norm[step] < float(cfg["grad_threshold"]))
            for t in below:
                net = rec.snapshots[s_index].member(int(t))
                out = emb.forward(net, grid)[:, 0]
                if np.abs(out).max() <= float(cfg["zero_output_tol"]):
                    continue
                cand_loss.append(rec.loss[step, t])
                cand_out.append(out)
                cand_norm.append(rec.grad_norm[step, t])
                cand_net.append(net)
                cand_trial.append(int(t))
        if not cand_loss:
            log.info("Fig 4: no empirical critical point below the threshold at width %d", width)
            continue
        cand_loss, cand_out, cand_norm = np.array(cand_loss), np.array(cand_out), np.array(cand_norm)
        for members in cluster_critical_points(cand_loss, cand_out, cand_norm, float(cfg["loss_rel_tol"]),
                                               float(cfg["output_tol"])):
            rep = members[0]
            matches = [p for p in points if np.abs(p["output"] - cand_out[rep]).max() <= float(cfg["output_tol"])]
            if matches:
                matches[0]["seen_at_widths"].add(width)
                matches[0]["trials_at_width"][width] = len({cand_trial[m] for m in members})
                continue
            net, history = emb.polish_critical_point(cand_net[rep], x, y)
            points.append({"source_width": width, "net": net, "output": emb.forward(net, grid)[:, 0],
                           "loss": float(emb.risk(net, x, y)), "grad_norm_empirical": float(cand_norm[rep]),
                           "grad_norm": history[-1], "seen_at_widths": {width},
                           "trials_at_width": {width: len({cand_trial[m] for m in members})}})
    rows = []
    for k, p in enumerate(sorted(points, key=lambda p: -p["loss"])):
        own = emb.spectrum_counts(np.linalg.eigvalsh(emb.hessian(p["net"], x, y)), float(cfg["zero_rel_tol"]),
                                  float(cfg["significant_rel_tol"]))
        wide = emb.multi_step_embedding(p["net"], emb.embedding_steps(p["net"].widths, [target], cfg["deltas"]))
        lam = np.linalg.eigvalsh(emb.hessian(wide, x, y))
        counts = emb.spectrum_counts(lam, float(cfg["zero_rel_tol"]), float(cfg["significant_rel_tol"]))
        _, g = emb.risk_and_gradient(wide, x, y)
        arrays[f"output_{k}"] = p["output"]
        arrays[f"eigenvalues_{k}"] = lam
        rows.append({"index": k, "source_width": p["source_width"], "loss": p["loss"],
                     "grad_norm_empirical": p["grad_norm_empirical"], "grad_norm": p["grad_norm"],
                     "grad_norm_embedded": float(emb.gradient_norm(g)),
                     "seen_at_widths": sorted(p["seen_at_widths"]),
                     "trials_at_width": {str(w): n for w, n in sorted(p["trials_at_width"].items())},
                     "n_zero_own_width": own["n_zero"], "n_negative_own_width": own["n_negative"],
                     "degeneracy": counts["n_zero"], "n_negative": counts["n_negative"],
                     "verified": p["grad_norm"] < float(cfg["verified_grad_norm"]),
                     "zero_threshold": counts["zero_threshold"], "embedded_into_width": target,
                     "theorem2_lower_bound": own["n_zero"] + target - p["source_width"]})
    summary = {"figure": "embedding Fig 4", "critical_points": rows,
               "n_per_source_width": {str(w): sum(r["source_width"] == w for r in rows) for w in widths},
               "n_verified_per_source_width": {str(w): sum(r["source_width"] == w and r["verified"] for r in rows)
                                               for w in widths},
               "verified_grad_norm": cfg["verified_grad_norm"],
               "located_by": f"snapshots every {cfg['snapshot_every']} steps with gradient norm < "
                             f"{cfg['grad_threshold']}, clustered by loss (rel tol {cfg['loss_rel_tol']}) and "
                             f"output (sup tol {cfg['output_tol']}), polished by Levenberg-Marquardt",
               "paper": {"n_per_source_width": {"1": 1, "2": 2, "3": 1}, "trials_per_width": 200}}
    _save(out_path, arrays, summary)
    log.info("Fig 4: critical points per source width %s (verified by the polish: %s)",
             summary["n_per_source_width"], summary["n_verified_per_source_width"])
    return summary


# ------------------------------------------------------------------------------------------- Fig 5


def agreement_matrix(pred_a: np.ndarray, pred_b: np.ndarray, num_classes: int) -> np.ndarray:
    """C[p, q] = #{x : argmax f_a(x) = p, argmax f_b(x) = q} (Fig 5d)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (pred_a, pred_b), 1)
    return matrix


def fig05_condensation_experiment(cfg: dict, dataset_path: str, out_path: str) -> dict:
    """Fig 5: condensed neurons at a stagnation of a wide two-layer ReLU net reduce to a narrow net (§3.2).

    (a) loss under full-batch Adam from a small init, blue dot located as in ``_stagnation_point``;
    (b) cosine similarity of the input weights (incl. bias) of the non-negligible neurons, grouped by
    ``group_neurons``; (c) the reduced net (one neuron per group carrying the group's output weight,
    ``reduce_layer`` with ``reduction_rule``; the group's largest-amplitude neuron is kept, where the paper
    picks one at random) trained by the same optimiser, its blue dot the snapshot with the smallest gradient
    norm; (d) agreement matrix of the two blue points' predictions on the test split.
    Inputs are divided by the largest |x| of the training split.
    """
    x, y, attrs = load_xy(dataset_path)
    x_test, y_test, _ = load_xy(dataset_path, "test")
    scale = float(np.abs(x).max())
    x, x_test = x / scale, x_test / scale
    net0 = emb.init_fcn([x.shape[1], int(cfg["width"]), y.shape[1]], "relu", float(cfg["init_std"]),
                        int(cfg["seed"]), bool(cfg["output_bias"]))
    record = _train(cfg, net0, x, y)
    index, how = _stagnation_point(record, cfg["stagnation"])
    blue = record.snapshots[index]
    amplitudes = emb.neuron_amplitudes(blue, 1)
    similarity = emb.cosine_similarity(emb.input_weights(blue, 1))
    groups, neglected = emb.group_neurons(similarity, amplitudes, float(cfg["cos_threshold"]),
                                          float(cfg["min_amplitude_fraction"]))
    reduced0 = emb.reduce_layer(blue, 1, groups, cfg["reduction_rule"])
    reduced_record = _train(cfg, reduced0, x, y, "reduced_epochs")
    # The reduced net's blue dot: its snapshot with the smallest gradient norm (it 'stagnated after a few steps').
    red_norms = [float(reduced_record.grad_norm[s]) for s in reduced_record.snapshot_steps]
    red_index = int(np.argmin(red_norms))
    red_step = int(reduced_record.snapshot_steps[red_index])
    red_how = {"method": "snapshot of the reduced run with the smallest gradient norm", "step": red_step,
               "loss": float(reduced_record.loss[red_step]), "grad_norm": red_norms[red_index]}
    reduced = reduced_record.snapshots[red_index]
    pred_blue = emb.forward(blue, x_test).argmax(axis=1)
    pred_reduced = emb.forward(reduced, x_test).argmax(axis=1)
    labels = y_test.argmax(axis=1)
    matrix = agreement_matrix(pred_blue, pred_reduced, y.shape[1])
    order = [k for g in groups for k in g]
    arrays = {"loss": record.loss, "grad_norm": record.grad_norm, "reduced_loss": reduced_record.loss,
              "similarity": similarity[np.ix_(order, order)],
              "group_sizes": np.array([len(g) for g in groups]), "agreement": matrix,
              "amplitudes": amplitudes}
    summary = {"figure": "embedding Fig 5", "width": int(cfg["width"]), "n_train": len(x), "n_test": len(x_test),
               "blue_point": how, "n_neglected": len(neglected), "n_groups": len(groups),
               "group_sizes": [len(g) for g in groups], "cos_threshold": cfg["cos_threshold"],
               "min_amplitude_fraction": cfg["min_amplitude_fraction"],
               "loss_reduced_at_start": float(reduced_record.loss[0]),
               "reduced_blue_point": red_how,
               "loss_gap_blue_vs_reduced": abs(red_how["loss"] - how["loss"]),
               "agreement_rate": float(np.trace(matrix) / matrix.sum()),
               "test_accuracy_blue": float(np.mean(pred_blue == labels)),
               "test_accuracy_reduced": float(np.mean(pred_reduced == labels)),
               "dataset": attrs.get("name"),
               "paper": {"width": 400, "n_train": 1000, "n_groups": "lost", "agreement_rate": "lost"}}
    _save(out_path, arrays, summary)
    log.info("Fig 5: blue dot step %d loss %.4g; %d groups (%d neglected); agreement %.3f", how["step"],
             how["loss"], len(groups), len(neglected), summary["agreement_rate"])
    return summary


# Experiment (the study config's key) -> the function that runs it.
EXPERIMENTS = {"fig01": fig01_stagnation_experiment, "fig03a": fig03_hessian_spectra_experiment,
               "fig03b": fig03_hessian_spectra_experiment, "fig04": fig04_critical_points_experiment,
               "fig05": fig05_condensation_experiment}


def run_experiment(experiment: str, cfg: dict, dataset_path: str, out_path: str, threads: int = 1) -> dict:
    """Entry point of rule embedding_experiment: run ``experiment`` with ``threads`` BLAS threads.

    The limit is applied here because numpy's BLAS reads OMP_NUM_THREADS only when it is first imported; small
    matrices on a busy machine run several times slower with more threads.
    """
    from threadpoolctl import threadpool_limits

    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown embedding experiment '{experiment}' (one of {', '.join(EXPERIMENTS)})")
    with threadpool_limits(limits=threads):
        return EXPERIMENTS[experiment](cfg, dataset_path, out_path)


# ------------------------------------------------------------------------------ analysis: figure arrays


def fig01_stagnation_data(arrays: dict, summary: dict) -> dict:
    """Fig 1: the wide net's loss, the data, and on the grid its output at the blue dot and at the last epoch
    next to the minimum of the narrow width closest to it."""
    width = summary["closest_narrow_width"]
    return {**{k: arrays[k] for k in ("loss", "x", "y", "grid", "blue_output", "final_output")},
            "closest_narrow_output": arrays[f"narrow_output_w{width}"]}


def hessian_spectra_data(arrays: dict, summary: dict) -> dict:
    """Figs 3a/3b: each level's Hessian eigenvalues ordered by |lambda|, largest first."""
    out = {}
    for level in summary["levels"]:
        lam = arrays[f"eigenvalues_w{level['width']}"]
        out[f"eigenvalues_w{level['width']}"] = lam[np.argsort(-np.abs(lam))]
    return out


def fig04_critical_point_diagram_data(arrays: dict, summary: dict) -> dict:
    """Fig 4: the data and the output function of every critical point on the grid."""
    keys = ["x", "y", "grid"] + [f"output_{row['index']}" for row in summary["critical_points"]]
    return {k: arrays[k] for k in keys}


def fig05a_loss_data(arrays: dict, summary: dict) -> dict:
    return {"loss": arrays["loss"]}


def fig05b_similarity_data(arrays: dict, summary: dict) -> dict:
    """Fig 5b: the grouped similarity matrix and the positions of the lines between groups."""
    return {"similarity": arrays["similarity"], "group_edges": np.cumsum(arrays["group_sizes"])[:-1] - 0.5}


def fig05c_reduced_loss_data(arrays: dict, summary: dict) -> dict:
    return {"reduced_loss": arrays["reduced_loss"]}


def fig05d_agreement_data(arrays: dict, summary: dict) -> dict:
    """Fig 5d: the agreement matrix as frequencies of the prediction pairs."""
    matrix = arrays["agreement"]
    return {"frequency": matrix / matrix.sum()}


# Figure file stem -> (the experiment it is drawn from, the function making its arrays).
FIGURE_DATA = {
    "fig01_stagnation": ("fig01", fig01_stagnation_data),
    "fig03a_hessian_spectrum_1d": ("fig03a", hessian_spectra_data),
    "fig03b_hessian_spectrum_iris": ("fig03b", hessian_spectra_data),
    "fig04_critical_point_diagram": ("fig04", fig04_critical_point_diagram_data),
    "fig05a_loss": ("fig05", fig05a_loss_data),
    "fig05b_similarity": ("fig05", fig05b_similarity_data),
    "fig05c_reduced_loss": ("fig05", fig05c_reduced_loss_data),
    "fig05d_agreement": ("fig05", fig05d_agreement_data),
}


def analyse(experiment_arrays: dict[str, str], out: dict[str, str]) -> None:
    """Write each figure's arrays (``out``: figure -> its .npz; figures of ``FIGURE_DATA``) from its experiment's
    outputs (``experiment_arrays``: experiment -> its .npz; the .json summary lies beside it)."""
    for figure, path in out.items():
        experiment, make = FIGURE_DATA[figure]
        source = Path(experiment_arrays[experiment])
        with np.load(source) as data:
            arrays = {k: data[k] for k in data.files}
        summary = json.loads(source.with_suffix(".json").read_text())
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **make(arrays, summary))
