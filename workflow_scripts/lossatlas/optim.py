"""Optimizers, losses and learning-rate schedules of the training engine (formulas below).

Losses (mean over the batch): ``ce``; ``mse_softmax`` = Σ_k (softmax_k − onehot_k)² summed over classes
(universality_patterns.txt §2; not torch's MSELoss, which also divides by K); ``mse_raw`` = Σ_k (z_k − t_k)² on
raw outputs, t = one-hot for classification or the regression target (embedding_principle.txt App. B; no ½).
Optimizers ``sgd`` (momentum, weight_decay), ``adam``, ``adadelta`` (torch defaults otherwise); learning-rate
schedule per epoch: ``constant``; ``step`` = lr / factor^floor(e / every); ``multistep`` = lr / factor^(number
of milestones <= e).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

LOSSES = ("ce", "mse_softmax", "mse_raw")


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
        # one multi-tensor (_foreach) kernel per operation over all parameters, not a few kernels per tensor:
        # the same arithmetic, element for element, as the per-tensor form of torch.optim's rules
        self.step_count += 1
        t = self.step_count
        live = [(p, st) for p, st in zip(self.params, self.state, strict=True) if p.grad is not None]
        if not live:
            return
        params, states = [p for p, _ in live], [st for _, st in live]
        grads = [p.grad for p in params]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.kind == "sgd":
            if self.momentum != 0:
                started = [(st["momentum_buffer"], g) for st, g in zip(states, grads, strict=True)
                           if "momentum_buffer" in st]
                if started:
                    bufs = [b for b, _ in started]
                    torch._foreach_mul_(bufs, self.momentum)
                    torch._foreach_add_(bufs, [g for _, g in started])
                for st, g in zip(states, grads, strict=True):
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = g.detach().clone()
                grads = [st["momentum_buffer"] for st in states]
            torch._foreach_add_(params, grads, alpha=-self.lr)
        elif self.kind == "adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            for st, p in zip(states, params, strict=True):
                if not st:
                    st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            avgs, sqs = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
            torch._foreach_lerp_(avgs, grads, 1 - beta1)
            torch._foreach_mul_(sqs, beta2)
            torch._foreach_addcmul_(sqs, grads, grads, value=1 - beta2)
            bias1, bias2 = 1 - beta1**t, 1 - beta2**t
            denom = torch._foreach_sqrt(sqs)
            torch._foreach_div_(denom, math.sqrt(bias2))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, avgs, denom, value=-self.lr / bias1)
        else:  # adadelta
            rho, eps = 0.9, 1e-6
            for st, p in zip(states, params, strict=True):
                if not st:
                    st["square_avg"], st["acc_delta"] = torch.zeros_like(p), torch.zeros_like(p)
            sqs, accs = [st["square_avg"] for st in states], [st["acc_delta"] for st in states]
            torch._foreach_mul_(sqs, rho)
            torch._foreach_addcmul_(sqs, grads, grads, value=1 - rho)
            std = torch._foreach_add(sqs, eps)
            torch._foreach_sqrt_(std)
            delta = torch._foreach_add(accs, eps)
            torch._foreach_sqrt_(delta)
            torch._foreach_div_(delta, std)
            torch._foreach_mul_(delta, grads)
            torch._foreach_mul_(accs, rho)
            torch._foreach_addcmul_(accs, delta, delta, value=1 - rho)
            torch._foreach_add_(params, delta, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step_count, "lr": self.lr, "state": [dict(st) for st in self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count, self.lr = int(state["step"]), float(state["lr"])
        # a resume state is loaded onto the CPU: each tensor goes back to its parameter's device
        self.state = [{k: v.to(p.device) for k, v in st.items()} for p, st in zip(self.params, state["state"],
                                                                                   strict=True)]


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

