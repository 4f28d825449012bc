"""Training engine: one job trains one block of seeds of one configuration and writes ``checkpoints.h5``.

Entry point: ``train_run(spec, dataset_path, out_path, work_dir, pretrain_path=None, lr_path=None)`` (rule
``train``), ``spec`` as built by ``lossatlas.config.run_spec`` (keys documented in schemas/recipe.schema.yaml).

Members. Each seed s of the block is one member with its own initial weights (``models.initialize`` with a
generator seeded from (s, "init")) and its own minibatch order (epoch e of phase p uses the permutation drawn
from (s, "data", p, e), so the order is a pure function of the seed and resuming needs no RNG state). Members
train in one of three ways (``choose_stacking``; every optimizer here is elementwise, so one optimizer over
stacked tensors equals one optimizer per member):
- ``wide``: the members as channel groups of one wide network (``lossatlas.wide``: grouped convolutions,
  batched matmuls, one BatchNorm over all members' channels), for every model built from the registry's
  usual layers;
- ``vmap``: stacked with ``torch.func`` (``stack_module_state`` + ``functional_call`` + ``vmap``, BatchNorm
  buffers stacked too), for other models (DenseNet's concatenations);
- ``loop``: one after another.
``vectorize``: ``never`` = loop; ``always`` = wide, else vmap; ``auto`` = loop for a single member or dropout
other than element-wise ``nn.Dropout``, else wide, else vmap on CUDA or for models without convolutions, else
loop (on CPU the vmap rule for convolutions is no faster than a loop; the wide layout's channels_last grouped
convolutions are: benchmarks/ensemble_training.py). A member trained stacked equals the same seed trained
alone up to float summation order (grouped or batched vs plain kernels; tested < 1e-12 after 2 epochs in
float64, and per architecture family in tests/test_wide.py). Dropout: every ``nn.Dropout`` trains as a
``MemberDropout`` whose masks ``MemberMasks`` draws from the member's own generator seeded from (s,
"dropout"), stacked or alone alike, so dropout does not break that equality (in a loop the member is
byte-identical).

Groups and worker processes. The block is trained as groups: one per member in a loop; stacked, one contiguous
chunk of the members per worker process. On CPU a job holding T cores (``train_run(threads=T)``) runs
min(T, groups) single-threaded worker processes (``python -m lossatlas.train_worker``), each claiming the next
untrained group whenever it is free: one process with T threads trains small models far slower than T
processes of one thread each (per-op thread synchronisation dominates; benchmarks/ensemble_training.py). On
CUDA, or with T = 1, everything runs in the job's process (``workers`` > 1 on CUDA is an error); on CUDA a
stacked block is split into as few groups as keep each within half the GPU's memory
(``members_per_cuda_group``). A member's arithmetic is the same in any grouping (measured: byte-identical in
float64 and float32 on this CPU), so the result does not depend on T beyond what T does to torch's own kernels.

Data. The whole dataset lives as one tensor on the device; a batch is ``x[perm[k*B:(k+1)*B]]``. uint8 images
become float in [0, 1] and are standardised per channel with the dataset's ``channel_mean``/``channel_std``.
Every batch is full except the last of an epoch (size n mod B), which is dropped only when it would hold a single
example (BatchNorm cannot normalise one example).

Losses, optimizers and learning-rate schedules: ``lossatlas.optim``. ``lr: probe`` reads ``{"lr": value}`` from
``lr_path`` (written by ``lossatlas.lr_probe``).

Phases. With ``pretrain: {dataset, epochs}`` the members first train on the pretrain dataset (normalized_loss_
linear.txt: corrupted labels), then on the recipe's dataset. Choice: the optimizer state (momentum, Adam moments)
and the schedule restart at the phase change; epochs, steps and checkpoints count the main phase only, so
checkpoint 0 ("epoch 0") is the state after pretraining. ``train_log/pretrain_loss`` keeps the first phase.

Checkpoints (``checkpoint_steps``): epoch 0 always, every ``every`` epochs, the last epoch, ``per_epoch`` evenly
spaced extra points inside each of the first ``within_epochs`` epochs, ``log_spaced`` points log-spaced over the
steps, and explicit ``epochs``. Each records epoch (fractional inside an epoch), step and examples seen.

Stopping and divergence. ``stop_at_train_loss``: at every checkpoint that ends an epoch, a member whose mean
training loss over that epoch is <= the target stops; that checkpoint is its last valid one. A member whose
loss (or weights) become NaN/inf is marked diverged at the next epoch end or checkpoint (epoch 0 if it diverged
while pretraining), stops, and its later checkpoints are invalid. Invalid checkpoints hold NaN weights (0 for
integer buffers): nothing looks like data.
The job succeeds; ``status/*`` and ``checkpoints/valid`` say what happened.

Resume (files: ``lossatlas.resume``). Each group's training state (weights, optimizer, RNG, position, loss
accumulators, its members' status) is saved atomically to ``work_dir/state_g<group>.pt`` at epoch ends and
checkpoints once ``LOSSATLAS_STATE_EVERY_S`` seconds (default 60) have passed since the last save, and on
SIGTERM (SLURM time limit / preemption; the job passes it on to its workers), after which the job exits with
status 143 so a retry resumes. A finished group leaves ``work_dir/done_g<group>.pt`` (its status) and is not
trained again. Checkpoint weights go to ``work_dir/ckpt/`` as they are taken. ``work_dir/key`` (hash of the spec,
the dataset hashes, the learning rate, the grouping, the device type with its numerics settings and the torch
version) must match, or the whole work_dir is discarded. A failed worker stops the others (they save their
state) and the job fails naming it; workers end when their job is killed (``lossatlas.workers``).
After ``checkpoints.h5`` is written (atomically, in a fixed order, so an interrupted-and-resumed run gives the
same file as an uninterrupted one), ``work_dir`` is removed.

``checkpoints.h5`` (M members, C checkpoints, E epochs):
- root attrs: ``spec`` (JSON), ``schema_version``, ``task``, ``num_classes`` (0 for regression), ``num_outputs``
  (model outputs: K, or the regression target width), ``input_shape`` (JSON), ``dataset_hash``, ``lr`` (the rate
  used), ``vectorized`` (bool), ``stacking`` (wide | vmap | loop), ``workers``, ``torch_version``, ``numerics``
  (JSON: the device's determinism and TF32 settings, ``lossatlas.devices.configure_numerics``);
- ``members`` (M,) int64 seeds;
- ``checkpoints/epoch`` (C,) float64, ``checkpoints/step`` (C,) int64, ``checkpoints/examples_seen`` (C,) int64,
  ``checkpoints/valid`` (M, C) bool;
- ``weights/<state_dict key>`` (M, C, *shape) in the training dtype (buffers included), chunked per member;
- ``status/diverged`` (M,) bool, ``status/diverged_epoch`` (M,) float64 (NaN if not), ``status/stopped_epoch``
  (M,) float64 (epoch at which stop_at_train_loss stopped the member, NaN if not);
- ``train_log/loss`` (M, E) float64 mean training loss per epoch (NaN after stopping), ``train_log/lr`` (E,),
  ``train_log/pretrain_loss`` (M, E_pretrain) when there is a pretrain phase.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lossatlas.devices import (
    DeviceData,
    configure_numerics,
    derive_seed,
    num_outputs,
    resolve_device,
    to_device_data,
    torch_dtype,
)
from lossatlas.dropout import MemberMasks, use_member_dropout
from lossatlas.io import H5Writer, atomic_path, read_json
from lossatlas.models import build_model, channels_last, has_convolution, initialize, nondeterministic_on_cuda
from lossatlas.optim import LOSSES, Optimizer, batch_loss, learning_rate, make_optimizer
from lossatlas.progress import Progress
from lossatlas.resume import STATE_EVERY_S_ENV, Position, Preempted, Sigterm, WorkDir, rng_state, set_rng_state
from lossatlas.wide import (
    from_wide_output,
    kernel_l2_penalty,
    kernel_weights,
    member_view,
    to_wide,
    unsupported_layers,
    widen,
)
from lossatlas.workers import run_workers

log = logging.getLogger("lossatlas.training")

SCHEMA_VERSION = 1


# ------------------------------------------------------------------------------------------------- schedule


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Minibatches per epoch: ceil(n / B), without a final batch of a single example (BatchNorm needs two)."""
    if n < 1:
        raise ValueError("the training set is empty")
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and full == 0) else 0)


def checkpoint_steps(schedule: dict | None, steps_per_epoch: int, epochs: int) -> list[int]:
    """The sorted global steps (main phase) at which checkpoints are taken; step 0 (= initialisation) always.

    ``schedule`` keys (schemas/recipe.schema.yaml ``checkpoints``): ``every`` k epochs (the last epoch always),
    ``within_epochs`` E and ``per_epoch`` P (P evenly spaced extra points inside each of the first E epochs, at
    round(j·S/(P+1)) steps into the epoch), ``log_spaced`` L (L points log-spaced over steps 1..total, rounded),
    ``epochs`` (explicit epochs).
    """
    schedule = dict(schedule or {})
    spe, total = steps_per_epoch, steps_per_epoch * epochs
    steps = {0, total}
    every = int(schedule.get("every", 1) or 0)
    if every > 0:
        steps.update(e * spe for e in range(every, epochs + 1, every))
    per_epoch = int(schedule.get("per_epoch", 0) or 0)
    for e in range(min(int(schedule.get("within_epochs", 0) or 0), epochs)):
        steps.update(e * spe + int(round(j * spe / (per_epoch + 1))) for j in range(1, per_epoch + 1))
    n_log = int(schedule.get("log_spaced", 0) or 0)
    if n_log > 0 and total > 0:
        steps.update(int(round(v)) for v in np.geomspace(1, total, n_log))
    for e in schedule.get("epochs", []) or []:
        if e > epochs:
            raise ValueError(f"checkpoints.epochs: epoch {e} is beyond the run's {epochs} epochs")
        steps.add(int(e) * spe)
    return sorted(s for s in steps if 0 <= s <= total)


# ---------------------------------------------------------------------------------------------------- members


def build_member(spec: dict, input_shape: Sequence[int], outputs: int, seed: int, device: torch.device,
                 dtype: torch.dtype) -> nn.Module:
    """One member's network at initialisation: a pure function of the spec and the seed."""
    arch = dict(spec["architecture"])
    model = build_model(arch, tuple(input_shape), outputs, dropout=bool(spec.get("dropout", True)))
    model = model.to(dtype)
    generator = torch.Generator().manual_seed(derive_seed(seed, "init"))
    initialize(model, spec.get("init") or {"scheme": "default"}, generator)
    return model.to(device)


def has_unstackable_dropout(model: nn.Module) -> bool:
    """Active dropout other than element-wise ``nn.Dropout`` (which ``MemberDropout`` replaces): its masks
    would come from a shared RNG, so a stacked member would not equal the seed alone."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and type(m) is not nn.Dropout and m.p > 0
               for m in model.modules())


def choose_stacking(mode: str, model: nn.Module, members: int, device: torch.device) -> str:
    """How a block's members train: ``"wide"`` (one wide network, ``lossatlas.wide``), ``"vmap"`` (stacked with
    ``torch.func``) or ``"loop"`` (one after another); see the module docstring for the ``auto`` rule."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"vectorize must be auto | always | never, got {mode!r}")
    if mode == "never" or members < 2:
        return "loop"
    widens = not unsupported_layers(model)
    if mode == "always":
        return "wide" if widens else "vmap"
    if has_unstackable_dropout(model):
        return "loop"
    if widens:
        return "wide"
    return "vmap" if device.type == "cuda" or not has_convolution(model) else "loop"


def members_per_cuda_group(model: nn.Module, input_shape: Sequence[int], batch_size: int, budget_bytes: int) -> int:
    """How many members one stacked group may hold within ``budget_bytes`` of GPU memory: a member needs its
    weights, gradient and up to two optimizer buffers (4 × its parameter bytes) and its activations (2 × the
    outputs of its layers for one batch, measured by a forward pass on the meta device: kept for backward, and
    their gradients)."""
    meta = copy.deepcopy(model).to("meta").eval()
    activations = 0

    def count(_module: nn.Module, _args: tuple, out: Any) -> None:
        nonlocal activations
        if isinstance(out, torch.Tensor):
            activations += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(count) for m in meta.modules() if not list(m.children())]
    first = next(model.parameters())
    with torch.no_grad():
        meta(torch.empty((batch_size, *input_shape), device="meta", dtype=first.dtype))
    for h in hooks:
        h.remove()
    member = 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + 2 * activations
    return max(1, int(budget_bytes // member))


def member_groups(members: int, vectorized: bool, workers: int) -> list[list[int]]:
    """The block's groups (the unit one process trains at a time): stacked, ``workers`` contiguous chunks of
    near-equal size (one per worker process); otherwise one group per member."""
    if not vectorized:
        return [[m] for m in range(members)]
    return [c.tolist() for c in np.array_split(np.arange(members), max(1, min(workers, members)))]



class SingleGroup:
    """One member trained on its own (the plain module; channels_last for convolutional nets)."""

    def __init__(self, model: nn.Module, seed: int):
        self.channels_last = channels_last(model)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        first = next(self.model.parameters())
        self.masks = MemberMasks(self.model, [seed], first.device, first.dtype)
        self.dropouts = use_member_dropout(self.model)
        self.size = 1

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def kernel_weights(self) -> list[torch.Tensor]:
        return kernel_weights(self.model)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        x = xb[0]
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        masks = self.masks.draw(tuple(x.shape)) if self.model.training else {}
        for name, m in self.dropouts.items():
            m.mask = masks[name][0] if masks else None
        return self.model(x).unsqueeze(0)

    def train(self) -> None:
        self.model.train()

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().unsqueeze(0) for k, v in self.model.state_dict().items()}

    def load_state(self, stacked: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict({k: v[0] for k, v in stacked.items()})


class StackedGroup:
    """Members trained as one stacked model (torch.func), parameters and buffers stacked on a leading axis."""

    def __init__(self, models: list[nn.Module], seeds: Sequence[int]):
        import copy

        from torch.func import functional_call, stack_module_state, vmap

        self.size = len(models)
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.keys = list(models[0].state_dict().keys())
        first = next(models[0].parameters())
        self.masks = MemberMasks(models[0], seeds, first.device, first.dtype)
        self.base = copy.deepcopy(models[0]).to("meta")
        kernels = {id(w) for w in kernel_weights(models[0])}
        self.kernel_names = [k for k, v in models[0].named_parameters() if id(v) in kernels]
        self.dropouts = use_member_dropout(self.base)
        self.base.train()

        def call(p: dict, b: dict, masks: dict, x: torch.Tensor) -> torch.Tensor:
            for name, m in self.dropouts.items():
                m.mask = masks.get(name)  # this member's mask (vmap hands each call its slice)
            return functional_call(self.base, (p, b), (x,))

        # no randomness inside: dropout masks come in as inputs, drawn from each member's own generator
        self._forward = vmap(call, randomness="error")

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def kernel_weights(self) -> list[torch.Tensor]:
        return [self.params[k] for k in self.kernel_names]

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        masks = self.masks.draw(tuple(xb.shape[1:])) if self.base.training else {}
        return self._forward(self.params, self.buffers, masks, xb)

    def train(self) -> None:
        self.base.train()

    def state(self) -> dict[str, torch.Tensor]:
        merged = {**self.params, **self.buffers}
        return {k: merged[k].detach() for k in self.keys}

    def load_state(self, stacked: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in stacked.items():
                (self.params[k] if k in self.params else self.buffers[k]).copy_(v)


class WideGroup:
    """Members trained as one wide network (``lossatlas.wide``): grouped convolutions and batched matmuls."""

    def __init__(self, models: list[nn.Module], seeds: Sequence[int], input_shape: Sequence[int]):
        self.size = len(models)
        # image inputs of a convolutional net travel in the image layout; everything else starts flat
        self.image = len(input_shape) == 3 and has_convolution(models[0])
        first = next(models[0].parameters())
        self.masks = MemberMasks(models[0], seeds, first.device, first.dtype)
        self.model = widen(models)
        if self.image:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dropouts = use_member_dropout(self.model)
        self.shapes = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
        self.tensors = self.model.state_dict(keep_vars=True)  # the wide parameters and buffers themselves
        if list(self.tensors) != list(self.shapes):
            raise RuntimeError(f"wide model keys {list(self.tensors)} differ from the member's {list(self.shapes)}")

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def kernel_weights(self) -> list[torch.Tensor]:
        return kernel_weights(self.model)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        masks = self.masks.draw(tuple(xb.shape[1:])) if self.model.training else {}
        for name, m in self.dropouts.items():
            m.mask = to_wide(masks[name], self.image) if masks else None
        return from_wide_output(self.model(to_wide(xb, self.image)))

    def train(self) -> None:
        self.model.train()

    def state(self) -> dict[str, torch.Tensor]:
        return {k: member_view(t.detach(), self.size, self.shapes[k]).contiguous()
                for k, t in self.tensors.items()}

    def load_state(self, stacked: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in stacked.items():
                member_view(self.tensors[k], self.size, self.shapes[k]).copy_(v)


# ------------------------------------------------------------------------------------------------- the loop


@dataclass
class Phase:
    name: str  # "pretrain" | "main"
    data: DeviceData
    epochs: int
    batch_size: int


@dataclass
class BlockStatus:
    """Block-wide per-member records, filled group by group (saved in the resume state)."""

    members: int
    epochs: int
    pretrain_epochs: int
    checkpoints: int
    train_loss: np.ndarray = field(init=False)
    pretrain_loss: np.ndarray = field(init=False)
    valid: np.ndarray = field(init=False)
    diverged: np.ndarray = field(init=False)
    diverged_epoch: np.ndarray = field(init=False)
    stopped_epoch: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.train_loss = np.full((self.members, self.epochs), np.nan)
        self.pretrain_loss = np.full((self.members, self.pretrain_epochs), np.nan)
        self.valid = np.zeros((self.members, self.checkpoints), dtype=bool)
        self.diverged = np.zeros(self.members, dtype=bool)
        self.diverged_epoch = np.full(self.members, np.nan)
        self.stopped_epoch = np.full(self.members, np.nan)

    FIELDS = ("train_loss", "pretrain_loss", "valid", "diverged", "diverged_epoch", "stopped_epoch")

    def rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The records of members ``rows`` (what a group saves)."""
        return {k: getattr(self, k)[rows].copy() for k in self.FIELDS}

    def set_rows(self, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
        for k in self.FIELDS:
            getattr(self, k)[rows] = values[k]



class BlockTrainer:
    """Trains the members of one block group by group; see the module docstring for the semantics."""

    def __init__(self, spec: dict, phases: list[Phase], input_shape: Sequence[int], outputs: int, num_classes: int,
                 lr: float, device: torch.device, work_dir: Path | None, key: str, workers: int = 1):
        self.spec = spec
        self.seeds = [int(s) for s in spec["seeds"]]
        self.phases = phases
        self.input_shape = tuple(input_shape)
        self.outputs = outputs
        self.num_classes = num_classes
        self.lr = lr
        self.device = device
        self.dtype = torch_dtype(spec.get("dtype", "float32"))
        self.batch_size = int(spec.get("batch_size", 64))
        self.loss = spec.get("loss", "ce")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: unknown {self.loss!r}; known: {LOSSES}")
        if num_classes == 0 and self.loss != "mse_raw":
            raise ValueError(f"loss {self.loss!r} needs class labels; regression datasets train with mse_raw")
        self.stop_at = spec.get("stop_at_train_loss")
        main = phases[-1]
        self.spe = steps_per_epoch(main.data.n, self.batch_size)
        self.ckpt_steps = checkpoint_steps(spec.get("checkpoints"), self.spe, main.epochs)
        pre_epochs = phases[0].epochs if len(phases) > 1 else 0
        self.status = BlockStatus(len(self.seeds), main.epochs, pre_epochs, len(self.ckpt_steps))
        probe = build_member(spec, self.input_shape, outputs, self.seeds[0], device, self.dtype)
        # before the first CUDA kernel runs (cuBLAS reads its workspace setting when it starts)
        self.numerics = configure_numerics(device, bool(spec.get("tf32", False)), nondeterministic_on_cuda(probe))
        self.stacking = choose_stacking(spec.get("vectorize", "auto"), probe, len(self.seeds), device)
        self.vectorized = self.stacking != "loop"
        chunks = workers
        if device.type == "cuda" and self.vectorized:
            # half the GPU's memory per stacked group: the rest is the data, the allocator's cache and headroom
            budget = torch.cuda.get_device_properties(device).total_memory // 2
            per_group = members_per_cuda_group(probe, self.input_shape, self.batch_size, budget)
            chunks = max(workers, math.ceil(len(self.seeds) / per_group))
        self.groups = member_groups(len(self.seeds), self.vectorized, chunks)
        self.workers = max(1, min(workers, len(self.groups)))
        # the grouping (stacked chunks), the device, its settings and torch's kernels change the arithmetic: a
        # state saved under other ones is not resumed
        self.key = hashlib.sha256(json.dumps([key, self.groups, self.stacking, self.numerics, torch.__version__],
                                             sort_keys=True).encode()).hexdigest()
        self.files = None if work_dir is None else WorkDir(work_dir, self.key, device)
        self.state_every_s = float(os.environ.get(STATE_EVERY_S_ENV, "60"))

    # -- checkpoint table
    def checkpoint_table(self) -> dict[str, np.ndarray]:
        steps = np.asarray(self.ckpt_steps, dtype=np.int64)
        n, spe, b = self.phases[-1].data.n, self.spe, self.batch_size
        epochs_done, within = np.divmod(steps, spe)
        per_epoch = min(spe * b, n)  # n, or n - 1 when a final single-example batch is dropped
        examples = epochs_done * per_epoch + np.minimum(within * b, per_epoch)
        return {"epoch": steps / spe, "step": steps, "examples_seen": examples.astype(np.int64)}

    # -- files in work_dir (none for a run in memory)
    def _save_state(self, pos: Position, group: Any, optimizer: Optimizer, acc: dict) -> None:
        """Save the resume state of group ``pos.group``."""
        if self.files is None:
            return
        rows = np.asarray(self.groups[pos.group])
        opt = optimizer.state_dict()
        meta = {"position": pos.__dict__.copy(), "step": opt["step"], "lr": opt["lr"], "count": acc["count"]}
        status = {k: torch.from_numpy(v) for k, v in self.status.rows(rows).items()}
        self.files.save_state(pos.group, meta, {
            "weights": {k: v.detach().cpu() for k, v in group.state().items()}, "optimizer": opt["state"],
            "rng": rng_state(self.device, group.masks), "acc_sum": acc["sum"].cpu(), "status": status})
        self._last_save = time.monotonic()

    def _load_done(self, group: int) -> bool:
        """Fill ``status`` from the group's finished record; False if it has none."""
        status = None if self.files is None else self.files.load_done(group)
        if status is None:
            return False
        self.status.set_rows(np.asarray(self.groups[group]), {k: v.numpy() for k, v in status.items()})
        return True

    # -- training
    def open_work_dir(self) -> None:
        """Start or resume: keep the work_dir only if it belongs to this spec, data, rate and grouping."""
        if self.files is not None:
            self.files.open()

    def run(self) -> None:
        """Train every group in this process (``status`` is filled as they finish or are found finished)."""
        self.open_work_dir()
        self.train_groups(range(len(self.groups)))

    def train_groups(self, indices: Iterable[int]) -> None:
        """Train the groups ``indices`` in this process: a finished group is skipped, a started one resumes."""
        self._last_save = time.monotonic()
        with Sigterm() as sigterm:
            for gi in indices:
                if self._load_done(gi):
                    log.info("resuming at the end of group %d (seeds %s): already trained", gi,
                             [self.seeds[m] for m in self.groups[gi]])
                    continue
                state = None if self.files is None else self.files.load_state(gi)
                if state is not None:
                    log.info("resuming at %s", state[0]["position"])
                self._train_group(gi, state, sigterm)
                if self.files is not None:
                    rows = self.status.rows(np.asarray(self.groups[gi]))
                    self.files.save_done(gi, {k: torch.from_numpy(v) for k, v in rows.items()})

    def collect(self) -> None:
        """Read every group's finished record into ``status`` (after the groups ran in worker processes)."""
        if self.files is None:
            return
        for gi, members in enumerate(self.groups):
            if not self._load_done(gi):
                raise RuntimeError(f"{self.files.path}: the group of seeds {[self.seeds[m] for m in members]} "
                                   "has no finished record (a worker ended without training it)")

    def _make_group(self, members: list[int]) -> Any:
        models = [build_member(self.spec, self.input_shape, self.outputs, self.seeds[m], self.device, self.dtype)
                  for m in members]
        seeds = [self.seeds[m] for m in members]
        if self.stacking == "wide":
            return WideGroup(models, seeds, self.input_shape)
        if self.stacking == "vmap":
            return StackedGroup(models, seeds)
        return SingleGroup(models[0], seeds[0])

    def _train_group(self, gi: int, state: tuple[dict, dict] | None, sigterm: Sigterm) -> None:
        members = self.groups[gi]
        group = self._make_group(members)
        group.train()
        opt_cfg = self.spec["optimizer"]
        g = len(members)
        rows = np.asarray(members)
        dropout_seed = derive_seed(*(self.seeds[m] for m in members), "dropout")
        torch.manual_seed(dropout_seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(dropout_seed)
        pos = Position(group=gi)
        active = np.ones(g, dtype=bool)
        acc = {"sum": torch.zeros(g, dtype=torch.float64, device=self.device), "count": 0}
        optimizer = make_optimizer(group.parameters(), opt_cfg, self.lr)
        kernel_l2 = float(opt_cfg.get("kernel_l2", 0.0) or 0.0)
        if state is not None:
            meta, tensors = state
            self.status.set_rows(rows, {k: v.numpy() for k, v in tensors["status"].items()})
            pos = Position(**meta["position"])
            group.load_state(tensors["weights"])
            optimizer.load_state_dict({"step": meta["step"], "lr": meta["lr"], "state": tensors["optimizer"]})
            set_rng_state(tensors["rng"], self.device, group.masks)
            acc = {"sum": tensors["acc_sum"].to(self.device), "count": int(meta["count"])}
        active = ~(self.status.diverged[rows] | ~np.isnan(self.status.stopped_epoch[rows]))
        phase_index_start = pos.phase
        for pi in range(phase_index_start, len(self.phases)):
            phase = self.phases[pi]
            is_main = pi == len(self.phases) - 1
            if pi != pos.phase:  # a new phase: fresh optimizer state, schedule restarts
                pos = Position(group=gi, phase=pi)
                optimizer = make_optimizer(group.parameters(), opt_cfg, self.lr)
                acc = {"sum": torch.zeros(g, dtype=torch.float64, device=self.device), "count": 0}
            if is_main and pos.step == 0 and pos.next_checkpoint == 0 and pos.step_in_epoch == 0 and pos.epoch == 0:
                self._checkpoint(gi, group, rows, active, 0)
                pos.next_checkpoint = 1
            spe = steps_per_epoch(phase.data.n, phase.batch_size)
            progress = Progress(f"train group {gi} {phase.name}", phase.epochs, done=pos.epoch)
            for epoch in range(pos.epoch, phase.epochs):
                if not active.any():
                    break
                optimizer.lr = learning_rate(opt_cfg, self.lr, epoch)
                perm = torch.stack([
                    torch.randperm(phase.data.n, generator=torch.Generator().manual_seed(
                        derive_seed(self.seeds[m], "data", phase.name, epoch)))
                    for m in members]).to(self.device)
                for k in range(pos.step_in_epoch, spe):
                    index = perm[:, k * phase.batch_size:(k + 1) * phase.batch_size]
                    xb = phase.data.inputs(index)
                    yb = phase.data.y[index]
                    losses = batch_loss(self.loss, group.forward(xb), yb, self.num_classes)
                    optimizer.zero_grad()
                    objective = losses.sum()
                    if kernel_l2:  # logged losses, stopping and checkpoints stay on the data loss
                        objective = objective + kernel_l2_penalty(group.kernel_weights(), kernel_l2)
                    objective.backward()
                    optimizer.step()
                    acc["sum"] += losses.detach().to(torch.float64) * index.shape[1]
                    acc["count"] += int(index.shape[1])
                    pos.step_in_epoch = k + 1
                    if is_main:
                        pos.step += 1
                        if (k + 1 < spe and pos.next_checkpoint < len(self.ckpt_steps)
                                and self.ckpt_steps[pos.next_checkpoint] == pos.step):
                            active = self._check_finite(group, rows, active, acc, pos.step / self.spe)
                            self._checkpoint(gi, group, rows, active, pos.next_checkpoint)
                            pos.next_checkpoint += 1
                            self._maybe_save(pos, group, optimizer, acc)
                    if sigterm.received:
                        self._save_state(pos, group, optimizer, acc)
                        raise Preempted()
                # epoch end
                mean_loss = (acc["sum"] / max(acc["count"], 1)).cpu().numpy()
                checkpoint_now = (is_main and pos.next_checkpoint < len(self.ckpt_steps)
                                  and self.ckpt_steps[pos.next_checkpoint] == pos.step)
                active = self._check_finite(group, rows, active, acc, float(epoch + 1) if is_main else 0.0,
                                            weights=checkpoint_now)
                logged = np.where(active, mean_loss, np.nan)
                progress.update(epoch + 1, float(np.nanmean(logged)) if active.any() else None)
                if is_main:
                    self.status.train_loss[rows, epoch] = logged
                else:
                    self.status.pretrain_loss[rows, epoch] = logged
                acc = {"sum": torch.zeros(g, dtype=torch.float64, device=self.device), "count": 0}
                pos.epoch, pos.step_in_epoch = epoch + 1, 0
                if checkpoint_now:
                    self._checkpoint(gi, group, rows, active, pos.next_checkpoint)
                    pos.next_checkpoint += 1
                    if self.stop_at is not None:
                        stop = active & (logged <= float(self.stop_at))
                        self.status.stopped_epoch[rows[stop]] = float(epoch + 1)
                        active = active & ~stop
                self._maybe_save(pos, group, optimizer, acc)
                if sigterm.received:
                    self._save_state(pos, group, optimizer, acc)
                    raise Preempted()
            if not active.any() and not is_main:
                break

    def _check_finite(self, group: Any, rows: np.ndarray, active: np.ndarray, acc: dict, epoch: float,
                      weights: bool = True) -> np.ndarray:
        """Mark members whose loss (or, with ``weights``, weights) are NaN/inf as diverged (at ``epoch``); returns
        the new mask. Weights are checked at checkpoints only: NaN weights make the loss NaN anyway, and checking
        every tensor every epoch costs a fifth of a long full-batch run."""
        finite = torch.isfinite(acc["sum"])
        for v in group.state().values() if weights else ():
            if v.is_floating_point():
                finite &= torch.isfinite(v.reshape(v.shape[0], -1)).all(dim=1)
        bad = active & ~finite.cpu().numpy()
        if bad.any():
            log.warning("members %s diverged at epoch %.3f", [self.seeds[r] for r in rows[bad]], epoch)
            self.status.diverged[rows[bad]] = True
            self.status.diverged_epoch[rows[bad]] = epoch
        return active & ~bad

    def _checkpoint(self, gi: int, group: Any, rows: np.ndarray, active: np.ndarray, index: int) -> None:
        self.status.valid[rows, index] = active
        if self.files is None or not active.any():
            return
        self.files.save_checkpoint(gi, index, {k: v.detach().cpu().clone() for k, v in group.state().items()})

    def _maybe_save(self, pos: Position, group: Any, optimizer: Optimizer, acc: dict) -> None:
        if time.monotonic() - self._last_save >= self.state_every_s:
            self._save_state(pos, group, optimizer, acc)

    # -- output
    def write(self, out_path: str | os.PathLike, attrs: dict[str, Any]) -> None:
        """Assemble ``checkpoints.h5`` from the checkpoint files, atomically and in a fixed order."""
        import h5py

        m, c = len(self.seeds), len(self.ckpt_steps)
        template = build_member(self.spec, self.input_shape, self.outputs, self.seeds[0], torch.device("cpu"),
                                self.dtype).state_dict()
        with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
            for k in sorted(attrs):
                f.attrs[k] = attrs[k]
            put = H5Writer(f)
            put("members", np.asarray(self.seeds, dtype=np.int64))
            for k, v in self.checkpoint_table().items():
                put(f"checkpoints/{k}", v)
            put("checkpoints/valid", self.status.valid)
            dsets = {}
            for key, t in template.items():
                shape = tuple(t.shape)
                per_ckpt = max(1, int(np.prod(shape, dtype=np.int64)) * t.element_size())
                cc = int(max(1, min(c, (1 << 20) // per_ckpt)))
                np_dtype = t.numpy().dtype
                fill = np.nan if t.is_floating_point() else 0
                dsets[key] = put(f"weights/{key}", None, shape=(m, c, *shape), dtype=np_dtype,
                                 chunks=(1, cc, *shape), fillvalue=fill)
            for gi, members in enumerate(self.groups):
                rows = np.asarray(members)
                for ci in range(c):
                    valid = self.status.valid[rows, ci]
                    if not valid.any():
                        continue
                    assert self.files is not None
                    weights = self.files.load_checkpoint(gi, ci)
                    for key, ds in dsets.items():
                        arr = weights[key].numpy()
                        for j, r in enumerate(rows):
                            if valid[j]:
                                ds[r, ci] = arr[j]
            put("status/diverged", self.status.diverged)
            put("status/diverged_epoch", self.status.diverged_epoch)
            put("status/stopped_epoch", self.status.stopped_epoch)
            put("train_log/loss", self.status.train_loss)
            rates = [learning_rate(self.spec["optimizer"], self.lr, e) for e in range(self.phases[-1].epochs)]
            put("train_log/lr", np.asarray(rates, dtype=np.float64))
            if len(self.phases) > 1:
                put("train_log/pretrain_loss", self.status.pretrain_loss)


# ----------------------------------------------------------------------------------------------- public API


def _resolve_lr(optimizer: dict, lr_path: str | os.PathLike | None) -> float:
    lr = optimizer["lr"]
    if lr == "probe":
        if lr_path is None:
            raise ValueError("optimizer.lr is 'probe' but no lr file was given (the lr_probe rule writes it)")
        value = read_json(lr_path).get("lr")
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{lr_path}: expected {{\"lr\": <positive number>}}, got {value!r}")
        return float(value)
    return float(lr)


def _load(path: str | os.PathLike) -> Any:
    from lossatlas.datasets import load_dataset

    return load_dataset(path, verify=True)  # a tampered or corrupted dataset must not train silently


def _dataset_hash(ds: Any) -> str:
    return str(ds.attrs.get("content_hash", ""))


def load_phases(spec: dict, dataset_path: str | os.PathLike, pretrain_path: str | os.PathLike | None,
             device: torch.device) -> tuple[list[Phase], Any, int, int]:
    dtype = torch_dtype(spec.get("dtype", "float32"))
    ds = _load(dataset_path)
    task = ds.attrs.get("task", "classification")
    num_classes = int(ds.attrs.get("num_classes", 0)) if task == "classification" else 0
    outputs = num_outputs(task, num_classes, ds.y_train)
    phases = []
    if spec.get("pretrain"):
        if pretrain_path is None:
            raise ValueError("spec.pretrain is set but no pretrain dataset path was given")
        pre = _load(pretrain_path)
        if tuple(pre.input_shape) != tuple(ds.input_shape) or pre.num_classes != ds.num_classes:
            raise ValueError(f"pretrain dataset {pretrain_path}: input shape / classes differ from {dataset_path}")
        phases.append(Phase("pretrain", to_device_data(pre.x_train, pre.y_train, pre.attrs, device, dtype),
                            int(spec["pretrain"]["epochs"]),
                            int(spec["pretrain"].get("batch_size") or spec.get("batch_size", 64))))
        ds.attrs["_pretrain_hash"] = _dataset_hash(pre)
    phases.append(Phase("main", to_device_data(ds.x_train, ds.y_train, ds.attrs, device, dtype),
                        int(spec.get("epochs", 10)), int(spec.get("batch_size", 64))))
    return phases, ds, num_classes, outputs


def run_key(spec: dict, ds: Any, lr: float) -> str:
    return hashlib.sha256(json.dumps([spec, _dataset_hash(ds), ds.attrs.get("_pretrain_hash"), lr],
                                     sort_keys=True, default=str).encode()).hexdigest()


def train_run(spec: dict, dataset_path: str | os.PathLike, out_path: str | os.PathLike,
              work_dir: str | os.PathLike, pretrain_path: str | os.PathLike | None = None,
              lr_path: str | os.PathLike | None = None, threads: int = 1, workers: int | None = None) -> None:
    """Train the block of seeds ``spec`` describes and write ``out_path`` (checkpoints.h5, schema above).

    ``threads``: the cores the job holds. On CPU the groups are shared out between ``workers`` processes
    (default: ``threads``, at most one per group), each with ``threads / workers`` torch threads; on CUDA, or
    with ``workers=1``, everything runs in this process (which then uses the torch thread count set by its
    caller, see ``lossatlas.entry.setup``).
    """
    device = resolve_device(spec.get("device", "auto"))
    lr = _resolve_lr(spec["optimizer"], lr_path)
    if workers is None:
        workers = int(threads) if device.type == "cpu" else 1
    if workers > 1 and device.type != "cpu":
        # worker processes train on CPU (one thread each); on a GPU one process keeps the device busy
        raise ValueError(f"workers={workers}: worker processes are for CPU training; on {device} use workers=1")
    phases, ds, num_classes, outputs = load_phases(spec, dataset_path, pretrain_path, device)
    trainer = BlockTrainer(spec, phases, ds.input_shape, outputs, num_classes, lr, device, Path(work_dir),
                           run_key(spec, ds, lr), workers=workers)
    log.info("training %d member(s) %s on %s, %s, %d checkpoints, %d worker process(es)", len(trainer.seeds),
             {"wide": "as one wide network", "vmap": "stacked (vmap)", "loop": "one after another"}[trainer.stacking],
             device, spec.get("dtype", "float32"),
             len(trainer.ckpt_steps), trainer.workers)
    t0 = time.perf_counter()
    if trainer.workers == 1:
        trainer.run()
    else:
        trainer.open_work_dir()
        job = {"spec": spec, "dataset_path": str(dataset_path), "lr": lr, "workers": trainer.workers,
               "pretrain_path": None if pretrain_path is None else str(pretrain_path), "key": trainer.key,
               "work_dir": str(work_dir)}
        run_workers(Path(work_dir), job, trainer.workers, max(int(threads), trainer.workers))
        trainer.collect()  # the workers' finished records
    log.info("trained in %.1f s", time.perf_counter() - t0)
    attrs = {
        "spec": json.dumps(spec, sort_keys=True), "schema_version": SCHEMA_VERSION,
        "task": ds.attrs.get("task", "classification"), "num_classes": num_classes, "num_outputs": outputs,
        "input_shape": json.dumps(list(ds.input_shape)), "dataset_hash": _dataset_hash(ds), "lr": lr,
        "vectorized": trainer.vectorized, "stacking": trainer.stacking, "workers": trainer.workers,
        "torch_version": str(torch.__version__), "numerics": json.dumps(trainer.numerics, sort_keys=True),
    }
    trainer.write(out_path, attrs)
    shutil.rmtree(work_dir, ignore_errors=True)

