"""Per-example losses and weight norms: small pure functions, each with the formula it implements.

Notation (universality_patterns.txt §2; FIGURES.md §1.3): z = the network's raw outputs (logits) for one example,
p = softmax(z) ∈ Δ_K its class probabilities, y its label, e_y the one-hot vector of y. The empirical loss of a
per-example loss l is its mean over the examples, L = (1/n) Σ_i l(p_i, y_i) (``summary``).

All functions take a batch: ``logits``/``probs`` (n, K), ``labels`` (n,) int64, and return (n,) tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """p_k = exp(z_k) / Σ_j exp(z_j), computed in the logits' dtype."""
    return torch.softmax(logits, dim=-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l_CE = −log p_y = logsumexp(z) − z_y (universality_patterns.txt §2), from the logits for accuracy."""
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, labels[:, None])[:, 0]


def true_class_probability(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p_y, the probability the network gives the correct class (created_equal.txt; loss_patterns_mpo.txt)."""
    return probs.gather(-1, labels[:, None])[:, 0]


def predicted_label(probs: torch.Tensor) -> torch.Tensor:
    """argmax_k p_k; ties go to the first maximal index (torch.argmax; the paper does not say, FIGURES.md §1.3)."""
    return torch.argmax(probs, dim=-1)


def zero_one_error(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l_0/1 = 1[argmax_k p_k ≠ y] (universality_patterns.txt §2). Accuracy = 1 − L(l_0/1)."""
    return (predicted_label(probs) != labels).to(probs.dtype)


def _residual(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p − e_y."""
    return probs - torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)


def squared_error(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """l_MSE = ‖p − e_y‖₂² = Σ_k (p_k − 1[k=y])², summed (not averaged) over the K classes
    (universality_patterns.txt §2; FIGURES.md §1.3)."""
    return _residual(probs, labels).pow(2).sum(-1)


def lp_error(probs: torch.Tensor, labels: torch.Tensor, p: float | str) -> torch.Tensor:
    """l_ℓp = ‖p − e_y‖_p = (Σ_k |p_k − 1[k=y]|^p)^{1/p} for p > 0; p = ∞ (``inf``) gives max_k |p_k − 1[k=y]|
    (universality_patterns.txt §2; FIGURES.md §1.3). For p < 1 this is the same expression (not a norm)."""
    q = parse_p(p)
    r = _residual(probs, labels).abs()
    if math.isinf(q):
        return r.max(dim=-1).values
    return r.pow(q).sum(-1).pow(1.0 / q)


def raw_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_k (z_k − t_k)² on raw outputs (embedding_principle.txt App. B: MSE; no factor ½); ``targets`` (n, d)."""
    return (outputs - targets.reshape(outputs.shape)).pow(2).sum(-1)


def parse_p(p: float | str) -> float:
    """A p value from the config: a positive number or ``inf``."""
    q = float(p)
    if not q > 0:
        raise ValueError(f"l_p error needs p > 0, got {p!r}")
    return q


def p_name(p: float | str) -> str:
    """How p is written in metric names: 1, 2, 0.5, inf (``lp_<p>``)."""
    q = parse_p(p)
    if math.isinf(q):
        return "inf"
    return str(int(q)) if q == int(q) else repr(q)


def summary_names(lp: Iterable[float | str]) -> list[str]:
    """Names of the per-checkpoint summary metrics of a classification run, in a fixed order."""
    return ["ce", "mse", "err01", "acc"] + [f"lp_{p_name(p)}" for p in lp]


# --------------------------------------------------------------------------------------------- weight norms


def frobenius_norm(tensors: Iterable[torch.Tensor]) -> float:
    """‖W‖_F = sqrt(Σ_ij w_ij²) over all entries of a layer's parameters (weight and bias jointly: the bias is
    the weight of a constant input, normalized_loss_linear.txt §3.1; conv kernels as one tensor)."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def l1_norm(tensors: Iterable[torch.Tensor]) -> float:
    """‖W‖_1 = Σ_ij |w_ij|, entry-wise, over a layer's weight and bias (normalized_loss_linear.txt Fig. 13)."""
    return sum(float(t.detach().double().abs().sum()) for t in tensors)


def layer_norms_of(layers: Sequence[Iterable[torch.Tensor]]) -> tuple[list[float], list[float]]:
    """(Frobenius, L1) norms of each layer's parameters, exactly as ``frobenius_norm`` and ``l1_norm`` compute
    them, with the per-tensor sums reduced on the tensors' device and read back in one transfer (one host sync
    per network instead of one per tensor)."""
    tensors = [[t.detach().double() for t in layer] for layer in layers]
    flat = [t for layer in tensors for t in layer]
    if not flat:
        return [0.0] * len(tensors), [0.0] * len(tensors)
    sums = torch.stack([torch.stack([t.pow(2).sum() for t in flat]), torch.stack([t.abs().sum() for t in flat])])
    squares, absolutes = sums.cpu().tolist()
    fro, l1, i = [], [], 0
    for layer in tensors:
        fro.append(math.sqrt(sum(squares[i:i + len(layer)])))  # Python sums in order, as the scalar forms do
        l1.append(sum(absolutes[i:i + len(layer)]))
        i += len(layer)
    return fro, l1


def norm_product(norms: Iterable[float]) -> float:
    """∏_l ‖W_l‖ over the parametrised layers (normalized_loss_linear.txt: the product norm)."""
    out = 1.0
    for v in norms:
        out *= v
    return out
