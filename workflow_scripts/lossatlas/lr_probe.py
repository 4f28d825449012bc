"""Learning-rate probe (``lr: probe``): train a block briefly at each candidate rate, report which diverge, and
choose by the universality paper's §4 rule.

The ``lr_probe`` rule writes the chosen rate as ``{"lr": value}``; ``train_run`` reads it (``lr_path``). The probe
feeds training, so it is training code: its edits re-probe nothing (lossatlas/fingerprint.py).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from lossatlas.devices import derive_seed, resolve_device, torch_dtype
from lossatlas.io import write_json
from lossatlas.optim import batch_loss
from lossatlas.training import BlockTrainer, Phase, build_member, load_phases

log = logging.getLogger("lossatlas.training")


def probe_learning_rates(spec: dict, dataset_path: str | os.PathLike, candidates: Sequence[float], epochs: int,
                         blowup_factor: float = 2.0) -> list[dict]:
    """Train the spec's members in memory for ``epochs`` epochs at each candidate rate (largest first).

    Returns one ``{"lr", "diverged", "final_loss"}`` per candidate. A candidate diverged when, for some member,
    the loss becomes NaN/inf or an epoch-mean training loss exceeds ``blowup_factor`` × the member's initial loss
    (its loss on its first minibatch before any update). ``final_loss`` = the members' mean of the last epoch's
    mean training loss (NaN if diverged). A pretrain phase is skipped (the probe is about the main data).
    """
    device = resolve_device(spec.get("device", "auto"))
    probe_spec = {**spec, "pretrain": None, "epochs": int(epochs), "checkpoints": {"every": int(epochs)},
                  "stop_at_train_loss": None}
    phases, ds, num_classes, outputs = load_phases(probe_spec, dataset_path, None, device)
    results = []
    for lr in sorted((float(c) for c in candidates), reverse=True):
        initial = _initial_losses(probe_spec, phases[-1], ds.input_shape, outputs, num_classes, device)
        trainer = BlockTrainer({**probe_spec, "optimizer": {**spec["optimizer"], "lr": lr}}, phases,
                               ds.input_shape, outputs, num_classes, lr, device, None, "")
        trainer.run()
        losses = trainer.status.train_loss
        with np.errstate(invalid="ignore"):
            blown = (losses > blowup_factor * initial[:, None]).any()
        diverged = bool(trainer.status.diverged.any() or (~np.isfinite(losses)).any() or blown)
        final = float("nan") if diverged else float(np.mean(losses[:, -1]))
        results.append({"lr": lr, "diverged": diverged, "final_loss": final})
        log.info("lr probe %g: diverged=%s final_loss=%s", lr, diverged, final)
    return results


def _initial_losses(spec: dict, phase: Phase, input_shape: Sequence[int], outputs: int, num_classes: int,
                    device: torch.device) -> np.ndarray:
    """Each member's training loss on its first minibatch at initialisation (train mode, no update)."""
    dtype = torch_dtype(spec.get("dtype", "float32"))
    batch = int(spec.get("batch_size", 64))
    out = []
    for seed in spec["seeds"]:
        model = build_member(spec, input_shape, outputs, int(seed), device, dtype)
        model.train()
        perm = torch.randperm(phase.data.n, generator=torch.Generator().manual_seed(
            derive_seed(int(seed), "data", phase.name, 0)))[:batch].to(device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            z = model(phase.data.inputs(perm)).unsqueeze(0)
            out.append(float(batch_loss(spec.get("loss", "ce"), z, phase.data.y[perm].unsqueeze(0), num_classes)))
    return np.asarray(out)


# ------------------------------------------------------------------------------------- learning-rate rule


def choose_learning_rate(probe_table: list[dict], tolerance: float | None = None) -> float:
    """The §4 rule: "a constant learning rate from 2^{-5..-10} such that there is no divergence".

    The paper does not say which non-diverging rate; the pipeline takes the largest (FIGURES.md §1.0). A
    candidate counts as diverged when the probe says so or its final loss is not finite. With ``tolerance``,
    also when its final loss exceeds (1 + tolerance) × the final loss of the smallest non-diverged candidate
    (the most cautious rate): l_MSE on the softmax is bounded by 2, so a rate that throws training off never
    "blows up" to a large loss -- it ends worse than a cautious rate does (measured at default scale: CNN,
    SGDm, l_MSE: 1.16 at 2^-1 against 0.67 at 2^-6).
    """
    if not probe_table:
        raise ValueError("lr probe: empty probe table (no candidate rates were tried)")
    ok = [row for row in probe_table
          if not row["diverged"] and row.get("final_loss") is not None and math.isfinite(row["final_loss"])]
    if ok and tolerance is not None:
        cautious = min(ok, key=lambda row: row["lr"])["final_loss"]
        ok = [row for row in ok if row["final_loss"] <= (1.0 + tolerance) * cautious]
    if not ok:
        tried = ", ".join(f"{row['lr']:g}" for row in probe_table)
        raise ValueError(f"lr probe: every candidate rate diverged ({tried}); add smaller lr_candidates")
    return float(max(row["lr"] for row in ok))


def lr_probe(spec: dict, dataset_path: str, out_path: str, epochs: int, seed: int,
             tolerance: float | None = None) -> dict:
    """Run the engine's short probe for every candidate of ``spec['optimizer']['lr_candidates']`` and record
    the chosen rate with the whole probe table (read by the train rule as ``lr_path``)."""
    optimizer = spec["optimizer"]
    candidates = optimizer.get("lr_candidates")
    if not candidates:
        raise ValueError(f"optimizers.{optimizer['name']}: lr is 'probe' but lr_candidates is missing")
    probe_spec = {**spec, "seeds": [int(seed)]}
    table = [dict(row) for row in probe_learning_rates(probe_spec, dataset_path, list(candidates), int(epochs))]
    chosen = choose_learning_rate(table, tolerance)
    log.info("lr probe %s: chose %g from %s", optimizer["name"], chosen, table)
    result = {"lr": chosen, "rule": "largest candidate that does not diverge (universality §4)",
              "tolerance": tolerance, "candidates": list(candidates), "epochs": int(epochs), "seed": int(seed),
              "probe": table}
    write_json(out_path, result)
    return result
