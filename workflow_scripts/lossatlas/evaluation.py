"""Evaluation of every checkpoint of every member on train and test: ``metrics.h5``, the file analyses read.

Entry point: ``evaluate_run(spec, checkpoints_path, dataset_path, out_path)`` (rule ``evaluate``). Adding a metric
needs only a re-run of evaluation (the rule's params hash this module and ``metrics.py``), never retraining.
Networks are evaluated in eval mode (BatchNorm running statistics, no dropout), in the training dtype, on
``spec.device``, streamed in batches of ``eval.batch_size`` examples (memory bounded whatever the dataset size).
Formulas: ``lossatlas.metrics``.

``metrics.h5`` (M members, C checkpoints, n examples of a split, K classes, L parametrised layers):
- root attrs: ``spec`` (JSON), ``num_classes`` (0 for regression), ``task``, ``schema_version``, ``lp`` (JSON list
  of the p names), ``layers`` (JSON list of the parametrised layers' names, forward order), ``dataset_hash``;
- ``members`` (M,) int64 seeds;
- ``checkpoints/epoch`` (C,) float64 (fractional inside an epoch), ``checkpoints/step`` (C,) int64,
  ``checkpoints/examples_seen`` (C,) int64, ``checkpoints/valid`` (M, C) bool (false after a member stopped or
  diverged; every value of an invalid (member, checkpoint) is NaN, and ``pred`` is −1);
- per split s in ``eval.splits`` (train, test):
  ``s/y`` (n,) labels (regression: (n, d) targets), ``s/id`` (n,) int64 example ids;
  classification: ``s/pred`` (M, C, n) int16 predicted label, ``s/p_true`` (M, C, n) float32 true-class
  probability, ``s/ce`` (M, C, n) float32 per-example cross-entropy; with ``eval.full_softmax``: ``s/probs``
  (M, C, n, K) float16 (uncompressed: it barely compresses and gzip makes its writes ~50× slower);
  ``s/summary/<metric>`` (M, C) float64 for ``ce``, ``mse`` (Σ_k (p_k − onehot_k)², mean over examples),
  ``err01``, ``acc``, ``lp_<p>`` (p written 1, 2, 0.5, inf);
  regression: ``s/output`` (M, C, n, d) float32 raw outputs and ``s/summary/mse`` (Σ_k (z_k − t_k)², mean);
- ``weights/frobenius``, ``weights/l1`` (M, C, L) norms of each parametrised layer (weight and bias jointly),
  ``weights/frobenius_product``, ``weights/l1_product`` (M, C);
- ``status/diverged`` (M,) bool, ``status/diverged_epoch``, ``status/stopped_epoch`` (M,) float64 (NaN if not);
- ``train_log/loss`` (M, E) mean training loss per epoch (NaN after stopping), copied from checkpoints.h5.

Per-example arrays are chunked per member (a member reads back alone); labels, ids and predictions are
gzip-compressed, float arrays are not.

``load_checkpoint_model(checkpoints_path, seed, index)`` rebuilds one member at one checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from lossatlas import metrics as M
from lossatlas.devices import configure_numerics, resolve_device, to_device_data, torch_dtype
from lossatlas.io import H5Writer, atomic_path
from lossatlas.models import channels_last
from lossatlas.progress import Progress

log = logging.getLogger("lossatlas.evaluation")

SCHEMA_VERSION = 1
_MEMBER_READ_LIMIT = 256 << 20  # read a member's whole weight history at once below this many bytes


def open_checkpoints(path: str | os.PathLike) -> Any:
    """Open checkpoints.h5 for reading; a damaged file raises an OSError that names it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{path}: cannot read the checkpoints file (damaged or incomplete? retrain): {exc}") from exc


def _build(attrs: dict, spec: dict, device: torch.device) -> nn.Module:
    from lossatlas.models import build_model

    model = build_model(dict(spec["architecture"]), tuple(json.loads(attrs["input_shape"])),
                        int(attrs["num_outputs"]), dropout=bool(spec["dropout"]))
    model = model.to(dtype=torch_dtype(spec["dtype"]), device=device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last(model) else model


def _state(weights: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v[index])) for k, v in weights.items()}


def load_checkpoint_model(checkpoints_path: str | os.PathLike, seed: int, index: int,
                          device: str | torch.device = "cpu") -> nn.Module:
    """The network of member ``seed`` at checkpoint ``index`` (row of ``checkpoints/*``), in eval mode.

    Raises ValueError if the seed is not a member or the checkpoint is invalid (member stopped / diverged).
    """
    with open_checkpoints(checkpoints_path) as f:
        spec = json.loads(f.attrs["spec"])
        members = [int(s) for s in f["members"][:]]
        if int(seed) not in members:
            raise ValueError(f"{checkpoints_path}: seed {seed} is not a member (members: {members})")
        m = members.index(int(seed))
        if not bool(f["checkpoints/valid"][m, index]):
            raise ValueError(f"{checkpoints_path}: checkpoint {index} of seed {seed} is invalid "
                             "(the member stopped or diverged before it)")
        model = _build(dict(f.attrs), spec, torch.device(device))
        state = {k: torch.from_numpy(np.asarray(f["weights"][k][m, index])) for k in f["weights"]}
    model.load_state_dict(state)
    return model


def layer_norms(model: nn.Module) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, Frobenius norms, L1 norms) of the parametrised layers (``models.parametrised_layers``)."""
    from lossatlas.models import parametrised_layers

    layers = parametrised_layers(model)
    names = [name for name, _ in layers]
    fro, l1 = M.layer_norms_of([list(layer.parameters()) for _, layer in layers])
    return names, np.array(fro), np.array(l1)


def _per_example(model: nn.Module, data: Any, batch_size: int, classification: bool, lp: list,
                 full_softmax: bool) -> dict[str, np.ndarray]:
    """Every per-example quantity of one network on one split. The forward pass is streamed in batches (bounded
    activation memory); the metrics are then computed once on all n outputs (n × K floats), which saves a dozen
    small tensor operations per batch."""
    n = data.n
    layout = torch.channels_last if channels_last(model) and data.x.dim() == 4 else torch.contiguous_format
    with torch.no_grad():
        z = torch.cat([model(data.inputs(torch.arange(start, min(start + batch_size, n), device=data.x.device))
                             .contiguous(memory_format=layout)) for start in range(0, n, batch_size)])
        y = data.y
        if classification:
            probs = M.softmax(z)
            out = {"pred": M.predicted_label(probs).to(torch.int16), "p_true": M.true_class_probability(probs, y),
                   "ce": M.cross_entropy(z, y), "mse": M.squared_error(probs, y), "err01": M.zero_one_error(probs, y)}
            for p in lp:
                out[f"lp_{M.p_name(p)}"] = M.lp_error(probs, y, p)
            if full_softmax:
                out["probs"] = probs.to(torch.float16)
        else:
            out = {"output": z, "mse": M.raw_squared_error(z, y)}
    return {k: v.cpu().numpy() for k, v in out.items()}


def evaluate_run(spec: dict, checkpoints_path: str | os.PathLike, dataset_path: str | os.PathLike,
                 out_path: str | os.PathLike) -> None:
    """Evaluate every (member, checkpoint) on the configured splits and write ``out_path`` (schema above)."""
    import h5py

    from lossatlas.datasets import load_dataset

    t0 = time.perf_counter()
    # The spec comes from the validated config: every default is filled in from schemas/recipe.schema.yaml.
    device = resolve_device(spec["device"])
    dtype = torch_dtype(spec["dtype"])
    ecfg = spec["eval"]
    lp = list(ecfg["lp"])
    ds = load_dataset(dataset_path, verify=True)
    with open_checkpoints(checkpoints_path) as ck, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        attrs = dict(ck.attrs)
        if attrs.get("dataset_hash") and attrs["dataset_hash"] != ds.attrs.get("content_hash"):
            raise ValueError(f"{checkpoints_path} was trained on dataset hash {attrs['dataset_hash']}, but "
                             f"{dataset_path} has {ds.attrs.get('content_hash')}: retrain or rebuild the data")
        train_spec = json.loads(attrs["spec"])
        configure_numerics(device, bool(train_spec.get("tf32", False)))
        classification = attrs["task"] == "classification"
        num_classes = int(attrs["num_classes"])
        members = ck["members"][:]
        valid = ck["checkpoints/valid"][:]
        n_m, n_c = valid.shape
        model = _build(attrs, train_spec, device)
        names, _, _ = layer_norms(model)
        put = H5Writer(out)
        out_attrs = {"spec": json.dumps(spec, sort_keys=True), "num_classes": num_classes, "task": attrs["task"],
                     "schema_version": SCHEMA_VERSION, "lp": json.dumps([M.p_name(p) for p in lp]),
                     "layers": json.dumps(names), "dataset_hash": str(ds.attrs.get("content_hash", ""))}
        for k in sorted(out_attrs):
            out.attrs[k] = out_attrs[k]
        put("members", members)
        for k in ("epoch", "step", "examples_seen", "valid"):
            put(f"checkpoints/{k}", ck[f"checkpoints/{k}"][:])
        for k in ("diverged", "diverged_epoch", "stopped_epoch"):
            put(f"status/{k}", ck[f"status/{k}"][:])
        put("train_log/loss", ck["train_log/loss"][:])

        splits = {}
        for s in ecfg["splits"]:
            x, y, ids = ds.split(s)
            data = to_device_data(x, y, ds.attrs, device, dtype)
            splits[s] = data
            comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if len(y) else {}
            put(f"{s}/y", y, **comp)
            put(f"{s}/id", ids, **comp)
        summary_names = (M.summary_names(lp) if classification else ["mse"])
        dsets = _create_outputs(put, splits, n_m, n_c, classification, num_classes, ecfg["full_softmax"],
                                summary_names)
        fro = np.full((n_m, n_c, len(names)), np.nan)
        l1 = np.full((n_m, n_c, len(names)), np.nan)
        summaries = {s: {k: np.full((n_m, n_c), np.nan) for k in summary_names} for s in splits}
        param_bytes = sum(int(np.prod(ck["weights"][k].shape[2:])) * ck["weights"][k].dtype.itemsize
                          for k in ck["weights"])
        progress = Progress("evaluate", n_m * n_c, unit="checkpoint")
        for m in range(n_m):
            whole = param_bytes * n_c <= _MEMBER_READ_LIMIT
            weights = {k: ck["weights"][k][m] for k in ck["weights"]} if whole else None
            rows: dict[str, dict[str, np.ndarray]] = {s: {} for s in splits}
            for c in range(n_c):
                progress.update(m * n_c + c)
                if not valid[m, c]:
                    continue
                state = _state(weights, c) if whole else {
                    k: torch.from_numpy(np.asarray(ck["weights"][k][m, c])) for k in ck["weights"]}
                model.load_state_dict(state)
                _, fro[m, c], l1[m, c] = layer_norms(model)
                for s, data in splits.items():
                    if data.n == 0:
                        continue
                    res = _per_example(model, data, int(ecfg["batch_size"]), classification, lp,
                                       ecfg["full_softmax"])
                    for k in summary_names:
                        if k != "acc":
                            summaries[s][k][m, c] = float(np.mean(res[k], dtype=np.float64))
                    if classification:
                        summaries[s]["acc"][m, c] = 1.0 - summaries[s]["err01"][m, c]
                        if ecfg["full_softmax"]:
                            dsets[s]["probs"][m, c] = res["probs"]
                        keys = ("pred", "p_true", "ce")
                    else:
                        keys = ("output",)
                    for k in keys:
                        if k not in rows[s]:
                            rows[s][k] = np.full((n_c, *res[k].shape), -1 if k == "pred" else np.nan,
                                                 dtype=dsets[s][k].dtype)
                        rows[s][k][c] = res[k]
            for s in splits:
                for k, arr in rows[s].items():
                    dsets[s][k][m] = arr
        for s in splits:
            for k, v in summaries[s].items():
                put(f"{s}/summary/{k}", v)
        put("weights/frobenius", fro)
        put("weights/l1", l1)
        put("weights/frobenius_product", np.prod(fro, axis=-1))
        put("weights/l1_product", np.prod(l1, axis=-1))
    log.info("evaluated %d member(s) × %d checkpoints on %s in %.1f s", n_m, n_c, list(splits),
             time.perf_counter() - t0)


def _create_outputs(put: H5Writer, splits: dict, n_m: int, n_c: int, classification: bool, num_classes: int,
                    full_softmax: bool, summary_names: list[str]) -> dict[str, dict[str, Any]]:
    """Create the per-example datasets, chunked per member (fill: −1 for pred, NaN for floats)."""
    dsets: dict[str, dict[str, Any]] = {}
    for s, data in splits.items():
        n = data.n
        cc = int(max(1, min(n_c, (1 << 18) // max(n, 1))))  # ~1 MB float32 chunks

        def layout(*tail: int, gzip: bool = False, per_checkpoint: bool = False, n: int = n, cc: int = cc) -> dict:
            if n == 0:  # an empty split (e.g. a regression set without test points): no chunks
                return {}
            out = {"chunks": (1, 1 if per_checkpoint else cc, *tail)}
            return {**out, "compression": "gzip", "compression_opts": 4, "shuffle": True} if gzip else out

        d: dict[str, Any] = {}
        if classification:
            d["pred"] = put(f"{s}/pred", None, shape=(n_m, n_c, n), dtype=np.int16, fillvalue=-1,
                            **layout(n, gzip=True))
            for k in ("p_true", "ce"):
                d[k] = put(f"{s}/{k}", None, shape=(n_m, n_c, n), dtype=np.float32, fillvalue=np.nan,
                           **layout(n))
            if full_softmax:
                d["probs"] = put(f"{s}/probs", None, shape=(n_m, n_c, n, num_classes), dtype=np.float16,
                                 fillvalue=np.nan, **layout(n, num_classes, per_checkpoint=True))
        else:
            width = int(data.y.shape[1]) if data.y.ndim > 1 else 1
            d["output"] = put(f"{s}/output", None, shape=(n_m, n_c, n, width), dtype=np.float32,
                              fillvalue=np.nan, **layout(n, width))
        dsets[s] = d
    return dsets
