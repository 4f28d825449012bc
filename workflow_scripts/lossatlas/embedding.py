"""The embedding principle for fully-connected networks (Zhang et al., embedding_principle.txt).

A network of depth L has widths m_0 = d, m_1, ..., m_L = d_out and parameters W^[l] (m_l x m_{l-1}), b^[l] (m_l):
f^[l](x) = sigma(W^[l] f^[l-1](x) + b^[l]) for the hidden layers l < L, f(x) = W^[L] f^[L-1](x) (+ b^[L])
(embedding_principle.txt §4, FIGURES.md §5.2). The paper's experiments use no output bias
(f = sum_k a_k sigma(w_k . x_bar), x_bar = [x, 1]); the output bias is optional here.

Everything is float64 numpy, and every array may carry leading batch axes (trials): W^[l] has shape
(..., m_l, m_{l-1}), so one call trains or evaluates a stack of independent networks. Exact Hessians use torch
autograd (float64) on a single network.

Empirical risk (§3, Eq. 3): R_S(theta) = mean over samples and output components of (f(x_i) - y_i)^2, i.e. torch's
MSELoss; the paper does not say whether a factor 1/2 or a sum over outputs is used, and neither changes critical
points or the sign pattern of Hessian eigenvalues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lossatlas.progress import Progress


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


# activation -> (sigma(z), sigma'(z) written in terms of z and h = sigma(z))
ACTIVATIONS = {
    "tanh": (np.tanh, lambda z, h: 1.0 - h * h),
    "sigmoid": (_sigmoid, lambda z, h: h * (1.0 - h)),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, h: z > 0),
    "identity": (lambda z: z, lambda z, h: np.ones_like(z)),
}


@dataclass
class FCN:
    """A fully-connected network (or a stack of them along leading axes): weights[l] is W^[l+1] of the paper."""

    weights: list[np.ndarray]
    biases: list[np.ndarray | None]
    activation: str

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{self.activation}' (choose from {sorted(ACTIVATIONS)})")
        if len(self.weights) != len(self.biases):
            raise ValueError("one bias entry (array or None) per layer is required")
        for l, b in enumerate(self.biases[:-1]):
            if b is None:
                raise ValueError(f"hidden layer {l + 1} needs a bias (the embedding copies it)")

    @property
    def widths(self) -> list[int]:
        return [self.weights[0].shape[-1]] + [w.shape[-2] for w in self.weights]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.weights[0].shape[:-2]

    def arrays(self) -> list[np.ndarray]:
        """Parameters in the order W1, b1, W2, b2, ... (absent biases skipped)."""
        out = []
        for w, b in zip(self.weights, self.biases, strict=True):
            out.append(w)
            if b is not None:
                out.append(b)
        return out

    def with_arrays(self, arrays: Sequence[np.ndarray]) -> FCN:
        arrays = list(arrays)
        weights, biases = [], []
        for b in self.biases:
            weights.append(arrays.pop(0))
            biases.append(arrays.pop(0) if b is not None else None)
        return FCN(weights, biases, self.activation)

    def copy(self) -> FCN:
        return self.with_arrays([a.copy() for a in self.arrays()])

    def member(self, index: int) -> FCN:
        """One network of a stack with one leading axis."""
        return self.with_arrays([a[index] for a in self.arrays()])


def init_fcn(widths: Sequence[int], activation: str, std: float, seed: int | Sequence[int],
             output_bias: bool = False) -> FCN:
    """All parameters i.i.d. N(0, std^2) (App. B: Gaussian, mean 0, a per-experiment variance)."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for l in range(1, len(widths)):
        weights.append(rng.normal(0.0, std, (widths[l], widths[l - 1])))
        has_bias = l < len(widths) - 1 or output_bias
        biases.append(rng.normal(0.0, std, widths[l]) if has_bias else None)
    return FCN(weights, biases, activation)


def init_trials(widths: Sequence[int], activation: str, std: float, seed: int, trials: int,
                output_bias: bool = False) -> FCN:
    """A stack of ``trials`` networks; trial t equals ``init_fcn(..., seed=[seed, t])`` trained alone."""
    nets = [init_fcn(widths, activation, std, [seed, t], output_bias) for t in range(trials)]
    return nets[0].with_arrays([np.stack(arrs) for arrs in zip(*(n.arrays() for n in nets), strict=True)])


# ------------------------------------------------------------------------------------------- forward pass


def _layer_input(h: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    z = h @ np.swapaxes(w, -1, -2)
    return z if b is None else z + b[..., None, :]


def features(net: FCN, x: np.ndarray) -> list[np.ndarray]:
    """Hidden-layer outputs f^[1](x), ..., f^[L-1](x), each (..., n, m_l)."""
    sigma = ACTIVATIONS[net.activation][0]
    h, out = x, []
    for w, b in zip(net.weights[:-1], net.biases[:-1], strict=True):
        h = sigma(_layer_input(h, w, b))
        out.append(h)
    return out


def forward(net: FCN, x: np.ndarray) -> np.ndarray:
    """Network output f_theta(x), shape (..., n, d_out)."""
    feats = features(net, x)
    return _layer_input(feats[-1] if feats else x, net.weights[-1], net.biases[-1])


def risk(net: FCN, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical risk R_S (module docstring), shape batch_shape."""
    return np.mean((forward(net, x) - y) ** 2, axis=(-2, -1))


def risk_and_gradient(net: FCN, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """R_S and its gradient (same order as ``net.arrays()``) by back-propagation."""
    sigma, dsigma = ACTIVATIONS[net.activation]
    hs, zs = [x], []
    for w, b in zip(net.weights[:-1], net.biases[:-1], strict=True):
        z = _layer_input(hs[-1], w, b)
        zs.append(z)
        hs.append(sigma(z))
    out = _layer_input(hs[-1], net.weights[-1], net.biases[-1])
    resid = out - y
    n, d_out = resid.shape[-2:]
    loss = np.mean(resid**2, axis=(-2, -1))
    delta = resid * (2.0 / (n * d_out))
    grads: list[np.ndarray] = []
    for l in range(len(net.weights) - 1, -1, -1):
        gw = np.swapaxes(delta, -1, -2) @ hs[l]
        layer = [gw] if net.biases[l] is None else [gw, delta.sum(axis=-2)]
        grads[:0] = layer
        if l > 0:
            delta = (delta @ net.weights[l]) * dsigma(zs[l - 1], hs[l])
    return loss, grads


def gradient_norm(grads: Sequence[np.ndarray], batch_ndim: int = 0) -> np.ndarray:
    """Euclidean norm of the whole parameter gradient, per network of a stack."""
    total = sum(np.sum(g**2, axis=tuple(range(batch_ndim, g.ndim))) for g in grads)
    return np.sqrt(total)


def num_parameters(net: FCN) -> int:
    nb = len(net.batch_shape)
    return int(sum(np.prod(a.shape[nb:]) for a in net.arrays()))


# ------------------------------------------------------------------------------------------- embedding


def one_step_embedding(net: FCN, layer: int, neuron: int, delta: float) -> FCN:
    """T^delta_{l,s} (Def. 5): copy neuron s of hidden layer l (1-based), split its output weights by delta, 1-delta.

    W'^[l] = [W^[l]; W^[l]_{s,:}], b'^[l] = [b^[l]; b^[l]_s]; column s of W^[l+1] is multiplied by delta and
    (1 - delta) W^[l+1]_{:,s} is appended as a new last column. All other parameters are unchanged.
    """
    num_hidden = len(net.weights) - 1
    if not 1 <= layer <= num_hidden:
        raise ValueError(f"layer must be a hidden layer 1..{num_hidden}, got {layer}")
    width = net.weights[layer - 1].shape[-2]
    if not 0 <= neuron < width:
        raise ValueError(f"neuron must be in 0..{width - 1} for layer {layer}, got {neuron}")
    weights = [w.copy() for w in net.weights]
    biases = [None if b is None else b.copy() for b in net.biases]
    w_in, b_in, w_out = weights[layer - 1], biases[layer - 1], weights[layer]
    weights[layer - 1] = np.concatenate([w_in, w_in[..., neuron : neuron + 1, :]], axis=-2)
    biases[layer - 1] = np.concatenate([b_in, b_in[..., neuron : neuron + 1]], axis=-1)
    column = w_out[..., :, neuron : neuron + 1].copy()
    w_out[..., :, neuron : neuron + 1] = delta * column
    weights[layer] = np.concatenate([w_out, (1.0 - delta) * column], axis=-1)
    return FCN(weights, biases, net.activation)


def multi_step_embedding(net: FCN, steps: Sequence[tuple[int, int, float]]) -> FCN:
    """Composition of one-step embeddings, each step (layer, neuron, delta) applied to the current network."""
    for layer, neuron, delta in steps:
        net = one_step_embedding(net, layer, neuron, delta)
    return net


def embedding_steps(widths: Sequence[int], target_widths: Sequence[int],
                    deltas: Sequence[float] = (0.5,)) -> list[tuple[int, int, float]]:
    """Steps that widen every hidden layer to ``target_widths`` (hidden widths only).

    The k-th split of a layer copies its original neuron k mod m_l with delta = deltas[k mod len(deltas)];
    any wider network of the same depth is reached this way (§4, multi-step embedding).
    """
    hidden = list(widths[1:-1])
    if len(target_widths) != len(hidden):
        raise ValueError(f"target_widths needs {len(hidden)} hidden widths, got {list(target_widths)}")
    steps = []
    for l, (m, target) in enumerate(zip(hidden, target_widths, strict=True), start=1):
        if target < m:
            raise ValueError(f"cannot embed layer {l} of width {m} into the narrower width {target}")
        for k in range(target - m):
            steps.append((l, k % m, float(deltas[k % len(deltas)])))
    return steps


# ------------------------------------------------------------------------------------------- reduction


def neuron_amplitudes(net: FCN, layer: int) -> np.ndarray:
    """Amplitude of each neuron of hidden layer l: ||output weights|| * ||input weights incl. bias||.

    The paper's definition is lost (FIGURES.md §5.3); this product is invariant under the ReLU rescaling
    (w, a) -> (c w, a / c).
    """
    w_bar = input_weights(net, layer)
    return np.linalg.norm(net.weights[layer], axis=-2) * np.linalg.norm(w_bar, axis=-1)


def input_weights(net: FCN, layer: int) -> np.ndarray:
    """w_bar_k = [W^[l]_{k,:}, b^[l]_k] for every neuron k of hidden layer l, shape (m_l, m_{l-1} + 1)."""
    return np.concatenate([net.weights[layer - 1], net.biases[layer - 1][..., None]], axis=-1)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """S_ij = <v_i, v_j> / (||v_i|| ||v_j||) (§3.2, Fig 5b)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def group_neurons(similarity: np.ndarray, amplitudes: np.ndarray, threshold: float,
                  min_amplitude_fraction: float) -> tuple[list[list[int]], list[int]]:
    """Greedy grouping by orientation (§3.2): neurons below ``min_amplitude_fraction * max amplitude`` are
    neglected; the remaining neurons, largest amplitude first, each open a group holding every ungrouped
    neuron whose similarity to it is >= threshold. The paper's threshold and its grouping procedure are lost.

    Returns (groups, neglected neurons); each group lists its opening neuron first.
    """
    keep = amplitudes >= min_amplitude_fraction * amplitudes.max()
    order = [int(k) for k in np.argsort(-amplitudes, kind="stable") if keep[k]]
    grouped: set[int] = set()
    groups = []
    for k in order:
        if k in grouped:
            continue
        group = [k] + [j for j in order if j not in grouped and j != k and similarity[k, j] >= threshold]
        grouped.update(group)
        groups.append(group)
    return groups, [int(k) for k in np.flatnonzero(~keep)]


def reduce_layer(net: FCN, layer: int, groups: Sequence[Sequence[int]], rule: str = "sum") -> FCN:
    """Replace each group of hidden layer l by its first neuron j carrying the group's output weight (§3.2).

    rule "sum": a_j <- sum_{k in G} a_k (exact when the input weights in G are identical, i.e. it inverts an
    embedding). rule "homogeneous": a_j <- sum_k a_k ||w_bar_k|| / ||w_bar_j||, exact for a 1-homogeneous
    activation (ReLU) when the input weights in G are parallel. Neurons in no group are removed.
    """
    if rule not in ("sum", "homogeneous"):
        raise ValueError(f"unknown reduction rule '{rule}' (sum | homogeneous)")
    w_bar_norm = np.linalg.norm(input_weights(net, layer), axis=-1)
    keep = [int(g[0]) for g in groups]
    w_out = net.weights[layer]
    columns = []
    for g in groups:
        scale = np.ones(len(g)) if rule == "sum" else w_bar_norm[list(g)] / w_bar_norm[g[0]]
        columns.append(w_out[..., :, list(g)] @ scale)
    weights = [w.copy() for w in net.weights]
    biases = [None if b is None else b.copy() for b in net.biases]
    weights[layer - 1] = weights[layer - 1][..., keep, :]
    biases[layer - 1] = biases[layer - 1][..., keep]
    weights[layer] = np.stack(columns, axis=-1)
    return FCN(weights, biases, net.activation)


# ------------------------------------------------------------------------------------------- training


@dataclass
class TrainRecord:
    """Full-batch training history: loss and gradient norm at every step (before the update), snapshots."""

    loss: np.ndarray  # (steps + 1, *batch)
    grad_norm: np.ndarray  # (steps + 1, *batch)
    snapshot_steps: np.ndarray  # (S,)
    snapshots: list[FCN]  # S networks (stacks when trained as a stack)
    final: FCN


def train_full_batch(net: FCN, x: np.ndarray, y: np.ndarray, optimizer: str, lr: float, steps: int,
                     snapshot_every: int) -> TrainRecord:
    """Full-batch GD (Figs 1, 3a, 4) or Adam with torch's defaults (beta 0.9, 0.999, eps 1e-8; Figs 3b, 5)."""
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"optimizer must be gd or adam, got '{optimizer}'")
    params = [a.copy() for a in net.arrays()]
    nb = len(net.batch_shape)
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    losses, norms, snap_steps, snaps = [], [], [], []
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    progress = Progress(f"full-batch {optimizer}", steps, unit="step")
    for t in range(steps + 1):
        current = net.with_arrays(params)
        loss, grads = risk_and_gradient(current, x, y)
        losses.append(loss)
        progress.update(t, loss=float(np.mean(loss)))
        norms.append(gradient_norm(grads, nb))
        if t % snapshot_every == 0 or t == steps:
            snap_steps.append(t)
            snaps.append(net.with_arrays([p.copy() for p in params]))
        if t == steps:
            break
        if optimizer == "gd":
            for p, g in zip(params, grads, strict=True):
                p -= lr * g
        else:
            c1, c2 = 1.0 - beta1 ** (t + 1), 1.0 - beta2 ** (t + 1)
            for p, g, a, b in zip(params, grads, m1, m2, strict=True):
                a *= beta1
                a += (1.0 - beta1) * g
                b *= beta2
                b += (1.0 - beta2) * g * g
                p -= lr * (a / c1) / (np.sqrt(b / c2) + eps)
    return TrainRecord(np.asarray(losses), np.asarray(norms), np.asarray(snap_steps), snaps,
                       net.with_arrays(params))


def find_stagnation(loss: np.ndarray, window: int, rel_tol: float, min_length: int,
                    skip_initial: bool = True) -> tuple[int, int] | None:
    """The first stretch [start, end) of steps where the loss decays extremely slowly (§3.2, Figs 1a, 5a).

    Step t stagnates when the relative decrease over the next ``window`` steps, (L_t - L_{t+window}) / L_t,
    is below ``rel_tol``; a stretch is a run of at least ``min_length`` stagnating steps. With skip_initial, a
    stretch that begins at step 0 (the saddle at the near-zero initialisation) is skipped. None when no
    stretch qualifies.
    """
    loss = np.asarray(loss, dtype=float)
    if len(loss) <= window:
        return None
    decrease = (loss[:-window] - loss[window:]) / np.maximum(np.abs(loss[:-window]), 1e-300)
    slow = np.abs(decrease) < rel_tol
    t, n = 0, len(slow)
    while t < n:
        if not slow[t]:
            t += 1
            continue
        start = t
        while t < n and slow[t]:
            t += 1
        if t - start >= min_length and not (skip_initial and start == 0):
            return start, t
    return None


def empirical_critical_point(record: TrainRecord, stretch: tuple[int, int]) -> int:
    """Index of the snapshot with the smallest gradient norm inside the stretch (§3.2)."""
    start, end = stretch
    inside = [i for i, s in enumerate(record.snapshot_steps) if start <= s <= end]
    if not inside:
        raise ValueError(f"no snapshot inside the stagnation stretch {stretch}; lower snapshot_every")
    return min(inside, key=lambda i: float(record.grad_norm[record.snapshot_steps[i]]))


# ------------------------------------------------------------------------------------------- Hessian


def hessian(net: FCN, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact Hessian of R_S with respect to all parameters (order of ``net.arrays()``), torch autograd, float64."""
    import torch

    shapes = [a.shape for a in net.arrays()]
    flat = torch.tensor(np.concatenate([a.ravel() for a in net.arrays()]), dtype=torch.float64)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    sigma = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda z: z}[
        net.activation]
    has_bias = [b is not None for b in net.biases]

    def risk_of(theta: torch.Tensor) -> torch.Tensor:
        parts, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            parts.append(theta[offset : offset + size].reshape(shape))
            offset += size
        h = xt
        for l, bias in enumerate(has_bias):
            w = parts.pop(0)
            h = h @ w.T + (parts.pop(0) if bias else 0.0)
            if l < len(has_bias) - 1:
                h = sigma(h)
        return torch.mean((h - yt) ** 2)

    return torch.autograd.functional.hessian(risk_of, flat).numpy()


def spectrum_counts(eigenvalues: np.ndarray, zero_rel_tol: float, significant_rel_tol: float) -> dict:
    """Counts of zero / negative / positive eigenvalues with tau = zero_rel_tol * max|lambda| (FIGURES.md §5.3).

    Also the 'significant' negative count (lambda < -significant_rel_tol * max|lambda|) and the gap around tau:
    the largest |lambda| counted as zero and the smallest counted as non-zero.
    """
    lam = np.asarray(eigenvalues, dtype=float)
    scale = float(np.max(np.abs(lam)))
    tau = zero_rel_tol * scale
    zero = np.abs(lam) <= tau
    return {
        "n_parameters": int(lam.size),
        "max_abs_eigenvalue": scale,
        "zero_threshold": tau,
        "n_zero": int(zero.sum()),
        "n_negative": int((lam < -tau).sum()),
        "n_positive": int((lam > tau).sum()),
        "n_negative_significant": int((lam < -significant_rel_tol * scale).sum()),
        "largest_abs_zero": float(np.abs(lam[zero]).max()) if zero.any() else None,
        "smallest_abs_nonzero": float(np.abs(lam[~zero]).min()) if (~zero).any() else None,
    }


def polish_critical_point(net: FCN, x: np.ndarray, y: np.ndarray, iterations: int = 100,
                          damping: float = 1e-3) -> tuple[FCN, list[float]]:
    """Refine an empirical critical point by solving grad R_S = 0 with Levenberg-Marquardt steps,
    step = -(H^2 + mu I)^{-1} H g (Gauss-Newton on the gradient field, so saddles are reached as well as minima).
    A step is kept only if it lowers the gradient norm (mu shrinks), otherwise mu grows, so the result is never
    worse than the input. Returns the net and the accepted gradient norms (first entry: the input's).
    """
    _, grads = risk_and_gradient(net, x, y)
    history = [float(gradient_norm(grads))]
    h = hessian(net, x, y)
    mu = damping * float(np.max(np.abs(np.linalg.eigvalsh(h)))) ** 2
    for _ in range(iterations):
        if history[-1] < 1e-14:
            break
        g = np.concatenate([a.ravel() for a in grads])
        step = np.linalg.solve(h @ h + mu * np.eye(len(g)), h @ g)
        candidate = unflatten(net, flatten(net) - step)
        _, cand_grads = risk_and_gradient(candidate, x, y)
        norm = float(gradient_norm(cand_grads))
        if norm < history[-1]:
            net, grads = candidate, cand_grads
            history.append(norm)
            h = hessian(net, x, y)
            mu /= 4.0
        else:
            mu *= 5.0
            if mu > 1e30:
                break
    return net, history


def unflatten(like: FCN, flat: np.ndarray) -> FCN:
    arrays, offset = [], 0
    for a in like.arrays():
        arrays.append(flat[offset : offset + a.size].reshape(a.shape))
        offset += a.size
    return like.with_arrays(arrays)


def flatten(net: FCN) -> np.ndarray:
    return np.concatenate([a.ravel() for a in net.arrays()])
