"""The members of a stacked group as channel groups of one wide network (``widen``), for training blocks fast.

G members with the same architecture become one network whose every layer holds the G members' layers side by
side and computes them as one operation:

- ``Conv2d`` / ``Conv1d`` → one grouped convolution (``groups`` × G): member g owns output channels
  [g·C_out, (g+1)·C_out);
- ``Linear`` → one batched matmul (``bmm``), weight (G, out, in);
- ``BatchNorm1d/2d`` (and ``OffsetBatchNorm``) → one BatchNorm over G·C channels (statistics per member and
  channel over the member's own batch, as alone);
- ``Flatten`` → a layout change; pools, padding and element-wise activations act per channel or element and
  are kept as they are; ``MemberDropout`` gets its masks in the wide layout (``to_wide``).

Activations travel in one of two layouts, told apart by their number of dimensions:
- image (4-d): (B, G·C, H, W), member g's channels in block g, channels_last in memory (what oneDNN and cuDNN
  are fastest with; on this 2-core CPU a grouped convolution in channels_last trains about 2× faster than a loop
  of the members' dense ones, while in the default layout it is no faster);
- vector (3-d): (G, F, B), features before examples, so that a ``Linear`` is ``bmm(W, x)`` and a BatchNorm over
  G·F channels works on a contiguous (1, G·F, B) view.
- 1-D signals travel in the image layout with height 1, (B, G·C, 1, L): a (B, G·C, L) tensor would look like
  the vector layout, and as images BatchNorm, Flatten and element-wise layers need no 1-D case (``Conv1d``
  is a height-1 ``conv2d``, as torch computes it anyway). A (C, L) input reaches the wide network flat, in
  the vector layout (``to_wide``'s image layout is for (C, H, W) inputs); its first ``Conv1d`` turns it into
  the signal layout. The 1-D models here have no pooling and no dropout, so nothing else needs a 1-D case.

Measured on this machine (one core, G = 16, SGD steps, mallopt as in ``lossatlas.entry.tune_allocator``): a
64-256-10 MLP with BN trains 1.4–1.9× faster than the same members stacked with ``torch.func.vmap`` (whose
BatchNorm rule and layout copies dominate) and 2.5–3× faster than a loop; the 8×8 tiny CNN and ResNet about
1.3–1.6× faster than a loop. A member computes exactly what it computes alone, up to float summation order
(grouped vs dense kernels).

Supported: models built from the layer types above, ``nn.Sequential`` and the ResNet blocks (whose forward uses
only their layers, ``F.relu`` and ``+``). Anything else (DenseNet's channel concatenation, other layer types)
is reported by ``unsupported_layers`` and trains stacked with ``torch.func.vmap`` or in a loop instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lossatlas.dropout import MemberDropout
from lossatlas.models import BasicBlock, Bottleneck, GlobalAvgPool

# Layers without parameters that act per channel (image layout) or per element: kept as they are.
PASSTHROUGH = (nn.ReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
               nn.ZeroPad2d, GlobalAvgPool)
# Containers whose forward only calls their layers, F.relu and +: the same forward works on wide layers.
CONTAINERS = (nn.Sequential, BasicBlock, Bottleneck)


def unsupported_layers(model: nn.Module) -> list[str]:
    """Names (``type`` at ``path``) of the modules of ``model`` that ``widen`` cannot turn into a wide layer."""
    bad = []
    for name, m in model.named_modules():
        if isinstance(m, (*CONTAINERS, *PASSTHROUGH, nn.Flatten, nn.Dropout, MemberDropout)):
            if isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1):
                bad.append(f"{type(m).__name__} at {name!r} (start_dim/end_dim other than 1/-1)")
            continue
        if type(m) is nn.Linear or (type(m) in (nn.Conv2d, nn.Conv1d) and m.padding_mode == "zeros"):
            continue
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        bad.append(f"{type(m).__name__} at {name!r}")
    return bad


class WideLinear(nn.Module):
    """G ``nn.Linear`` layers as one ``bmm`` on the vector layout (G, in, B) → (G, out, B)."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        has_bias = layers[0].bias is not None
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])) if has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(self.weight, x)
        return torch.baddbmm(self.bias.unsqueeze(-1), self.weight, x)


class WideConv2d(nn.Module):
    """G ``nn.Conv2d`` layers as one grouped convolution on the image layout (B, G·C_in, H, W)."""

    def __init__(self, layers: Sequence[nn.Conv2d]):
        super().__init__()
        m = layers[0]
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in layers]))
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in layers])) if m.bias is not None else None
        self.stride, self.padding, self.dilation = m.stride, m.padding, m.dilation
        self.groups = m.groups * len(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class WideConv1d(nn.Module):
    """G ``nn.Conv1d`` layers as one grouped height-1 convolution on the signal layout (B, G·C_in, 1, L); a
    vector-layout input (G, C_in·L, B), the network's own input, is first laid out as signals."""

    def __init__(self, layers: Sequence[nn.Conv1d]):
        super().__init__()
        m = layers[0]
        self.in_channels = m.in_channels
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in layers]))  # (G·C_out, C_in/groups, k)
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in layers])) if m.bias is not None else None
        self.stride, self.dilation = (1, m.stride[0]), (1, m.dilation[0])
        self.padding = m.padding if isinstance(m.padding, str) else (0, m.padding[0])
        self.groups = m.groups * len(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (G, C·L, B) → (B, G·C, 1, L), each member's features in its (C, L) order
            g, features, b = x.shape
            x = x.permute(2, 0, 1).reshape(b, g * self.in_channels, 1, features // self.in_channels)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class WideBatchNorm(nn.Module):
    """G BatchNorm layers (1d or 2d, with App. C's scale offset where the members have one) as one BatchNorm
    over G·C channels; the same update of the running statistics and of ``num_batches_tracked`` as
    ``nn.BatchNorm``'s forward."""

    def __init__(self, layers: Sequence[_BatchNorm]):
        super().__init__()
        m = layers[0]
        self.momentum, self.eps, self.offset = m.momentum, m.eps, float(getattr(m, "offset", 0.0))
        self.track_running_stats = m.track_running_stats
        self.weight = nn.Parameter(torch.cat([b.weight.detach() for b in layers])) if m.affine else None
        self.bias = nn.Parameter(torch.cat([b.bias.detach() for b in layers])) if m.affine else None
        if m.track_running_stats:
            self.register_buffer("running_mean", torch.cat([b.running_mean for b in layers]))
            self.register_buffer("running_var", torch.cat([b.running_var for b in layers]))
            self.register_buffer("num_batches_tracked", torch.stack([b.num_batches_tracked for b in layers]))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)  # the members step together: equal counts
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked[0])
        use_batch_stats = self.training or not self.track_running_stats
        weight = self.weight + self.offset if self.offset and self.weight is not None else self.weight
        if x.dim() == 3:  # vector layout (G, F, B): channels g·F + f, statistics over B
            g, f, b = x.shape
            out = F.batch_norm(x.reshape(1, g * f, b), self.running_mean, self.running_var, weight, self.bias,
                               use_batch_stats, factor, self.eps)
            return out.view(g, f, b)
        return F.batch_norm(x, self.running_mean, self.running_var, weight, self.bias, use_batch_stats, factor,
                            self.eps)


class WideFlatten(nn.Module):
    """``nn.Flatten`` of every member: image (B, G·C, H, W) → vector (G, C·H·W, B), each member's features in
    its own (C, H, W) order; a vector-layout input is already flat."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return x
        return x.reshape(x.shape[0], self.members, -1).permute(1, 2, 0).contiguous()


def widen(models: Sequence[nn.Module]) -> nn.Module:
    """One wide network computing ``models`` (same architecture, own weights) side by side; see the module
    docstring. Its state_dict has the members' keys; ``member_view`` turns a tensor of it into (G, *shape)."""
    import copy

    bad = unsupported_layers(models[0])
    if bad:
        raise ValueError(f"cannot stack these layers as channel groups: {', '.join(bad)}")
    wide = copy.deepcopy(models[0])

    def convert(module: nn.Module, peers: list[nn.Module]) -> None:
        for name, child in list(module.named_children()):
            kids = [getattr(p, name) for p in peers]
            if type(child) is nn.Linear:
                setattr(module, name, WideLinear(kids))
            elif type(child) is nn.Conv2d:
                setattr(module, name, WideConv2d(kids))
            elif type(child) is nn.Conv1d:
                setattr(module, name, WideConv1d(kids))
            elif isinstance(child, _BatchNorm):
                setattr(module, name, WideBatchNorm(kids))
            elif isinstance(child, nn.Flatten):
                setattr(module, name, WideFlatten(len(peers)))
            else:
                convert(child, kids)

    convert(wide, list(models))
    return wide


def member_view(tensor: torch.Tensor, members: int, shape: Sequence[int]) -> torch.Tensor:
    """A wide tensor as (G, *member shape): every wide tensor holds member g's block at index g of dim 0."""
    return tensor.view(members, *shape)


def to_wide(x: torch.Tensor, image: bool) -> torch.Tensor:
    """Per-member tensor (G, B, *shape) → the wide layout: image (B, G·C, H, W) channels_last, else the vector
    layout (G, F, B). Used for the input batch and for dropout masks (which have the shape of the member's
    activation they multiply)."""
    if x.dim() == 5 and image:
        g, b, c, h, w = x.shape
        # one copy straight into channels_last order (B, H, W, G·C), seen as (B, G·C, H, W)
        return x.permute(1, 3, 4, 0, 2).reshape(b, h, w, g * c).permute(0, 3, 1, 2)
    g, b = x.shape[:2]
    return x.reshape(g, b, -1).transpose(1, 2)


def from_wide_output(out: torch.Tensor) -> torch.Tensor:
    """The wide network's output (G, K, B) as (G, B, K), what ``optim.batch_loss`` takes."""
    if out.dim() != 3:
        raise ValueError(f"a stacked model must end in a Linear layer (vector layout), got shape {tuple(out.shape)}")
    return out.transpose(1, 2)


def kernel_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every convolution and Linear layer of ``model``, plain or widened: what a Keras
    ``kernel_regularizer`` acts on (biases and BatchNorm are not included)."""
    kernel_layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, WideLinear, WideConv1d, WideConv2d)
    return [m.weight for m in model.modules() if isinstance(m, kernel_layers)]


def kernel_l2_penalty(weights: list[torch.Tensor], coefficient: float) -> torch.Tensor:
    """Keras ``regularizers.l2(coefficient)``: coefficient · Σ w² over ``weights`` (added to the loss, it adds
    2 · coefficient · w to each kernel's gradient). Over a widened or stacked group it is the sum of the members'
    penalties, so each member's gradient is its own."""
    return coefficient * sum(w.pow(2).sum() for w in weights)
