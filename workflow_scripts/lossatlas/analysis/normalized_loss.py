"""Layerwise-normalised cross-entropy predicts test loss (Liao, Miranda, Banburski, Hidary, Poggio, *A
Surprising Linear Relationship Predicts Test Performance in Deep Networks*; papers/normalized_loss_linear.txt,
FIGURES.md §3).

Pipeline of this paper:

1. Runs (config): equal training loss, different test performance, reached by pretraining on labels
   corrupted at fraction q (recipe key ``pretrain``), by a Gaussian initialisation of standard deviation σ
   (``init``), or by training on random labels ("RL"). Each *experiment* of the study config groups the runs
   one family of figures uses, and says how one checkpoint per member is selected.
2. ``postprocess_experiment`` (one job per experiment): per member, select a snapshot
   (``select_checkpoints``), rebuild it in float64, absorb batch-norm (``absorb_batchnorm``), normalise
   layerwise under each configured norm (``normalise_layerwise``), and measure unnormalised / normalised CE
   and error on train and test, the product of layer norms, and the max logits (Figs 19, 20). Output:
   ``points.csv`` (one row per member) and ``max_logits.h5``.
3. ``analyse`` (one job, rule normalized_loss_analysis): the OLS fits of every figure (``fit_table``,
   ``FIGURE_FITS``), with R², adjusted R², both RMSEs and the (ln K, ln K) check, next to the paper's numbers;
   the rank/linear correlations the figures without fit statistics claim (``FIGURE_CORRELATIONS``); the max
   logits of Figs 19/20 (``max_logit_table``); the App. F loss differences; and the ψ curve each experiment's
   four-panel figure overlays (``psi_overlay_table``).

Choices where the paper is silent (also in FIGURES.md §3.3):
- Bias handling in the normalisation. The paper's nets have "no biases apart from the input layer where the
  bias is instantiated by one of the input dimensions being a constant" (§3.1), so the first layer is
  normalised jointly with its bias: ρ₁ = ‖[W₁ | b₁]‖. Later layers (biases appear there after BN absorption)
  use ρ_k = ‖W_k‖ and b̃_k = b_k / ∏_{j≤k} ρ_j, which makes f̃ = f / ∏_k ρ_k exactly for a ReLU net, so
  every prediction is unchanged (Fig 4 bottom-right).
- Norms: entrywise L_p over a layer's whole weight tensor (p = 2 is the Frobenius norm, conv kernels
  included), divided by a configurable divisor: the L1 norm of Fig 13 "divided by 100" is ρ_k = ‖W_k‖₁ / 100.
- Snapshot "closest to the reference training loss" (Fig 1) looks at the clean-training checkpoints only (not
  the pretraining ones), with the training CE the evaluation stored per checkpoint.
- Which networks enter a fit: all by default; with an experiment's ``require_zero_train_error`` only those
  whose selected snapshot has training error 0, as the authors' code admits them
  (brando90/Generalization-Puzzles-in-Deep-Networks: the Normalizer's match_zero_train_error /
  final_train_error; the paper's captions only say its networks had zero training error). The others stay
  in points.csv (``in_fit`` false) and every fit and correlation row counts them (``left_out``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lossatlas.io import atomic_path, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

# The experiments (names fixed; the study config says which runs each holds) and the figures drawn from each
# are listed in rules/normalized_loss.smk (NL_FIGURES), which must not import this module.
# Figs 19/20 show the max logits of one network of this experiment (``histogram_point``).
HISTOGRAM_EXPERIMENT = "conv3_wide_init"
# App. F's loss differences are measured on the Fig 3 points.
LOSS_DIFFERENCES_EXPERIMENT = "conv3_corruption"

def _fit(figure: str, panel: str, experiment: str, x: str, y: str, points: str,
         paper: tuple[float, float, float, float, float] | None = None) -> dict[str, Any]:
    keys = ("slope", "intercept", "r2", "adj_r2", "rmse")
    return dict(figure=figure, panel=panel, experiment=experiment, x=x, y=y, points=points,
                paper=dict(zip(keys, paper, strict=True)) if paper else None)


# Every fit a figure shows: (figure, panel, experiment, x column, y column, point set, the paper's
# slope, intercept, R², adjusted R², RMSE). Point sets: "natural" = natural-label runs only, "all" = natural
# plus random-label (RL) runs.
FIGURE_FITS: list[dict[str, Any]] = [
    _fit("fig03", "left (normalised)", "conv3_corruption", "train_ce_fro", "test_ce_fro", "natural",
         (0.836, 0.377, 0.9998, 0.9998, 4.7651e-05)),
    _fit("fig03", "right (unnormalised)", "conv3_corruption", "train_ce", "test_ce", "natural"),
    _fit("fig04", "top-left (unnormalised)", "bn_corruption", "train_ce", "test_ce", "natural"),
    _fit("fig04", "bottom-left (normalised)", "bn_corruption", "train_ce_fro", "test_ce_fro", "natural"),
    _fit("fig04", "bottom-left (normalised, with RL)", "bn_corruption", "train_ce_fro", "test_ce_fro", "all"),
    _fit("fig05", "top-left (unnormalised)", "bn_init", "train_ce", "test_ce", "natural"),
    _fit("fig05", "bottom-left (normalised)", "bn_init", "train_ce_fro", "test_ce_fro", "natural"),
    _fit("fig05", "bottom-left (normalised, with RL)", "bn_init", "train_ce_fro", "test_ce_fro", "all"),
    _fit("fig06", "left (unnormalised)", "conv3_natural", "train_ce", "test_ce", "all"),
    _fit("fig06", "right (normalised, 0 and RL)", "conv3_natural", "train_ce_fro", "test_ce_fro", "all",
         (0.9642, 0.0844, 0.9999, 0.9999, 6.9797e-05)),
    _fit("fig07", "normalised", "conv3_wide_init", "train_ce_fro", "test_ce_fro", "natural",
         (1.0075, -0.0174, 1.0, 1.0, 9.1093e-4)),
    _fit("fig08", "normalised, with RL", "conv3_wide_init", "train_ce_fro", "test_ce_fro", "all",
         (1.0083, -0.0191, 1.0, 1.0, 9.1093e-05)),
    _fit("fig11", "top-left (unnormalised)", "bn_corruption_many_classes", "train_ce", "test_ce", "natural"),
    _fit("fig11", "bottom-left (normalised)", "bn_corruption_many_classes", "train_ce_fro",
         "test_ce_fro", "natural"),
    _fit("fig11", "bottom-left (normalised, with RL)", "bn_corruption_many_classes", "train_ce_fro",
         "test_ce_fro", "all"),
    _fit("fig12", "top-left (unnormalised)", "bn_init_many_classes", "train_ce", "test_ce", "natural"),
    _fit("fig12", "bottom-left (normalised)", "bn_init_many_classes", "train_ce_fro", "test_ce_fro",
         "natural"),
    _fit("fig12", "bottom-left (normalised, with RL)", "bn_init_many_classes", "train_ce_fro",
         "test_ce_fro", "all"),
    _fit("fig13", "test loss (L1/100)", "conv3_corruption", "train_ce_l1", "test_ce_l1", "natural",
         (0.8358, 0.3783, 0.9998, 0.9998, 5.6567e-05)),
    _fit("fig14", "test loss (normalised)", "conv3_stop", "train_ce_fro", "test_ce_fro", "natural"),
    _fit("fig15", "left (normalised)", "conv3_natural", "train_ce_fro", "test_ce_fro", "natural",
         (0.8117, 0.4333, 0.966, 0.9592, 6.3624e-05)),
    _fit("fig15", "right (unnormalised)", "conv3_natural", "train_ce", "test_ce", "natural"),
    _fit("fig16", "normalised, 0 and RL", "conv3_natural", "train_ce_fro", "test_ce_fro", "all",
         (0.9642, 0.0844, 0.9999, 0.9999, 6.9797e-05)),
    _fit("fig17", "normalised, corruption and RL", "conv3_corruption", "train_ce_fro", "test_ce_fro",
         "all", (0.8789, 0.2795, 0.9721, 0.9721, 5.8304e-4)),
]

# Claims without fit statistics: (figure, experiment, x, y, point set, claim).
FIGURE_CORRELATIONS: list[dict[str, Any]] = [
    dict(figure="fig01", experiment="bn_corruption", x="q", y="test_ce", points="natural",
         claim="more corruption -> higher test loss at equal training loss"),
    dict(figure="fig01", experiment="bn_corruption", x="q", y="test_err", points="natural",
         claim="more corruption -> higher test error"),
    dict(figure="fig02", experiment="bn_init", x="sigma", y="test_ce", points="natural",
         claim="larger init std -> higher test loss"),
    dict(figure="fig02", experiment="bn_init", x="sigma", y="test_err", points="natural",
         claim="larger init std -> higher test error"),
    dict(figure="fig04", experiment="bn_corruption", x="product_fro", y="test_ce", points="natural",
         claim="positive correlation of the product of L2 norms with the test loss"),
    dict(figure="fig05", experiment="bn_init", x="product_fro", y="test_ce", points="natural",
         claim="positive correlation of the product of L2 norms with the test loss"),
    dict(figure="fig09", experiment="bn_corruption_many_classes", x="q", y="test_ce", points="natural",
         claim="as Fig 1 with more classes"),
    dict(figure="fig10", experiment="bn_init_many_classes", x="sigma", y="test_ce", points="natural",
         claim="as Fig 2 with more classes"),
    dict(figure="fig18", experiment="conv3_stop", x="product_fro", y="test_err", points="natural",
         claim="higher product norm -> higher test error"),
]


# ------------------------------------------------------------------------------------------------ formulas


def ols_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Ordinary least squares y = a·x + b with the statistics the paper prints (MATLAB ``fitlm`` style).

    SSE = Σ (y_i − a x_i − b)², SST = Σ (y_i − ȳ)², R² = 1 − SSE/SST, adjusted R² = 1 − (1 − R²)(n − 1)/(n −
    2), RMSE = √(SSE / (n − 2)) (n − p − 1 degrees of freedom, p = 1 regressor), and beside it √(SSE / n)
    (FIGURES.md §3.3). Statistics that need more points than given are NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    out = dict(n=n, slope=math.nan, intercept=math.nan, r2=math.nan, adj_r2=math.nan, rmse=math.nan,
               rmse_n=math.nan, sse=math.nan)
    if n < 2 or np.ptp(x) == 0:
        return out
    xm, ym = x.mean(), y.mean()
    a = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
    b = float(ym - a * xm)
    sse = float(np.sum((y - a * x - b) ** 2))
    sst = float(np.sum((y - ym) ** 2))
    out.update(slope=a, intercept=b, sse=sse, rmse_n=math.sqrt(sse / n))
    if sst > 0:
        out["r2"] = 1.0 - sse / sst
    if n > 2:
        out["rmse"] = math.sqrt(sse / (n - 2))
        if sst > 0:
            out["adj_r2"] = 1.0 - (1.0 - out["r2"]) * (n - 1) / (n - 2)
    return out


def fixed_point_gap(slope: float, intercept: float, num_classes: int) -> float:
    """a·ln K + b − ln K: how far the fitted line passes from (ln K, ln K), the loss of an all-zero output.

    Normalised outputs are ≈ 0, so both normalised losses are ≈ ln K (normalized_loss_linear.txt App. F); a
    line through that point has b = ln K·(1 − a) (FIGURES.md §3.3 derived check).
    """
    return slope * math.log(num_classes) + intercept - math.log(num_classes)


def psi_exponential(x: np.ndarray | float) -> np.ndarray:
    """ψ(x) = 1 − √(1 − x²), 0 ≤ x ≤ 1: the ψ-transform of the exponential loss (normalized_loss_linear.txt
    §3.2, Eq. 4: ψ(R(f) − R*) ≤ R_ℓ(f) − R_ℓ*)."""
    x = np.asarray(x, dtype=np.float64)
    if np.any((x < 0) | (x > 1)):
        raise ValueError("psi_exponential: x must lie in [0, 1]")
    return 1.0 - np.sqrt(1.0 - x**2)


def psi_overlay(ce: np.ndarray, err: np.ndarray, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The ψ curve placed over an (normalised CE, error) scatter: x ↦ e₀ + (e₁ − e₀)·ψ((x − x₀)/(x₁ − x₀)).

    The paper only says the shape of ψ is "quite similar" to the error-vs-normalised-loss relation (§3.2),
    so the overlay maps ψ's unit square onto the points' range (x₀, x₁ = min/max CE; e₀, e₁ = the errors of
    those two points): a visual comparison of shape, not a fit.
    """
    ce = np.asarray(ce, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    i0, i1 = int(np.argmin(ce)), int(np.argmax(ce))
    xs = np.linspace(ce[i0], ce[i1], n)
    span = ce[i1] - ce[i0]
    u = (xs - ce[i0]) / span if span > 0 else np.zeros_like(xs)
    return xs, err[i0] + (err[i1] - err[i0]) * psi_exponential(np.clip(u, 0.0, 1.0))


def select_checkpoints(train_ce: np.ndarray, valid: np.ndarray, epochs: np.ndarray, mode: str,
                       target: float | None = None, epoch_loss: np.ndarray | None = None) -> np.ndarray:
    """One checkpoint index per member.

    ``train_ce``, ``valid``: (M, C) training CE and validity of every checkpoint; ``epochs``: (C,) (the engine
    counts epochs of the clean phase only, so epoch 0 is the initialisation or the end of the pretraining and is
    never a candidate). Modes:
    - ``reference``: argmin_e |L_train(θ_e) − target| over valid checkpoints at epoch > 0
      (normalized_loss_linear.txt Fig 1: "we pick a network that is closest to an arbitrarily … chosen reference
      training loss (0.006 here)");
    - ``final``: the last valid checkpoint (runs trained for a fixed number of epochs, Figs 3, 6, 7; and runs
      stopped by the recipe's ``stop_at_train_loss``, whose last valid checkpoint is the stopping point);
    - ``stop``: the first whole-epoch checkpoint whose epoch-mean training loss ``epoch_loss`` (M, E) is ≤
      target: the checkpoint the engine's ``stop_at_train_loss`` rule would have stopped at (Figs 14, 18:
      "SGD … was run on all networks … until each reached approximately 0.0044 ± 0.0001"), read off a run
      trained longer (training up to that epoch is the same run).
    Raises naming the member if it has no eligible checkpoint.
    """
    train_ce = np.asarray(train_ce, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    epochs = np.asarray(epochs, dtype=np.float64)
    chosen = np.empty(valid.shape[0], dtype=np.int64)
    for m in range(valid.shape[0]):
        if mode == "final":
            ok = np.flatnonzero(valid[m])
            if len(ok) == 0:
                raise ValueError(f"member {m}: no valid checkpoint")
            chosen[m] = ok[-1]
        elif mode == "reference":
            if target is None:
                raise ValueError("selection 'reference' needs a reference training loss")
            ok = np.flatnonzero(valid[m] & (epochs > 0) & np.isfinite(train_ce[m]))
            if len(ok) == 0:
                raise ValueError(f"member {m}: no valid checkpoint after epoch 0")
            chosen[m] = ok[np.argmin(np.abs(train_ce[m, ok] - target))]
        elif mode == "stop":
            if target is None or epoch_loss is None:
                raise ValueError("selection 'stop' needs the target loss and the per-epoch training loss")
            whole = valid[m] & (epochs > 0) & (epochs == np.round(epochs))
            reached = [c for c in np.flatnonzero(whole) if epoch_loss[m, int(epochs[c]) - 1] <= target]
            if not reached:
                raise ValueError(f"member {m}: the epoch-mean training loss never reached {target} "
                                 f"(lowest {np.nanmin(epoch_loss[m]):.4g}); train longer")
            chosen[m] = reached[0]
        else:
            raise ValueError(f"unknown snapshot selection {mode!r} (reference | final | stop)")
    return chosen


# ------------------------------------------------------------------------------- network post-processing


def _affine_and_bn_layers(model):
    """(affine layer, its BN or None) pairs in forward (= registration) order; Linear and Conv layers only."""
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.conv import _ConvNd

    pairs: list[list] = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, _ConvNd)):
            pairs.append([module, None])
        elif isinstance(module, _BatchNorm):
            if not pairs or pairs[-1][1] is not None:
                raise ValueError(f"{type(module).__name__} without a preceding Linear/Conv layer: cannot absorb")
            pairs[-1][1] = module
    return pairs


def absorb_batchnorm(model):
    """A float64 copy of ``model`` in eval mode with every BatchNorm folded into the layer before it.

    Per output channel c with eval statistics (normalized_loss_linear.txt Fig 1 caption; FIGURES.md §3.3):
    s_c = γ_c / √(σ²_c + ε), W'_c = s_c W_c, b'_c = s_c (b_c − μ_c) + β_c; the BN module becomes Identity.
    Assumes BN directly follows its Linear/Conv layer in registration order (true for every model of this
    study: mlp, conv3_firstbias, conv5_bn); the caller checks that outputs are unchanged.
    """
    import torch
    from torch import nn

    net = copy.deepcopy(model).double().eval()
    for layer, bn in _affine_and_bn_layers(net):
        if bn is None:
            continue
        if not bn.track_running_stats or bn.running_mean is None:
            raise ValueError("BatchNorm without running statistics cannot be absorbed (eval mode needs them)")
        with torch.no_grad():
            scale = 1.0 / torch.sqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.affine:
                shift = shift * bn.weight + bn.bias
                scale = scale * bn.weight
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            old_bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
            layer.weight.mul_(scale.reshape(shape))
            new_bias = scale * old_bias + shift
            if layer.bias is None:
                layer.bias = nn.Parameter(new_bias)
            else:
                layer.bias.copy_(new_bias)
        _replace_module(net, bn, nn.Identity())
    return net


def _replace_module(root, old, new) -> None:
    for parent in root.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise ValueError("module to replace not found")


def lp_norm(tensor, p: float) -> float:
    """Entrywise L_p norm (Σ |w|^p)^(1/p) of a whole tensor (p = 2: Frobenius; p = inf: max |w|)."""
    import torch

    t = tensor.detach().double().flatten()
    if math.isinf(p):
        return float(t.abs().max())
    return float(torch.linalg.vector_norm(t, ord=p))


def normalise_layerwise(model, p: float = 2.0, divisor: float = 1.0, first_bias_in_norm: bool = True):
    """Layerwise normalisation W_k = ρ_k W̃_k (normalized_loss_linear.txt §3.1, Eq. 1) of a BN-free net.

    ρ_k = ‖W_k‖_p / divisor (entrywise; divisor 100 for Fig 13's "L1 norm (divided by 100)"); the first
    layer's bias counts as the weight of a constant input, ρ₁ = ‖[W₁ | b₁]‖_p / divisor
    (``first_bias_in_norm``); later biases b̃_k = b_k / ∏_{j≤k} ρ_j. For a positively homogeneous (ReLU) net
    this gives
    f̃(x) = f(x) / ∏_k ρ_k exactly, so predictions are unchanged. Returns (normalised float64 copy, [ρ_k]).
    """
    import torch

    net = copy.deepcopy(model).double().eval()
    pairs = _affine_and_bn_layers(net)
    if any(bn is not None for _, bn in pairs):
        raise ValueError("normalise_layerwise needs a BN-free net: call absorb_batchnorm first")
    rhos: list[float] = []
    cumulative = 1.0
    with torch.no_grad():
        for k, (layer, _) in enumerate(pairs):
            if k == 0 and first_bias_in_norm and layer.bias is not None:
                flat = torch.cat([layer.weight.flatten(), layer.bias.flatten()])
            else:
                flat = layer.weight
            rho = lp_norm(flat, p) / divisor
            if not rho > 0:
                raise ValueError(f"layer {k} has zero norm: cannot normalise")
            cumulative *= rho
            layer.weight.div_(rho)
            if layer.bias is not None:
                layer.bias.div_(cumulative)
            rhos.append(rho)
    return net, rhos


def forward_logits(model, x: np.ndarray, device: str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` (already float64, eval mode) on ``x``, in float64, as a numpy array."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.asarray(x[i : i + batch_size], dtype=np.float64), device=device)
            out.append(model(xb).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean multi-class cross-entropy −(1/n) Σ_n log softmax(f(x_n))_{y_n} (float64, log-sum-exp stable)."""
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def error_rate(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) != y))


# ------------------------------------------------------------------------------------------- experiments


def point_label(spec: dict, dataset_specs: dict[str, dict]) -> dict[str, Any]:
    """What a run is in the paper's figures: kind (natural | RL), corruption q and init σ.

    RL = trained on a ``random_labels`` dataset. q = the ``corrupt_labels`` fraction of the pretraining set
    (1 for a ``random_labels`` pretraining set, 0 for clean or no pretraining). σ = the Gaussian init std
    (NaN for another scheme).
    """
    ds = dataset_specs[spec["dataset"]]
    kind = "RL" if ds.get("derivation") == "random_labels" else "natural"
    q = 0.0
    pre = spec.get("pretrain")
    if pre:
        pre_spec = dataset_specs[pre["dataset"]]
        if pre_spec.get("derivation") == "corrupt_labels":
            q = float(pre_spec["fraction"])
        elif pre_spec.get("derivation") == "random_labels":
            q = 1.0
    init = spec.get("init") or {}
    sigma = float(init["std"]) if init.get("scheme") == "gaussian" and "std" in init else math.nan
    return {"kind": kind, "q": q, "sigma": sigma}


def _label_text(kind: str, q: float, sigma: float, label_by: str) -> str:
    if kind == "RL":
        return "RL"
    if label_by == "corruption":
        return f"{q:g}"
    if label_by == "init":
        return f"{sigma:g}" if not math.isnan(sigma) else "default"
    return "0"


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _checkpoint_losses(checkpoints_path: str, seed: int, member: int, indices: np.ndarray, x: np.ndarray,
                       y: np.ndarray, device: str) -> np.ndarray:
    """Training CE (float64) of one member at each of ``indices``: one model, its weights swapped per checkpoint
    (reading the member's weights once instead of rebuilding the model for every checkpoint)."""
    import h5py
    import torch

    from lossatlas.evaluation import load_checkpoint_model

    net = load_checkpoint_model(checkpoints_path, seed, int(indices[0])).double().to(device).eval()
    with h5py.File(checkpoints_path, "r") as f:
        weights = {k: f["weights"][k][member] for k in f["weights"]}
    out = np.empty(len(indices))
    reference = net.state_dict()
    for i, c in enumerate(indices):
        net.load_state_dict({k: torch.as_tensor(v[c]).to(reference[k].dtype) for k, v in weights.items()})
        out[i] = cross_entropy(forward_logits(net, x, device), y)
    return out


def postprocess_experiment(experiment: str, runs: list[dict], settings: dict, out_points: str | Path,
                           out_logits: str | Path) -> None:
    """Select, post-process and measure one snapshot per member of every run of one experiment.

    ``runs``: one dict per seed block with keys ``recipe, dataset, arch, spec, checkpoints, data`` (paths),
    ``dataset_specs`` ({name: config entry} for its dataset and pretraining dataset). Only checkpoints.h5 is
    read (not metrics.h5): 'reference' selection measures the training CE of every checkpoint here, in float64.
    ``settings``: ``selection`` (reference | final | stop), ``reference_train_loss``, ``stop_train_loss``,
    ``label_by`` (corruption | init | none), ``norms`` ([{name, p, divisor}], must include ``fro``),
    ``first_bias_in_norm``, ``require_zero_train_error`` (``in_fit`` is false for a point whose training
    error is not 0), ``device``.
    Writes ``out_points`` (CSV, one row per member; columns documented below) and ``out_logits``
    (HDF5: per point, the max logit of the unnormalised and the Frobenius-normalised net on every training
    example, Figs 19/20).
    """
    import h5py
    import pandas as pd

    from lossatlas.datasets import load_dataset
    from lossatlas.evaluation import load_checkpoint_model

    device = _resolve_device(settings.get("device", "auto"))
    norms = settings["norms"]
    if "fro" not in {n["name"] for n in norms}:
        raise ValueError(f"studies.normalized_loss.norms must define 'fro' (the figures use it), got {norms}")
    rows: list[dict[str, Any]] = []
    max_logits: list[tuple[np.ndarray, np.ndarray]] = []
    data_cache: dict[str, Any] = {}
    for run in runs:
        spec = run["spec"]
        if run["data"] not in data_cache:
            data_cache[run["data"]] = load_dataset(run["data"])
        ds = data_cache[run["data"]]
        xs = {s: ds.float_inputs(s) for s in SPLITS}
        ys = {s: ds.split(s)[1] for s in SPLITS}
        label = point_label(spec, run["dataset_specs"])
        with h5py.File(run["checkpoints"], "r") as f:
            members = [int(v) for v in f["members"][:]]
            valid = f["checkpoints/valid"][:]
            epochs = f["checkpoints/epoch"][:]
            epoch_loss = f["train_log/loss"][:]
            diverged = f["status/diverged"][:]
        train_ce = np.full(valid.shape, np.nan)
        if settings["selection"] == "reference":
            for m, seed in enumerate(members):
                candidates = np.flatnonzero(valid[m] & (epochs > 0))
                if len(candidates):
                    train_ce[m, candidates] = _checkpoint_losses(run["checkpoints"], seed, m, candidates,
                                                                 xs["train"], ys["train"], device)
        stop = settings["selection"] == "stop"
        target = settings["stop_train_loss"] if stop else settings["reference_train_loss"]
        chosen = select_checkpoints(train_ce, valid, epochs, settings["selection"], target, epoch_loss)
        for m, seed in enumerate(members):
            where = f"{run['checkpoints']} member seed {seed}"
            if diverged[m]:
                raise ValueError(f"{where}: diverged; change the recipe (lr, init) so every member trains")
            index = int(chosen[m])
            model = load_checkpoint_model(run["checkpoints"], seed, index)
            row = dict(experiment=experiment, recipe=run["recipe"], dataset=run["dataset"], arch=run["arch"],
                       seed=seed, kind=label["kind"], q=label["q"], sigma=label["sigma"],
                       label=_label_text(label["kind"], label["q"], label["sigma"], settings["label_by"]),
                       num_classes=ds.num_classes, checkpoint=index, epoch=float(epochs[index]),
                       epoch_train_loss=float(epoch_loss[m, int(epochs[index]) - 1]) if epochs[index] >= 1
                       else math.nan)
            row.update(measure_snapshot(model, xs, ys, norms, settings.get("first_bias_in_norm", True), device,
                                        where, max_logits))
            row["in_fit"] = enters_fit(row["train_err"], settings.get("require_zero_train_error", False))
            rows.append(row)
            log.info("%s: epoch %g train CE %.5g test CE %.5g normalised %.6f / %.6f", where, row["epoch"],
                     row["train_ce"], row["test_ce"], row["train_ce_fro"], row["test_ce_fro"])
    table = pd.DataFrame(rows)
    with atomic_path(out_points) as tmp:
        table.to_csv(tmp, index=False, float_format="%.12g")
    with atomic_path(out_logits) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["experiment"] = experiment
            f.attrs["points"] = json.dumps([{k: r[k] for k in ("recipe", "dataset", "arch", "seed", "label")}
                                            for r in rows])
            for i, (raw, normalised) in enumerate(max_logits):
                g = f.create_group(f"point{i}")
                g.create_dataset("unnormalised", data=raw)
                g.create_dataset("normalised", data=normalised)


def measure_snapshot(model, xs: dict, ys: dict, norms: list[dict], first_bias_in_norm: bool, device: str,
                     where: str, max_logits: list | None = None) -> dict[str, float]:
    """Unnormalised and normalised CE / error on train and test of one snapshot, in float64.

    Checks that BN absorption leaves the logits unchanged and that normalisation divides them by ∏ρ (so the
    predictions are the same); raises naming ``where`` otherwise. Appends (max unnormalised logit, max
    Frobenius-normalised logit) per training example to ``max_logits``.
    """
    model = model.double().eval().to(device)
    absorbed = absorb_batchnorm(model)
    out: dict[str, float] = {}
    raw = {s: forward_logits(absorbed, xs[s], device) for s in SPLITS}
    reference = forward_logits(model, xs["train"][:256], device)
    dev = float(np.max(np.abs(reference - raw["train"][:256]))) if len(reference) else 0.0
    if dev > 1e-6 * max(1.0, float(np.max(np.abs(reference)))):
        raise ValueError(f"{where}: BN absorption changed the logits by {dev:.3g} (unsupported layer order?)")
    for s in SPLITS:
        out[f"{s}_ce"] = cross_entropy(raw[s], ys[s])
        out[f"{s}_err"] = error_rate(raw[s], ys[s])
    for spec in norms:
        name = spec["name"]
        p = math.inf if spec["p"] in ("inf", math.inf) else float(spec["p"])
        normalised, rhos = normalise_layerwise(absorbed, p, float(spec.get("divisor", 1.0)), first_bias_in_norm)
        product = math.prod(rhos)
        out[f"product_{name}"] = product
        out[f"layer_norms_{name}"] = json.dumps(rhos)
        for s in SPLITS:
            logits = forward_logits(normalised, xs[s], device)
            gap = float(np.max(np.abs(logits * product - raw[s]))) if len(logits) else 0.0
            scale = max(1.0, float(np.max(np.abs(raw[s]))))
            if gap > 1e-8 * scale:
                raise ValueError(f"{where}: {name}-normalised logits × ∏ρ differ from the logits by {gap:.3g} "
                                 "(net not positively homogeneous?)")
            out[f"{s}_ce_{name}"] = cross_entropy(logits, ys[s])
            out[f"{s}_err_{name}"] = error_rate(logits, ys[s])
            if name == "fro" and s == "train" and max_logits is not None:
                max_logits.append((raw[s].max(axis=1), logits.max(axis=1)))
    return out


def enters_fit(train_err: float, require_zero_train_error: bool) -> bool:
    """Whether a point enters its experiment's fits: always, or with ``require_zero_train_error`` only at
    training error 0."""
    return not require_zero_train_error or train_err == 0.0


def histogram_point(points) -> int:
    """Row of the network whose max logits Figs 19/20 show: the natural-label point with the smallest init σ
    (default initialisation counts as smallest), lowest seed first. The paper does not say which of its MNIST
    networks it shows (App. F)."""
    nat = points[points["kind"] == "natural"]
    if nat.empty:
        raise ValueError("no natural-label point for the max-logit histograms")
    order = nat.assign(_s=nat["sigma"].fillna(-1.0)).sort_values(["_s", "seed", "recipe"])
    return int(order.index[0])


# ----------------------------------------------------------------------------------------------- tables


def _subset(points, which: str):
    """The fit's points (``which``: all | natural) that enter fits, and how many of them were left out."""
    pts = points if which == "all" else points[points["kind"] == "natural"]
    admitted = pts["in_fit"].astype(bool) if "in_fit" in pts else np.ones(len(pts), dtype=bool)
    return pts[admitted], int((~admitted).sum())


def fit_table(points_paths: dict[str, str], out_fits: str | Path, out_correlations: str | Path) -> None:
    """Every figure's OLS fit (``FIGURE_FITS``) and correlation (``FIGURE_CORRELATIONS``) as CSV tables.

    ``points_paths``: experiment name → points.csv. Fits: n, slope, intercept, R², adjusted R², RMSE (n − 2
    d.o.f.), √(SSE/n), the (ln K, ln K) gap, and the paper's numbers beside them. Correlations: Pearson r and
    Spearman ρ. Both count the points left out (``left_out``: not ``in_fit``). Experiments missing from
    ``points_paths`` (not configured) are skipped.
    """
    import pandas as pd
    from scipy import stats

    points = {name: pd.read_csv(path) for name, path in points_paths.items()}
    fit_rows = []
    for fit in FIGURE_FITS:
        if fit["experiment"] not in points:
            continue
        pts, left_out = _subset(points[fit["experiment"]], fit["points"])
        res = ols_fit(pts[fit["x"]], pts[fit["y"]])
        k = int(pts["num_classes"].iloc[0]) if len(pts) else 0
        paper = fit["paper"] or {}
        fit_rows.append(dict(
            figure=fit["figure"], panel=fit["panel"], experiment=fit["experiment"], x=fit["x"], y=fit["y"],
            points=fit["points"], n=res["n"], left_out=left_out, slope=res["slope"], intercept=res["intercept"],
            r2=res["r2"],
            adj_r2=res["adj_r2"], rmse=res["rmse"], rmse_n=res["rmse_n"], num_classes=k,
            ln_k=math.log(k) if k else math.nan,
            fixed_point_gap=fixed_point_gap(res["slope"], res["intercept"], k) if k else math.nan,
            paper_slope=paper.get("slope", math.nan), paper_intercept=paper.get("intercept", math.nan),
            paper_r2=paper.get("r2", math.nan), paper_adj_r2=paper.get("adj_r2", math.nan),
            paper_rmse=paper.get("rmse", math.nan),
            paper_fixed_point_gap=(fixed_point_gap(paper["slope"], paper["intercept"], 10) if paper
                                   else math.nan)))
    corr_rows = []
    for c in FIGURE_CORRELATIONS:
        if c["experiment"] not in points:
            continue
        pts, left_out = _subset(points[c["experiment"]], c["points"])
        x, y = pts[c["x"]].to_numpy(float), pts[c["y"]].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        varied = len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
        corr_rows.append(dict(figure=c["figure"], experiment=c["experiment"], x=c["x"], y=c["y"],
                              points=c["points"], n=len(x), left_out=left_out, claim=c["claim"],
                              pearson_r=float(stats.pearsonr(x, y)[0]) if varied else math.nan,
                              spearman_rho=float(stats.spearmanr(x, y)[0]) if varied else math.nan))
    with atomic_path(out_fits) as tmp:
        pd.DataFrame(fit_rows).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_correlations) as tmp:
        pd.DataFrame(corr_rows).to_csv(tmp, index=False, float_format="%.6g")


def min_pairwise_difference(values: Sequence[float]) -> float:
    """min_{i<j} |v_i − v_j| in float64 (the smallest gap between neighbours after sorting); NaN for < 2 values."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return float(np.min(np.diff(v))) if v.size >= 2 else math.nan


def loss_differences(points_path: str | Path | None, out_json: str | Path,
                     experiment: str = LOSS_DIFFERENCES_EXPERIMENT, which: str = "natural") -> None:
    """App. F: "the differences between loss values [are] far from machine precision ~10^-7.5", as numbers:
    the smallest pairwise difference of the normalised (Frobenius) train and test CE over the Fig 3 points
    (``experiment``, natural-label runs, as the Fig 3 fit), next to float32 / float64 machine epsilon.

    points.csv stores 12 significant digits, so differences down to ~1e-11 at losses ~2.3 are resolved. Without
    the experiment configured (None) the file says so and holds no numbers.
    """
    import pandas as pd

    result: dict[str, Any] = {"experiment": experiment, "points": which, "float32_eps": float(np.finfo(np.float32).eps),
                              "float64_eps": float(np.finfo(np.float64).eps), "paper_machine_precision": 10 ** -7.5}
    if points_path is None:
        write_json(out_json, {**result, "n_points": 0, "note": f"experiment {experiment} is not configured"})
        return
    pts, _ = _subset(pd.read_csv(points_path), which)
    for column, key in (("train_ce_fro", "train"), ("test_ce_fro", "test")):
        v = pts[column].to_numpy(np.float64)
        result[f"min_pairwise_normalised_{key}_ce_difference"] = min_pairwise_difference(v[np.isfinite(v)])
    result["n_points"] = int(len(pts))
    write_json(out_json, result)


def max_logit_table(points_path: str | Path | None, max_logits_path: str | Path | None,
                    out_csv: str | Path, out_values: str | Path | None = None) -> None:
    """Figs 19, 20 as numbers: mean, std, min, max of the max logit max_k f_k(x) over the training set, for the
    unnormalised and the Frobenius-normalised net of ``histogram_point`` (App. F: mean 0.026683, std 0.007144
    normalised; 60.564373, 16.214078 unnormalised), with that net's product of norms (the ratio of the two
    means for a homogeneous net). ``out_values`` (.npz) gets the two arrays themselves, the histograms' data.
    Without an experiment for the histograms (None), the table has no rows and the arrays are empty."""
    import h5py
    import pandas as pd

    columns = ["which", "mean", "std", "min", "max", "n", "experiment", "recipe", "arch", "seed", "label",
               "product_fro"]
    values = {"normalised": np.zeros(0), "unnormalised": np.zeros(0)}
    if points_path is None or max_logits_path is None:
        with atomic_path(out_csv) as tmp:
            pd.DataFrame(columns=columns).to_csv(tmp, index=False)
        _write_arrays(out_values, values)
        return
    pts = pd.read_csv(points_path, dtype={"label": str})
    index = histogram_point(pts)
    r = pts.iloc[index]
    rows = []
    with h5py.File(max_logits_path, "r") as f:
        for which in ("normalised", "unnormalised"):
            v = values[which] = f[f"point{index}/{which}"][:]
            rows.append(dict(which=which, mean=float(v.mean()), std=float(v.std()), min=float(v.min()),
                             max=float(v.max()), n=len(v), experiment=r["experiment"], recipe=r["recipe"],
                             arch=r["arch"], seed=int(r["seed"]), label=r["label"],
                             product_fro=float(r["product_fro"])))
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.8g")
    _write_arrays(out_values, values)


def _write_arrays(path: str | Path | None, arrays: dict) -> None:
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def psi_overlay_table(points_paths: dict[str, str], out_csv: str | Path) -> None:
    """The ψ curve of ``psi_overlay`` over each experiment's (normalised CE, normalised error) points, all of them
    (the RL points give the chance-error end): rows (experiment, x, y); none for an experiment whose normalised
    training losses do not vary."""
    import pandas as pd

    frames = []
    for experiment, path in points_paths.items():
        pts = pd.read_csv(path)
        if len(pts) >= 2 and np.ptp(pts["train_ce_fro"]) > 0:
            xs, ys = psi_overlay(pts["train_ce_fro"].to_numpy(), pts["test_err_fro"].to_numpy())
            frames.append(pd.DataFrame({"experiment": experiment, "x": xs, "y": ys}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["experiment", "x", "y"])
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)


def analyse(points_paths: dict[str, str], max_logits_paths: dict[str, str], out: dict[str, str]) -> None:
    """The study's one analysis job: every table the figures and claims read, from the experiments' points.csv
    and max_logits.h5 (``points_paths``, ``max_logits_paths``: experiment -> file; experiments not configured are
    absent). ``out`` maps fits, correlations, max_logits, max_logit_values, loss_differences, psi_overlay to
    their files."""
    fit_table(points_paths, out["fits"], out["correlations"])
    max_logit_table(points_paths.get(HISTOGRAM_EXPERIMENT), max_logits_paths.get(HISTOGRAM_EXPERIMENT),
                    out["max_logits"], out["max_logit_values"])
    loss_differences(points_paths.get(LOSS_DIFFERENCES_EXPERIMENT), out["loss_differences"],
                     LOSS_DIFFERENCES_EXPERIMENT)
    psi_overlay_table(points_paths, out["psi_overlay"])
