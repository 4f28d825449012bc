"""Learning-rate probe (``lr: probe``): train a block at each candidate rate, report which diverge or spike, and
choose by the universality paper's §4 rule.

A rate that trains without blowing up can still be unstable: issue 18 measured the ResNet stand-ins' training-set
loss at the checkpoints (evaluation mode, the loss the universality figures plot) jumping back up 6-9 times in 30
epochs, while their train-mode epoch means fell smoothly and a 2-epoch probe saw nothing. So the probe also
evaluates each member's training-set loss in evaluation mode after every epoch, and ``first_spike`` rejects a rate
whose loss there, at any checkpoint, climbs back more than ``spike_fraction`` of the way from its running minimum
to its initial loss. It sees only the epochs probed: probe for the run's length
(``studies.universality.lr_probe.epochs``) to see late spikes.

The ``lr_probe`` rule writes the chosen rate as ``{"lr": value}``; ``train_run`` reads it (``lr_path``). The rule's
fingerprint leaves out the train job's code, so training-code edits re-probe nothing; an edit of this module
re-probes, and retrains on the rate it picks (lossatlas/fingerprint.py).
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


def first_spike(losses: Sequence[float], fraction: float) -> int | None:
    """Index of the first loss that climbs back more than ``fraction`` of the way from the run's running minimum
    up to its first (initial) loss -- the run gives back that share of its progress -- or None if none does.

    Measured against the progress, not as a ratio to the minimum: a converged run's loss wobbling from 0.005 to
    0.01 (×2) is invisible in every figure, while a climb from 0.05 to 0.6 is a spike (both measured on the
    default study's BatchNorm nets). Non-finite values are the divergence test's business and are skipped.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"spike_fraction must lie in (0, 1] (got {fraction})")
    values = [float(v) for v in losses]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    start, running_min = finite[0], math.inf
    for i, loss in enumerate(values):
        if not math.isfinite(loss):
            continue
        if running_min < start and loss - running_min > fraction * (start - running_min):
            return i
        running_min = min(running_min, loss)
    return None


class _ProbeTrainer(BlockTrainer):
    """A BlockTrainer that also records, at every checkpoint, each member's mean loss over the whole training set
    in evaluation mode (``eval_loss``, members × checkpoints; NaN where a member is no longer active)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_loss = np.full((len(self.seeds), len(self.ckpt_steps)), np.nan)
        self._model = build_member(self.spec, self.input_shape, self.outputs, self.seeds[0], self.device, self.dtype)

    def _checkpoint(self, gi, group, rows, active, index) -> None:
        super()._checkpoint(gi, group, rows, active, index)
        state = group.state()
        data = self.phases[-1].data
        for j, row in enumerate(rows):
            if active[j]:
                self._model.load_state_dict({k: v[j] for k, v in state.items()})
                self.eval_loss[row, index] = _training_set_loss(self._model, data, self.loss, self.num_classes)


def _training_set_loss(model: torch.nn.Module, data, loss: str, num_classes: int, chunk: int = 1024) -> float:
    """Mean ``loss`` of ``model`` in evaluation mode over every example of ``data``."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, data.n, chunk):
            idx = torch.arange(start, min(start + chunk, data.n), device=data.y.device)
            z = model(data.inputs(idx)).unsqueeze(0)
            total += float(batch_loss(loss, z, data.y[idx].unsqueeze(0), num_classes)) * len(idx)
    return total / data.n


def probe_learning_rates(spec: dict, dataset_path: str | os.PathLike, candidates: Sequence[float], epochs: int,
                         blowup_factor: float = 2.0, spike_fraction: float | None = None) -> list[dict]:
    """Train the spec's members in memory for ``epochs`` epochs at each candidate rate (largest first).

    Returns one ``{"lr", "diverged", "spike_epoch", "final_loss"}`` per candidate. A candidate diverged when,
    for some member, the loss becomes NaN/inf or an epoch-mean training loss exceeds ``blowup_factor`` × the
    member's initial loss (its loss on its first minibatch before any update). ``spike_epoch`` = the first epoch
    after which some member's training-set loss in evaluation mode spiked (``first_spike`` with ``spike_fraction``
    over the checkpoints at initialisation and after every epoch; None if none did or ``spike_fraction`` is None).
    ``final_loss`` = the members' mean of the last epoch's mean training loss (NaN if diverged). A pretrain phase
    is skipped (the probe is about the main data).
    """
    device = resolve_device(spec.get("device", "auto"))
    probe_spec = {**spec, "pretrain": None, "epochs": int(epochs), "checkpoints": {"every": 1},
                  "stop_at_train_loss": None}
    phases, ds, num_classes, outputs = load_phases(probe_spec, dataset_path, None, device)
    results = []
    for lr in sorted((float(c) for c in candidates), reverse=True):
        initial = _initial_losses(probe_spec, phases[-1], ds.input_shape, outputs, num_classes, device)
        trainer = _ProbeTrainer({**probe_spec, "optimizer": {**spec["optimizer"], "lr": lr}}, phases,
                                ds.input_shape, outputs, num_classes, lr, device, None, "")
        trainer.run()
        losses = trainer.status.train_loss
        with np.errstate(invalid="ignore"):
            blown = (losses > blowup_factor * initial[:, None]).any()
        diverged = bool(trainer.status.diverged.any() or (~np.isfinite(losses)).any() or blown)
        # checkpoint i is taken after epoch i (0 = initialisation)
        spikes = [] if spike_fraction is None else [first_spike(row, spike_fraction) for row in trainer.eval_loss]
        spiked = [e for e in spikes if e is not None]
        spike = min(spiked) if spiked else None
        final = float("nan") if diverged else float(np.mean(losses[:, -1]))
        results.append({"lr": lr, "diverged": diverged, "spike_epoch": spike, "final_loss": final})
        log.info("lr probe %g: diverged=%s spike_epoch=%s final_loss=%s", lr, diverged, spike, final)
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
    candidate counts as diverged when the probe says so, its final loss is not finite, or its loss spiked at
    some epoch (``spike_epoch`` not None: a run that blows up for a while and recovers did diverge). With
    ``tolerance``, also when its final loss exceeds (1 + tolerance) × the final loss of the smallest non-diverged
    candidate (the most cautious rate): l_MSE on the softmax is bounded by 2, so a rate that throws training off never
    "blows up" to a large loss -- it ends worse than a cautious rate does (measured at default scale: CNN,
    SGDm, l_MSE: 1.16 at 2^-1 against 0.67 at 2^-6).
    """
    if not probe_table:
        raise ValueError("lr probe: empty probe table (no candidate rates were tried)")
    ok = [row for row in probe_table
          if not row["diverged"] and row.get("spike_epoch") is None
          and row.get("final_loss") is not None and math.isfinite(row["final_loss"])]
    if ok and tolerance is not None:
        cautious = min(ok, key=lambda row: row["lr"])["final_loss"]
        ok = [row for row in ok if row["final_loss"] <= (1.0 + tolerance) * cautious]
    if not ok:
        tried = ", ".join(f"{row['lr']:g}" for row in probe_table)
        raise ValueError(f"lr probe: every candidate rate diverged or spiked ({tried}); add smaller lr_candidates")
    return float(max(row["lr"] for row in ok))


def lr_probe(spec: dict, dataset_path: str, out_path: str, epochs: int, seed: int,
             tolerance: float | None = None, spike_fraction: float | None = None) -> dict:
    """Run the engine's probe for every candidate of ``spec['optimizer']['lr_candidates']`` and record the
    chosen rate with the whole probe table (read by the train rule as ``lr_path``)."""
    optimizer = spec["optimizer"]
    candidates = optimizer.get("lr_candidates")
    if not candidates:
        raise ValueError(f"optimizers.{optimizer['name']}: lr is 'probe' but lr_candidates is missing")
    probe_spec = {**spec, "seeds": [int(seed)]}
    table = [dict(row) for row in probe_learning_rates(probe_spec, dataset_path, list(candidates), int(epochs),
                                                       spike_fraction=spike_fraction)]
    chosen = choose_learning_rate(table, tolerance)
    log.info("lr probe %s: chose %g from %s", optimizer["name"], chosen, table)
    result = {"lr": chosen, "rule": "largest candidate that neither diverges nor spikes (universality §4)",
              "tolerance": tolerance, "spike_fraction": spike_fraction, "candidates": list(candidates),
              "epochs": int(epochs), "seed": int(seed), "probe": table}
    write_json(out_path, result)
    return result
