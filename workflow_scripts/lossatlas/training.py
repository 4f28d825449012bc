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
CUDA, or with T = 1, everything runs in the job's process. A member's arithmetic is the same in any grouping
(measured: byte-identical in float64 and float32 on this CPU), so the result does not depend on T beyond what T
does to torch's own kernels.

Data. The whole dataset lives as one tensor on the device; a batch is ``x[perm[k*B:(k+1)*B]]``. uint8 images
become float in [0, 1] and are standardised per channel with the dataset's ``channel_mean``/``channel_std``.
Every batch is full except the last of an epoch (size n mod B), which is dropped only when it would hold a single
example (BatchNorm cannot normalise one example).

Losses (mean over the batch): ``ce``; ``mse_softmax`` = Σ_k (softmax_k − onehot_k)² summed over classes
(universality_patterns.txt §2; not torch's MSELoss, which also divides by K); ``mse_raw`` = Σ_k (z_k − t_k)² on
raw outputs, t = one-hot for classification or the regression target (embedding_principle.txt App. B; no ½).
Optimizers ``sgd`` (momentum, weight_decay), ``adam``, ``adadelta`` (torch defaults otherwise); learning-rate
schedule per epoch: ``constant``; ``step`` = lr / factor^floor(e / every); ``multistep`` = lr / factor^(number
of milestones <= e). ``lr: probe`` reads ``{"lr": value}`` from ``lr_path``.

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

Resume. Each group's training state (weights, optimizer, RNG, position, loss accumulators, its members' status)
is saved atomically to ``work_dir/state_g<group>.pt`` at epoch ends and checkpoints once
``LOSSATLAS_STATE_EVERY_S`` seconds (default 60) have passed since the last save, and on SIGTERM (SLURM time
limit / preemption; the job passes it on to its workers), after which the job exits with status 143 so a retry
resumes. A finished group leaves ``work_dir/done_g<group>.pt`` (its status) and is not trained again.
Checkpoint weights go to ``work_dir/ckpt/`` as they are taken. ``work_dir/key`` (hash of the spec, the dataset
hashes, the learning rate and the grouping) must match, or the whole work_dir is discarded. A failed worker
stops the others (they save their state) and the job fails naming it; workers end when their job is killed.
After ``checkpoints.h5`` is written (atomically, in a fixed order, so an interrupted-and-resumed run gives the
same file as an uninterrupted one), ``work_dir`` is removed.

``checkpoints.h5`` (M members, C checkpoints, E epochs):
- root attrs: ``spec`` (JSON), ``schema_version``, ``task``, ``num_classes`` (0 for regression), ``num_outputs``
  (model outputs: K, or the regression target width), ``input_shape`` (JSON), ``dataset_hash``, ``lr`` (the rate
  used), ``vectorized`` (bool), ``stacking`` (wide | vmap | loop), ``workers``, ``torch_version``;
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

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossatlas.io import atomic_path, read_json
from lossatlas.progress import Progress
from lossatlas.wide import from_wide_output, member_view, to_wide, unsupported_layers, widen

log = logging.getLogger("lossatlas.training")

SCHEMA_VERSION = 1
STATE_EVERY_S_ENV = "LOSSATLAS_STATE_EVERY_S"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job
LOSSES = ("ce", "mse_softmax", "mse_raw")


class Preempted(SystemExit):
    """Raised after SIGTERM once the training state is saved; exits non-zero so a retry resumes."""

    def __init__(self) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)


# ----------------------------------------------------------------------------------------------- small helpers


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. (seed, "init")), stable across runs and machines."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was configured but torch sees no CUDA device")
    return torch.device(name)


def torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "float64": torch.float64}[name]
    except KeyError:
        raise ValueError(f"dtype must be float32 or float64, got {name!r}") from None


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


def learning_rate(optimizer: dict, base_lr: float, epoch: int) -> float:
    """The rate for (0-based) ``epoch`` under the optimizer's schedule (see the module docstring)."""
    sched = optimizer.get("schedule") or {"kind": "constant"}
    kind = sched.get("kind", "constant")
    if kind == "constant":
        return base_lr
    factor = float(sched.get("factor", 10.0))
    if kind == "step":
        if "every" not in sched:
            raise ValueError("optimizer.schedule: kind step needs 'every'")
        return base_lr / factor ** (epoch // int(sched["every"]))
    if kind == "multistep":
        return base_lr / factor ** sum(1 for m in sched.get("milestones", []) if m <= epoch)
    raise ValueError(f"optimizer.schedule.kind: unknown {kind!r}")


class Optimizer:
    """SGD (momentum), Adam and AdaDelta with exactly torch.optim's update rules (defaults: Adam betas (0.9, 0.999),
    eps 1e-8; AdaDelta rho 0.9, eps 1e-6; L2 weight decay added to the gradient), as plain elementwise tensor
    code: torch.optim's first use imports torch._dynamo, which costs seconds of start-up in every training job.
    Elementwise updates are what make one optimizer over stacked members equal one optimizer per member."""

    def __init__(self, params: Sequence[torch.Tensor], kind: str, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        if kind not in ("sgd", "adam", "adadelta"):
            raise ValueError(f"optimizer.name: unknown optimizer {kind!r} (sgd | adam | adadelta)")
        self.params = list(params)
        self.kind, self.lr, self.momentum, self.weight_decay = kind, float(lr), float(momentum), float(weight_decay)
        self.step_count = 0
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        t = self.step_count
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            g = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            if self.kind == "sgd":
                if self.momentum != 0:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = g.detach().clone()
                    else:
                        st["momentum_buffer"].mul_(self.momentum).add_(g)
                    g = st["momentum_buffer"]
                p.add_(g, alpha=-self.lr)
            elif self.kind == "adam":
                beta1, beta2, eps = 0.9, 0.999, 1e-8
                if not st:
                    st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                st["exp_avg"].lerp_(g, 1 - beta1)
                st["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                bias1, bias2 = 1 - beta1**t, 1 - beta2**t
                denom = (st["exp_avg_sq"].sqrt() / math.sqrt(bias2)).add_(eps)
                p.addcdiv_(st["exp_avg"], denom, value=-self.lr / bias1)
            else:  # adadelta
                rho, eps = 0.9, 1e-6
                if not st:
                    st["square_avg"], st["acc_delta"] = torch.zeros_like(p), torch.zeros_like(p)
                st["square_avg"].mul_(rho).addcmul_(g, g, value=1 - rho)
                std = st["square_avg"].add(eps).sqrt_()
                delta = st["acc_delta"].add(eps).sqrt_().div_(std).mul_(g)
                st["acc_delta"].mul_(rho).addcmul_(delta, delta, value=1 - rho)
                p.add_(delta, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count, "lr": self.lr, "state": [dict(st) for st in self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count, self.lr = int(state["step"]), float(state["lr"])
        self.state = [dict(st) for st in state["state"]]


def make_optimizer(params: Sequence[torch.Tensor], optimizer: dict, lr: float) -> Optimizer:
    return Optimizer(params, optimizer["name"], lr, momentum=float(optimizer.get("momentum", 0.0) or 0.0),
                     weight_decay=float(optimizer.get("weight_decay", 0.0) or 0.0))


def batch_loss(loss: str, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-member training loss: ``outputs`` (G, b, K), ``targets`` (G, b) labels or (G, b[, d]) regression
    targets; returns (G,), each the mean over the member's batch (formulas in the module docstring)."""
    g, b, k = outputs.shape
    if loss == "ce":
        per = F.cross_entropy(outputs.reshape(g * b, k), targets.reshape(g * b), reduction="none").view(g, b)
    elif loss == "mse_softmax":
        onehot = F.one_hot(targets, k).to(outputs.dtype)
        per = (torch.softmax(outputs, dim=-1) - onehot).pow(2).sum(-1)
    elif loss == "mse_raw":
        target = (F.one_hot(targets, k).to(outputs.dtype) if num_classes > 0
                  else targets.to(outputs.dtype).reshape(g, b, k))
        per = (outputs - target).pow(2).sum(-1)
    else:
        raise ValueError(f"loss: unknown {loss!r}; known: {LOSSES}")
    return per.mean(dim=1)


# ------------------------------------------------------------------------------------------------------- data


@dataclass
class DeviceData:
    """One split on the device, with the batch transform (uint8 → [0,1] → per-channel standardisation)."""

    x: torch.Tensor
    y: torch.Tensor
    dtype: torch.dtype
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def inputs(self, index: torch.Tensor) -> torch.Tensor:
        xb = self.x[index].to(self.dtype)
        if self.mean is not None:
            xb = (xb / 255.0 - self.mean) / self.std
        return xb


def to_device_data(x: np.ndarray, y: np.ndarray, attrs: dict, device: torch.device,
                   dtype: torch.dtype) -> DeviceData:
    """Place a split on ``device``; uint8 images keep their bytes there and are converted per batch."""
    mean = std = None
    if x.dtype == np.uint8:
        if "channel_mean" not in attrs or "channel_std" not in attrs:
            raise ValueError(f"dataset {attrs.get('name')!r}: uint8 images without channel_mean/channel_std attrs")
        shape = (-1,) + (1,) * (x.ndim - 2)
        mean = torch.tensor(attrs["channel_mean"], dtype=dtype, device=device).view(shape)
        std = torch.tensor(attrs["channel_std"], dtype=dtype, device=device).view(shape)
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    else:
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
    yt = torch.from_numpy(np.ascontiguousarray(y))
    yt = yt.to(device=device, dtype=torch.int64 if yt.dtype == torch.int64 else dtype)
    return DeviceData(xt, yt, dtype, mean, std)


def num_outputs(task: str, num_classes: int, y: np.ndarray) -> int:
    """Model output width: K for classification, the target width for regression."""
    if task == "regression":
        return 1 if y.ndim == 1 else int(y.shape[1])
    return int(num_classes)


# ---------------------------------------------------------------------------------------------------- members


def build_member(spec: dict, input_shape: Sequence[int], outputs: int, seed: int, device: torch.device,
                 dtype: torch.dtype) -> nn.Module:
    """One member's network at initialisation: a pure function of the spec and the seed."""
    from lossatlas.models import build_model, initialize

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


def has_convolution(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


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


def member_groups(members: int, vectorized: bool, workers: int) -> list[list[int]]:
    """The block's groups (the unit one process trains at a time): stacked, ``workers`` contiguous chunks of
    near-equal size (one per worker process); otherwise one group per member."""
    if not vectorized:
        return [[m] for m in range(members)]
    return [c.tolist() for c in np.array_split(np.arange(members), max(1, min(workers, members)))]


def channels_last(model: nn.Module) -> bool:
    """Whether to run ``model`` in channels_last memory format: convolutional nets (about 1.3× faster training
    on CPU here, and the layout cuDNN prefers). Values equal the default layout up to float summation order."""
    return has_convolution(model)


class MemberDropout(nn.Module):
    """Element-wise dropout whose mask is set from outside (``mask``: 0 or 1/(1 − p) per element, drawn by
    ``MemberMasks`` from the member's own generator), so a member gets the same masks alone or stacked."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.mask is None:
            raise RuntimeError("MemberDropout in training mode needs its mask (set by the training group)")
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_member_dropout(model: nn.Module) -> dict[str, MemberDropout]:
    """Replace every active ``nn.Dropout`` of ``model`` (in place, same names) by a ``MemberDropout``."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Dropout and child.p > 0:
                setattr(module, child_name, MemberDropout(child.p))
    return {name: m for name, m in model.named_modules() if isinstance(m, MemberDropout)}


class MemberMasks:
    """The dropout masks of a group's members, each member with its own generator seeded from (seed, "dropout").

    Every step draws, per member, one flat Bernoulli(1 − p) vector covering the input of every dropout layer (in
    ``named_modules`` order; shapes found once per input shape by a forward pass on the meta device), scaled by
    1/(1 − p) as torch's dropout does. A member's masks so depend only on its seed and the step, not on the other
    members of its group: stacked and alone it is the same network."""

    def __init__(self, model: nn.Module, seeds: Sequence[int], device: torch.device, dtype: torch.dtype):
        import copy

        self.template: nn.Module | None = None
        self.dropouts: dict[str, MemberDropout] = {}
        if any(type(m) is nn.Dropout and m.p > 0 for m in model.modules()):  # else no copy to make
            self.template = copy.deepcopy(model).to("meta")
            self.dropouts = use_member_dropout(self.template)
            self.template.eval()  # dropout off: the pass only records shapes
        self.generators = [torch.Generator(device=device).manual_seed(derive_seed(int(s), "dropout"))
                           for s in seeds]
        self.device, self.dtype = device, dtype
        self._layouts: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, list]] = {}

    def _layout(self, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, list]:
        if input_shape not in self._layouts:
            shapes: dict[str, tuple[int, ...]] = {}

            def record(name: str):
                def hook(_module: nn.Module, args: tuple) -> None:  # returns None: the inputs stay as they are
                    shapes[name] = tuple(args[0].shape)
                return hook

            hooks = [m.register_forward_pre_hook(record(name)) for name, m in self.dropouts.items()]
            assert self.template is not None  # draw() returns early without dropout
            with torch.no_grad():
                self.template(torch.empty(input_shape, device="meta", dtype=self.dtype))
            for h in hooks:
                h.remove()
            keep, scale, entries, offset = [], [], [], 0
            for name, m in self.dropouts.items():
                n = math.prod(shapes[name])
                keep.append(torch.full((n,), 1.0 - m.p, dtype=self.dtype))
                scale.append(torch.full((n,), 1.0 / (1.0 - m.p), dtype=self.dtype))
                entries.append((name, offset, n, shapes[name]))
                offset += n
            self._layouts[input_shape] = (torch.cat(keep).to(self.device), torch.cat(scale).to(self.device),
                                          entries)
        return self._layouts[input_shape]

    def draw(self, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Masks for one step of inputs of ``input_shape`` (one member's batch): name → (members, *shape)."""
        if not self.dropouts:
            return {}
        keep, scale, entries = self._layout(tuple(input_shape))
        flat = torch.stack([torch.bernoulli(keep, generator=g) for g in self.generators]) * scale
        return {name: flat[:, o:o + n].reshape(len(self.generators), *shape) for name, o, n, shape in entries}

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        for g, state in zip(self.generators, states, strict=True):
            g.set_state(state.cpu() if self.device.type == "cpu" else state)


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


class H5Writer:
    """Creates datasets (and their parent groups) without modification times, so that equal content gives
    equal bytes (h5py records times on groups by default)."""

    def __init__(self, f: Any):
        self.f = f

    def group(self, path: str) -> Any:
        import h5py

        node = self.f
        for part in [p for p in path.split("/") if p]:
            if part not in node:
                gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
                gcpl.set_obj_track_times(False)
                h5py.h5g.create(node.id, part.encode(), gcpl=gcpl)
            node = node[part]
        return node

    def __call__(self, path: str, data: Any, **kwargs: Any) -> Any:
        parent, _, name = path.rpartition("/")
        return self.group(parent).create_dataset(name, data=data, track_times=False, **kwargs)


# ------------------------------------------------------------------------------------------------- the loop


@dataclass
class Phase:
    name: str  # "pretrain" | "main"
    data: DeviceData
    epochs: int


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


class _Sigterm:
    """Turns SIGTERM into a flag the loop checks after every step (so the state saved is consistent)."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> _Sigterm:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners): no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM received: saving the training state, then exiting %d", PREEMPTED_EXIT_CODE)
        self.received = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclass
class Position:
    group: int = 0
    phase: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0  # main-phase global step
    next_checkpoint: int = 0


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
        self.work_dir = work_dir
        pre_epochs = phases[0].epochs if len(phases) > 1 else 0
        self.status = BlockStatus(len(self.seeds), main.epochs, pre_epochs, len(self.ckpt_steps))
        probe = build_member(spec, self.input_shape, outputs, self.seeds[0], device, self.dtype)
        self.stacking = choose_stacking(spec.get("vectorize", "auto"), probe, len(self.seeds), device)
        self.vectorized = self.stacking != "loop"
        self.groups = member_groups(len(self.seeds), self.vectorized, workers)
        self.workers = max(1, min(workers, len(self.groups)))
        # the grouping changes float summation (stacked chunks), so a state of another grouping is not resumed
        self.key = hashlib.sha256(json.dumps([key, self.groups, self.stacking]).encode()).hexdigest()
        self.state_every_s = float(os.environ.get(STATE_EVERY_S_ENV, "60"))

    # -- checkpoint table
    def checkpoint_table(self) -> dict[str, np.ndarray]:
        steps = np.asarray(self.ckpt_steps, dtype=np.int64)
        n, spe, b = self.phases[-1].data.n, self.spe, self.batch_size
        epochs_done, within = np.divmod(steps, spe)
        per_epoch = min(spe * b, n)  # n, or n - 1 when a final single-example batch is dropped
        examples = epochs_done * per_epoch + np.minimum(within * b, per_epoch)
        return {"epoch": steps / spe, "step": steps, "examples_seen": examples.astype(np.int64)}

    # -- files in work_dir
    def _ckpt_path(self, group: int, index: int) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "ckpt" / f"g{group:05d}_c{index:06d}.pt"

    def _state_path(self, group: int) -> Path:
        assert self.work_dir is not None
        return self.work_dir / f"state_g{group:05d}.pt"

    def _done_path(self, group: int) -> Path:
        assert self.work_dir is not None
        return self.work_dir / f"done_g{group:05d}.pt"

    def _save_state(self, pos: Position, group: Any, optimizer: Optimizer, acc: dict) -> None:
        """Save the resume state of group ``pos.group``."""
        if self.work_dir is None:
            return
        rows = np.asarray(self.groups[pos.group])
        payload = {
            "key": self.key, "position": pos.__dict__.copy(), "weights": group.state(),
            "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "dropout_rng": group.masks.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "acc": acc, "status": self.status.rows(rows),
        }
        with atomic_path(self._state_path(pos.group)) as tmp:
            torch.save(payload, tmp)
        self._last_save = time.monotonic()

    def _load_state(self, group: int) -> dict | None:
        if self.work_dir is None:
            return None
        return self._read(self._state_path(group), "resume state")

    def _save_done(self, group: int) -> None:
        """Record a finished group (its status rows); its resume state is no longer needed."""
        if self.work_dir is None:
            return
        payload = {"key": self.key, "status": self.status.rows(np.asarray(self.groups[group]))}
        with atomic_path(self._done_path(group)) as tmp:
            torch.save(payload, tmp)
        self._state_path(group).unlink(missing_ok=True)

    def _load_done(self, group: int) -> bool:
        """Fill ``status`` from the group's finished record; False if it has none."""
        if self.work_dir is None:
            return False
        payload = self._read(self._done_path(group), "finished-group record")
        if payload is None:
            return False
        self.status.set_rows(np.asarray(self.groups[group]), payload["status"])
        return True

    def _read(self, path: Path, what: str) -> dict | None:
        if not path.exists():
            return None
        try:
            payload = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:  # a damaged file (disk error, partial copy) must not block every retry
            log.warning("discarding an unreadable %s %s (%s: %s)", what, path, type(exc).__name__, exc)
            return None
        if not isinstance(payload, dict) or payload.get("key") != self.key:
            log.info("discarding a %s of a different spec/dataset: %s", what, path)
            return None
        return payload

    # -- training
    def open_work_dir(self) -> None:
        """Start or resume: keep ``work_dir`` only if it belongs to this spec, data, rate and grouping (its
        ``key`` file); anything else there is from another run and is removed."""
        if self.work_dir is None:
            return
        key_file = self.work_dir / "key"
        if self.work_dir.exists() and (not key_file.is_file() or key_file.read_text() != self.key):
            log.info("discarding a resume state of a different spec/dataset in %s", self.work_dir)
            shutil.rmtree(self.work_dir)
        (self.work_dir / "ckpt").mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            with atomic_path(key_file) as tmp:
                tmp.write_text(self.key)

    def run(self) -> None:
        """Train every group in this process (``status`` is filled as they finish or are found finished)."""
        self.open_work_dir()
        self.train_groups(range(len(self.groups)))

    def train_groups(self, indices: Iterable[int]) -> None:
        """Train the groups ``indices`` in this process: a finished group is skipped, a started one resumes."""
        self._last_save = time.monotonic()
        with _Sigterm() as sigterm:
            for gi in indices:
                if self._load_done(gi):
                    log.info("resuming at the end of group %d (seeds %s): already trained", gi,
                             [self.seeds[m] for m in self.groups[gi]])
                    continue
                state = self._load_state(gi)
                if state is not None:
                    log.info("resuming at %s", state["position"])
                self._train_group(gi, state, sigterm)
                self._save_done(gi)

    def collect(self) -> None:
        """Read every group's finished record into ``status`` (after the groups ran in worker processes)."""
        if self.work_dir is None:
            return
        for gi, members in enumerate(self.groups):
            if not self._load_done(gi):
                raise RuntimeError(f"{self.work_dir}: the group of seeds {[self.seeds[m] for m in members]} "
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

    def _train_group(self, gi: int, state: dict | None, sigterm: _Sigterm) -> None:
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
        if state is not None:
            self.status.set_rows(rows, state["status"])
            pos = Position(**state["position"])
            group.load_state(state["weights"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            group.masks.set_state(state["dropout_rng"])
            if state["cuda_rng"] is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            acc = state["acc"]
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
            spe = steps_per_epoch(phase.data.n, self.batch_size)
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
                    index = perm[:, k * self.batch_size:(k + 1) * self.batch_size]
                    xb = phase.data.inputs(index)
                    yb = phase.data.y[index]
                    losses = batch_loss(self.loss, group.forward(xb), yb, self.num_classes)
                    optimizer.zero_grad()
                    losses.sum().backward()
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
        if self.work_dir is None or not active.any():
            return
        weights = {k: v.detach().cpu().clone() for k, v in group.state().items()}
        with atomic_path(self._ckpt_path(gi, index)) as tmp:
            torch.save(weights, tmp)

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
                    weights = torch.load(self._ckpt_path(gi, ci), map_location="cpu", weights_only=True)
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


def _prepare(spec: dict, dataset_path: str | os.PathLike, pretrain_path: str | os.PathLike | None,
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
                            int(spec["pretrain"]["epochs"])))
        ds.attrs["_pretrain_hash"] = _dataset_hash(pre)
    phases.append(Phase("main", to_device_data(ds.x_train, ds.y_train, ds.attrs, device, dtype),
                        int(spec.get("epochs", 10))))
    return phases, ds, num_classes, outputs


def _run_key(spec: dict, ds: Any, lr: float) -> str:
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
    phases, ds, num_classes, outputs = _prepare(spec, dataset_path, pretrain_path, device)
    if workers is None:
        workers = int(threads) if device.type == "cpu" else 1
    trainer = BlockTrainer(spec, phases, ds.input_shape, outputs, num_classes, lr, device, Path(work_dir),
                           _run_key(spec, ds, lr), workers=workers)
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
        _train_in_workers(trainer, job, max(int(threads), trainer.workers))
        trainer.collect()  # the workers' finished records
    log.info("trained in %.1f s", time.perf_counter() - t0)
    attrs = {
        "spec": json.dumps(spec, sort_keys=True), "schema_version": SCHEMA_VERSION,
        "task": ds.attrs.get("task", "classification"), "num_classes": num_classes, "num_outputs": outputs,
        "input_shape": json.dumps(list(ds.input_shape)), "dataset_hash": _dataset_hash(ds), "lr": lr,
        "vectorized": trainer.vectorized, "stacking": trainer.stacking, "workers": trainer.workers,
        "torch_version": str(torch.__version__),
    }
    trainer.write(out_path, attrs)
    shutil.rmtree(work_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------ worker processes
# On CPU one process with T threads trains small models far below the speed of T single-threaded processes
# (per-op thread synchronisation dominates), so a block job runs T workers, each training its share of the
# groups with one thread; the groups write their own state and finished records in work_dir, so resume and
# the assembled checkpoints.h5 do not depend on which process trained what.


def _train_in_workers(trainer: BlockTrainer, job: dict, threads: int) -> None:
    """Start the worker processes (``python -m lossatlas.train_worker``), wait for them, and raise as they end.
    Workers claim groups as they become free (a claim file per group and launch), so a slower worker does not
    leave the others idle at the end."""
    assert trainer.work_dir is not None
    w_count = trainer.workers
    claims = trainer.work_dir / "claims" / f"{os.getpid()}_{time.time_ns()}"
    claims.mkdir(parents=True)
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    library = str(Path(__file__).resolve().parents[1])
    procs, labels = [], []
    try:
        for w in range(w_count):
            worker_threads = threads // w_count + (1 if w < threads % w_count else 0)
            args_path = trainer.work_dir / f"worker{w}.json"
            with atomic_path(args_path) as tmp:
                tmp.write_text(json.dumps({**job, "worker": w, "claims_dir": str(claims), "threads": worker_threads,
                                           "log_files": log_files, "parent_pid": os.getpid(),
                                           "log_level": logging.getLogger().getEffectiveLevel()}))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([library, os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": str(worker_threads), "MKL_NUM_THREADS": str(worker_threads)}
            procs.append(subprocess.Popen([sys.executable, "-m", "lossatlas.train_worker", str(args_path)],
                                          env=env))
            labels.append(f"worker {w} (pid {procs[-1].pid})")
    except BaseException:
        for p in procs:
            p.kill()
        raise
    wait_for_workers(procs, labels)


def wait_for_workers(procs: Sequence[subprocess.Popen], labels: Sequence[str], poll_s: float = 0.1) -> None:
    """Wait until every worker has ended. SIGTERM to this process is passed on to the workers (each saves its
    state); when one fails the others are sent SIGTERM too, so they save theirs and a retry resumes. Raises
    RuntimeError naming the failed workers, else ``Preempted`` if any was stopped by SIGTERM."""
    stopped = False
    with _Sigterm() as sigterm:
        while [p.poll() for p in procs].count(None):  # poll every worker (any() would stop at the first)
            failed = any(p.returncode not in (None, 0, PREEMPTED_EXIT_CODE, -signal.SIGTERM) for p in procs)
            if (sigterm.received or failed) and not stopped:
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(poll_s)
    codes = [p.returncode for p in procs]
    failures = [f"{label} exited with status {code}" for label, code in zip(labels, codes, strict=True)
                if code not in (0, PREEMPTED_EXIT_CODE, -signal.SIGTERM)]
    if failures:
        raise RuntimeError("training worker process(es) failed: " + "; ".join(failures)
                           + " (the error is logged above; a negative status is the signal that killed it)")
    if any(code != 0 for code in codes):
        raise Preempted()


def train_worker(job: dict) -> None:
    """One worker process's share of ``train_run``: the groups it claims first, in the job's work_dir."""
    device = torch.device("cpu")
    spec = job["spec"]
    phases, ds, num_classes, outputs = _prepare(spec, job["dataset_path"], job["pretrain_path"], device)
    trainer = BlockTrainer(spec, phases, ds.input_shape, outputs, num_classes, float(job["lr"]), device,
                           Path(job["work_dir"]), _run_key(spec, ds, float(job["lr"])), workers=int(job["workers"]))
    if trainer.key != job["key"]:
        raise RuntimeError(f"{job['dataset_path']}: the dataset changed while the training job was running")
    claims = Path(job["claims_dir"])

    def claimed() -> Iterable[int]:
        for gi in range(len(trainer.groups)):
            try:
                fd = os.open(claims / f"g{gi:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:  # another worker has it
                continue
            os.write(fd, str(job["worker"]).encode())
            os.close(fd)
            log.info("worker %d: group %d, seeds %s", job["worker"], gi, [trainer.seeds[m] for m in trainer.groups[gi]])
            yield gi

    trainer.train_groups(claimed())


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
    phases, ds, num_classes, outputs = _prepare(probe_spec, dataset_path, None, device)
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
