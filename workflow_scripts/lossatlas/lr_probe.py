"""Learning-rate probe (``lr: probe``): train a block briefly at each candidate rate and report which diverge.

The ``lr_probe`` rule writes the chosen rate as ``{"lr": value}``; ``train_run`` reads it (``lr_path``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from lossatlas.devices import derive_seed, resolve_device, torch_dtype
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
