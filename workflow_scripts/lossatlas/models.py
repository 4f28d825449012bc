"""Model registry: every architecture of the five papers, built from a config.yaml ``architectures:`` entry.

    model = build_model({"model": "mlp", "hidden": [256], "batchnorm": True}, (1, 8, 8), num_classes=10)
    initialize(model, {"scheme": "xavier"}, torch.Generator().manual_seed(seed))

``MODELS`` maps a registry name (the entry's ``model`` key) to a constructor
``f(input_shape, num_classes, dropout, **kwargs) -> nn.Module``; the entry's other keys are the keyword
arguments (``name`` is ignored). Every model takes float input of shape (B, *input_shape) and returns logits
(B, num_classes); 2-D convolutional nets need image inputs (C, H, W), ``cnn1d`` 1-D signals (C, L), MLPs flatten
whatever they get.

Choices that hold for every family (the papers do not state them):
- Max/avg pools use ``ceil_mode=True``: identical to floor mode on even sizes (every paper input size), and
  lets odd or tiny inputs (28×28, 8×8) through instead of collapsing to zero size.
- ``stem/head: auto`` picks the ImageNet stem/head when min(H, W) > 64, else the CIFAR one.
- Activations are never in-place, so models work under ``torch.func`` (vmap / functional_call).
- ``dropout=False`` builds the model without any Dropout module (created_equal.txt Supp. A: random-label runs
  remove the dropout layers).

The papers' architectures as config entries (parameter counts in tests/test_models.py):
    universality  mlp1024x2: {model: mlp, hidden: [1024, 1024], batchnorm: true}; fc1: {model: mlp, hidden: []}
                  {model: vgg, depth: 11|16, batchnorm: true|false}; {model: resnet, depth: 18|50};
                  {model: densenet, depth: 121}
    consistency   {model: st_vgg}; {model: st_vgg, variant: small}; {model: st_vgg, linear: true};
                  {model: mnist_arch}
    normalized    {model: conv3_firstbias, filters: 24} (CIFAR-10) | 34 (MNIST); {model: conv5_bn}
    loss_patterns {model: mpo_cnn}; {model: mpo_cnn, channels: [8, 8, 32, 32, 64, 64], batchnorm: true,
                  bn_scale_offset: 0.5}
    embedding     {model: mlp, hidden: [m], activation: tanh | sigmoid | relu, bias: [true, false]}
    tiny (8×8)    {model: tiny_cnn, ...}; {model: tiny_resnet, ...}; {model: conv3_firstbias, filters: 8,
                  kernel: 3}; {model: conv5_bn, channels: [...], padding: 1}; {model: st_vgg, channels: [8, 8,
                  16, 16], dense: 64}; {model: mpo_cnn, channels: [4, 8, 16], pool: 2, hidden: 32}
    real data     MNIST-5k (28×28): {model: st_vgg, variant: small} or with channels: [8, 8, 16, 16], dense: 64
                  (28→14→7); {model: resnet, depth: 18, width: 8} (cifar stem, 28→14→7→4); MNIST-1D (1, 40):
                  {model: cnn1d} (the MNIST-1D paper's CNN), {model: mlp, hidden: [100, 100]}, {model: mlp}

``build_model`` draws PyTorch's default initialisation from a fixed private seed (the global RNG is left
alone); ``initialize`` then redraws every parameter from the generator it is given, so a member's initial
weights are a pure function of its seed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from lossatlas.byo import build_factory_model, is_factory

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}


# ------------------------------------------------------------------------------------------- building blocks

def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _dropout(p: float, enabled: bool) -> list[nn.Module]:
    return [nn.Dropout(p)] if enabled and p > 0 else []


def _image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"model {model!r} needs image input (C, H, W); got input_shape {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


def _signal_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int]:
    if len(input_shape) != 2:
        raise ValueError(f"model {model!r} needs 1-D signal input (C, L); got input_shape {tuple(input_shape)}")
    c, length = (int(v) for v in input_shape)
    return c, length


def _auto(choice: str, input_shape: tuple[int, int, int], key: str) -> str:
    if choice not in ("auto", "cifar", "imagenet"):
        raise ValueError(f"{key} must be auto | cifar | imagenet, got {choice!r}")
    if choice == "auto":
        return "imagenet" if min(input_shape[1:]) > 64 else "cifar"
    return choice


def _flat_size(features: nn.Sequential, input_shape: tuple[int, ...], model: str) -> int:
    """Number of features ``features`` produces for one input (a dry run; eval mode so BN accepts batch 1)."""
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as err:
        raise ValueError(f"model {model!r}: input_shape {tuple(input_shape)} is too small for its layers "
                         f"({err})") from err
    finally:
        features.train(was_training)
    return math.prod(out.shape[1:])


def _conv_bn_act(cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int | str = 1,
                 batchnorm: bool = False, bias: bool = True, activation: str = "relu") -> list[nn.Module]:
    """Conv [→ BN] → activation. ``padding="same"`` (stride 1) pads as Keras/TensorFlow: for even kernels the
    extra row/column of zeros goes bottom/right."""
    layers: list[nn.Module] = []
    if padding == "same":
        before, after = (kernel - 1) // 2, kernel // 2
        if before != after:  # explicit, so conv2d needs no padded copy of its own
            layers.append(nn.ZeroPad2d((before, after, before, after)))
        padding = before if before == after else 0
    layers.append(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias))
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(_activation(activation))
    return layers


def _per_layer(value: bool | Sequence[bool], n: int, key: str) -> list[bool]:
    if isinstance(value, bool):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{key} lists {len(value)} values but the model has {n} Linear layers")
    return [bool(v) for v in value]


class _OffsetBatchNorm:
    """BatchNorm whose forward pass uses scale γ + offset (loss_patterns_mpo.txt, App. C).

    The paper initialises γ from U[-0.5, 0.5] instead of U[0, 1] so that γ has zero mean (Gram-Schmidt on the
    MPO plane then keeps scales positive) and adds 0.5 back in the forward pass. ``initialize`` draws γ from
    U[-offset, offset] when offset > 0 (``scale_init = "uniform"``, App. C); offset = 0 is ordinary BatchNorm.
    ``scale_init = "zero"`` starts γ at 0 instead: with offset 1 this is the released code's
    ``ReparametrizedBatchNorm2d`` (universome/loss-patterns, src/models/layers.py: weight initialised to 0, the
    forward pass uses weight + 1), so every point of an MPO plane starts with scale 1.
    """

    def __init__(self, num_features: int, offset: float, track_running_stats: bool = True,
                 scale_init: str = "uniform"):
        super().__init__(num_features, track_running_stats=track_running_stats)
        if scale_init not in ("uniform", "zero"):
            raise ValueError(f"bn_scale_init must be uniform | zero, got {scale_init!r}")
        self.offset = float(offset)
        self.scale_init = scale_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight + self.offset, self.bias,
                            use_batch_stats, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, offset={self.offset}"


class GlobalAvgPool(nn.Module):
    """Global average pooling, (B, C, H, W) → (B, C, 1, 1): the values of ``AdaptiveAvgPool2d(1)`` (bit-identical
    on CPU, forward and backward), with a deterministic CUDA backward, which adaptive pooling lacks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


# Layers whose CUDA backward has no deterministic kernel (torch.use_deterministic_algorithms raises on them).
NONDETERMINISTIC_ON_CUDA = (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, nn.AvgPool3d,
                            nn.MaxPool3d, nn.FractionalMaxPool2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
                            nn.Upsample)


def nondeterministic_on_cuda(model: nn.Module) -> list[str]:
    """``type at 'name'`` of each layer of ``model`` that cannot train deterministically on CUDA."""
    return [f"{type(m).__name__} at {name!r}" for name, m in model.named_modules()
            if isinstance(m, NONDETERMINISTIC_ON_CUDA)]


class OffsetBatchNorm1d(_OffsetBatchNorm, nn.BatchNorm1d):
    """App. C's re-parametrised BatchNorm for fully connected layers (see ``_OffsetBatchNorm``)."""


class OffsetBatchNorm2d(_OffsetBatchNorm, nn.BatchNorm2d):
    """App. C's re-parametrised BatchNorm for convolutional layers (see ``_OffsetBatchNorm``)."""


def _shortcut(cin: int, cout: int, stride: int, batchnorm: bool) -> nn.Sequential:
    """ResNet shortcut: identity, or a 1×1 projection (+ BN) when the block changes the shape."""
    if stride == 1 and cin == cout:
        return nn.Sequential()
    norm = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=not batchnorm), norm)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): 3×3 conv-BN-ReLU, 3×3 conv-BN, + shortcut, ReLU.

    Projection shortcut (1×1 conv + BN) when the shape changes. Without BN, convs get biases instead.
    """

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, batchnorm: bool = True):
        super().__init__()
        cout = width * self.expansion
        norm = nn.BatchNorm2d if batchnorm else (lambda _c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, cout, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(cout)
        self.shortcut = _shortcut(cin, cout, stride, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck block, 1×1 → 3×3 (carries the stride, as torchvision's v1.5) → 1×1 (×4 channels)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, batchnorm: bool = True):
        super().__init__()
        cout = width * self.expansion
        norm = nn.BatchNorm2d if batchnorm else (lambda _c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, width, 1, bias=not batchnorm)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=not batchnorm)
        self.bn3 = norm(cout)
        self.shortcut = _shortcut(cin, cout, stride, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class DenseLayer(nn.Module):
    """DenseNet-BC layer (Huang et al. 2017): BN-ReLU-Conv1×1(bn_size·k)-BN-ReLU-Conv3×3(k), concatenated."""

    def __init__(self, cin: int, growth_rate: int, bn_size: int = 4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


def _imagenet_stem(cin: int, cout: int) -> list[nn.Module]:
    """7×7 stride-2 conv, BN, ReLU, 3×3 stride-2 max-pool (ResNet / DenseNet on 224×224)."""
    return [nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1)]


# ------------------------------------------------------------------------------------------- families

def mlp(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, hidden: Sequence[int] = (),
        batchnorm: bool = False, activation: str = "relu", bias: bool | Sequence[bool] = True,
        dropout_p: float = 0.0, bn_scale_offset: float = 0.0, bn_scale_init: str = "uniform") -> nn.Module:
    """Fully connected net: flatten → [Linear → (BN) → activation → (Dropout)] per hidden width → Linear(K).

    - ``hidden: []`` is FC1 = multinomial logistic regression (universality_patterns.txt §4).
    - ``mlp1024x1/x2`` put BN between Linear and ReLU (the paper does not state the order; the usual one).
    - ``bias`` may list one flag per Linear layer, e.g. normalized_loss's "bias only in the first layer"
      ``[true, false, false]``, or the embedding paper's ``f(x) = Σ_k a_k σ(w_kᵀ x̄)`` with x̄ = [x, 1]
      (hidden bias = the constant input's weight, no output bias): ``[true, false]``
      (embedding_principle.txt §3.2 and §4).
    - ``bn_scale_offset`` = 0.5 is loss_patterns_mpo.txt App. C's BN re-parametrisation (``OffsetBatchNorm1d``);
      0 is ordinary BatchNorm. ``bn_scale_init``: ``uniform`` (γ ~ U[-offset, offset], App. C) or ``zero`` (the
      released code's γ = 0, used with offset 1; see ``_OffsetBatchNorm``).
    """
    widths = [math.prod(input_shape), *(int(h) for h in hidden), num_classes]
    biases = _per_layer(bias, len(widths) - 1, "bias")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, bias=biases[i]))
        if i < len(widths) - 2:
            if batchnorm:
                layers.append(OffsetBatchNorm1d(fan_out, bn_scale_offset, scale_init=bn_scale_init)
                              if bn_scale_offset else
                              nn.BatchNorm1d(fan_out))
            layers.append(_activation(activation))
            layers += _dropout(dropout_p, dropout)
    return nn.Sequential(*layers)


VGG_LAYERS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, depth: int,
        batchnorm: bool = False, width: float = 1.0, head: str = "auto") -> nn.Module:
    """VGG (Simonyan & Zisserman 2014), configurations A (11) / D (16): 3×3 convs, pad 1, (BN), ReLU, pools.

    Heads (universality_patterns.txt does not state them): ``cifar`` = flatten → Linear(512·s², K) (the common
    CIFAR VGG, e.g. kuangliu/pytorch-cifar; s = 1 on 32×32); ``imagenet`` = AdaptiveAvgPool(7) →
    Linear(25,088, 4096) → ReLU → Dropout(0.5) → Linear(4096, 4096) → ReLU → Dropout(0.5) → Linear(4096, K)
    (the original). ``width`` multiplies every channel count and the 4096-wide hidden layers.
    """
    c, h, w = _image_shape(input_shape, "vgg")
    if depth not in VGG_LAYERS:
        raise ValueError(f"vgg depth must be one of {sorted(VGG_LAYERS)}, got {depth}")
    layers: list[nn.Module] = []
    cin = c
    for v in VGG_LAYERS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            cout = max(1, round(int(v) * width))
            layers += _conv_bn_act(cin, cout, 3, padding=1, batchnorm=batchnorm)
            cin = cout
    if _auto(head, (c, h, w), "vgg head") == "imagenet":
        hidden = max(1, round(4096 * width))
        layers += [nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(cin * 49, hidden), nn.ReLU(),
                   *_dropout(0.5, dropout), nn.Linear(hidden, hidden), nn.ReLU(), *_dropout(0.5, dropout),
                   nn.Linear(hidden, num_classes)]
    else:
        n = _flat_size(nn.Sequential(*layers), (c, h, w), "vgg")
        layers += [nn.Flatten(), nn.Linear(n, num_classes)]
    return nn.Sequential(*layers)


RESNET_BLOCKS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
}


def resnet(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, depth: int,
           stem: str = "auto", width: int = 64) -> nn.Module:
    """ResNet (He et al. 2016): 18 = BasicBlock [2,2,2,2], 50 = Bottleneck [3,4,6,3]; widths w, 2w, 4w, 8w.

    ``imagenet`` stem = 7×7/2 conv, BN, ReLU, 3×3/2 max-pool; ``cifar`` stem = 3×3/1 conv, BN, ReLU, no pool
    (kuangliu/pytorch-cifar). Head: global average pool → Linear(K). No dropout exists in ResNets.
    """
    c, h, w = _image_shape(input_shape, "resnet")
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"resnet depth must be one of {sorted(RESNET_BLOCKS)}, got {depth}")
    block, counts = RESNET_BLOCKS[depth]
    if _auto(stem, (c, h, w), "resnet stem") == "imagenet":
        layers = _imagenet_stem(c, width)
    else:
        layers = [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for stage, count in enumerate(counts):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(block(cin, width * 2 ** stage, stride))
            cin = width * 2 ** stage * block.expansion
    layers += [GlobalAvgPool(), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


DENSENET_BLOCKS: dict[int, list[int]] = {121: [6, 12, 24, 16], 169: [6, 12, 32, 32], 201: [6, 12, 48, 32]}


def densenet(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, depth: int = 121,
             growth_rate: int = 32, stem: str = "auto", bn_size: int = 4,
             compression: float = 0.5) -> nn.Module:
    """DenseNet-BC (Huang et al. 2017); 121 = blocks [6, 12, 24, 16], growth 32, 2·growth stem channels.

    ``imagenet`` stem as torchvision's densenet121; ``cifar`` stem = one 3×3 conv (kuangliu/pytorch-cifar).
    Transitions: BN-ReLU-Conv1×1(⌊compression·C⌋)-AvgPool2; head: BN-ReLU-global average pool-Linear(K).
    """
    c, h, w = _image_shape(input_shape, "densenet")
    if depth not in DENSENET_BLOCKS:
        raise ValueError(f"densenet depth must be one of {sorted(DENSENET_BLOCKS)}, got {depth}")
    cin = 2 * growth_rate
    if _auto(stem, (c, h, w), "densenet stem") == "imagenet":
        layers = _imagenet_stem(c, cin)
    else:
        layers = [nn.Conv2d(c, cin, 3, padding=1, bias=False)]
    counts = DENSENET_BLOCKS[depth]
    for b, count in enumerate(counts):
        for _ in range(count):
            layers.append(DenseLayer(cin, growth_rate, bn_size))
            cin += growth_rate
        if b < len(counts) - 1:
            cout = int(math.floor(cin * compression))
            layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                       nn.AvgPool2d(2, ceil_mode=True)]
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), GlobalAvgPool(), nn.Flatten(),
               nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


ST_VGG_VARIANTS: dict[str, dict] = {
    "full": {"channels": [32, 32, 64, 64, 128, 128, 256, 256], "kernels": [3, 3, 3, 3, 3, 3, 2, 2],
             "dense": 512},
    "small": {"channels": [32, 32, 64, 64], "kernels": [3, 3, 3, 3], "dense": 128},
}


def st_vgg(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, variant: str = "full",
           linear: bool = False, channels: Sequence[int] | None = None, kernels: Sequence[int] | None = None,
           dense: int | None = None, activation: str = "relu") -> nn.Module:
    """st-VGG and small st-VGG (created_equal.txt Supp. A): pairs of convs, after every second conv a 2×2
    max-pool and Dropout(0.25); flatten → Dense(512 | 128) → act → Dropout(0.5) → Dense(K).

    'same' padding (FIGURES.md §2.2: with 'valid' padding st-VGG collapses to zero size on 32×32), Keras-style
    for the 2×2 kernels (the extra row/column of zeros goes bottom/right): 32→16→8→4→2, flatten 1,024.
    ``activation`` ReLU by default (the paper does not state it); ``elu`` is the authors' code
    (GuyHacohen/curriculum_learning, models/cifar100_model.py: ``activation='elu'``). ``linear: true`` is the
    linear st-VGG of §4.2: identity activations and average pooling; its dropout is kept (not stated;
    ``dropout=False`` removes it). ``channels`` / ``kernels`` / ``dense`` override the variant for tiny
    stand-ins (e.g. 8, 8, 16, 16 and 64 on 8×8 digits).
    """
    c, h, w = _image_shape(input_shape, "st_vgg")
    if variant not in ST_VGG_VARIANTS:
        raise ValueError(f"st_vgg variant must be one of {sorted(ST_VGG_VARIANTS)}, got {variant!r}")
    base = ST_VGG_VARIANTS[variant]
    default_kernels = base["kernels"] if channels is None else [3] * len(channels)
    channels = list(base["channels"] if channels is None else channels)
    kernels = list(default_kernels if kernels is None else kernels)
    dense = int(base["dense"] if dense is None else dense)
    if len(kernels) != len(channels):
        raise ValueError(f"st_vgg: {len(channels)} channels but {len(kernels)} kernels")
    act = "identity" if linear else activation
    pool = nn.AvgPool2d if linear else nn.MaxPool2d
    layers: list[nn.Module] = []
    cin = c
    for i, (cout, k) in enumerate(zip(channels, kernels, strict=True)):
        layers += _conv_bn_act(cin, cout, k, padding="same", activation=act)
        cin = cout
        if i % 2 == 1:
            layers += [pool(2, ceil_mode=True), *_dropout(0.25, dropout)]
    n = _flat_size(nn.Sequential(*layers), (c, h, w), "st_vgg")
    layers += [nn.Flatten(), nn.Linear(n, dense), _activation(act), *_dropout(0.5, dropout),
               nn.Linear(dense, num_classes)]
    return nn.Sequential(*layers)


def mnist_arch(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True) -> nn.Module:
    """created_equal.txt Supp. A "MNIST architecture": Conv(32, 3×3) → Conv(64, 3×3) → MaxPool 2×2 →
    Dropout(0.25) → Dense(128) → Dropout(0.5) → Dense(K).

    Activations and padding are not stated; as in the Keras ``mnist_cnn`` example the layer list matches: ReLU
    after each conv and the dense layer, 'valid' padding (28→26→24→12, flatten 9,216; 1,199,882 parameters).
    """
    c, h, w = _image_shape(input_shape, "mnist_arch")
    layers: list[nn.Module] = [*_conv_bn_act(c, 32, 3, padding=0), *_conv_bn_act(32, 64, 3, padding=0),
                               nn.MaxPool2d(2, ceil_mode=True), *_dropout(0.25, dropout)]
    n = _flat_size(nn.Sequential(*layers), (c, h, w), "mnist_arch")
    layers += [nn.Flatten(), nn.Linear(n, 128), nn.ReLU(), *_dropout(0.5, dropout),
               nn.Linear(128, num_classes)]
    return nn.Sequential(*layers)


def conv3_firstbias(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *,
                    filters: int = 24, kernel: int = 5) -> nn.Module:
    """normalized_loss_linear.txt App. G.1: 3-layer ReLU conv net, bias only in the first layer, no pooling.

    Conv(C→f, k×k, bias) → ReLU → Conv(f→f, k×k, no bias) → ReLU → flatten → Linear(→K, no bias); stride 1,
    'valid' padding. Reproduces the stated counts exactly (FIGURES.md §3.2): 154,464 for CIFAR-10 with 24
    filters (32→28→24), 165,784 for MNIST with 34 filters (28→24→20).
    """
    c, h, w = _image_shape(input_shape, "conv3_firstbias")
    layers: list[nn.Module] = [*_conv_bn_act(c, filters, kernel, padding=0, bias=True),
                               *_conv_bn_act(filters, filters, kernel, padding=0, bias=False)]
    n = _flat_size(nn.Sequential(*layers), (c, h, w), "conv3_firstbias")
    layers += [nn.Flatten(), nn.Linear(n, num_classes, bias=False)]
    return nn.Sequential(*layers)


def conv5_bn(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *,
             channels: Sequence[int] = (32, 64, 64, 128), strides: Sequence[int] = (1, 1, 2, 2),
             kernel: int = 3, padding: int = 0, batchnorm: bool = True, conv_bias: bool = True) -> nn.Module:
    """normalized_loss_linear.txt App. G.2: "5-layer convolutional ReLU network with no pooling … 32, 64, 64,
    128 filters of size 3 by 3; the final layer is fully connected; batch-normalization"; "about 188,810
    parameters".

    Reconstruction (unresolved, FIGURES.md §3.2): 4 × [Conv 3×3 → BN → ReLU] + Linear(→K). With stride 1 and
    no pooling the Linear alone would need 737,280 weights, so the last two convs get stride 2 (not stated);
    'valid' padding: 32→30→28→13→6, flatten 4,608. This gives 176,842 parameters for CIFAR-10 (conv biases
    kept; BN affine), 12,000 short of 188,810; no stride/padding/bias combination found gives 188,810.
    """
    c, h, w = _image_shape(input_shape, "conv5_bn")
    if len(strides) != len(channels):
        raise ValueError(f"conv5_bn: {len(channels)} channels but {len(strides)} strides")
    layers: list[nn.Module] = []
    cin = c
    for cout, stride in zip(channels, strides, strict=True):
        layers += _conv_bn_act(cin, cout, kernel, stride=stride, padding=padding, batchnorm=batchnorm,
                               bias=conv_bias)
        cin = cout
    n = _flat_size(nn.Sequential(*layers), (c, h, w), "conv5_bn")
    layers += [nn.Flatten(), nn.Linear(n, num_classes)]
    return nn.Sequential(*layers)


def mpo_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *,
            channels: Sequence[int] = (8, 32, 64), batchnorm: bool = False, pool: int = 4, hidden: int = 128,
            bn_scale_offset: float = 0.0, bn_running_stats: bool = True, maxpool: bool = False,
            bn_scale_init: str = "uniform") -> nn.Module:
    """loss_patterns_mpo.txt App. B: Conv 3×3 (pad 1) [→ BN] → ReLU per channel count, AdaptiveAvgPool(pool) →
    flatten → Linear(hidden) → ReLU → Linear(K).

    Pattern search: channels 8, 32, 64 (flatten 64·4·4 = 1,024); BN experiments: 8, 8, 32, 32, 64, 64 with BN
    "after each convolutional layer (i.e. before activation)". ``bn_scale_offset`` = 0.5 is App. C's
    re-parametrisation (see ``OffsetBatchNorm2d``; ``bn_scale_init: zero`` with offset 1 is the released code's γ).
    ``bn_running_stats: false`` normalises with the statistics
    of the evaluated batch also in eval mode. ``maxpool`` adds a 2×2 max-pool after each conv block, as the
    released code's icon config (``use_maxpool: true``; universome/loss-patterns src/models/conv_model.py,
    ``ConvBlock``) does; the paper does not mention it.
    """
    c, h, w = _image_shape(input_shape, "mpo_cnn")
    layers: list[nn.Module] = []
    cin = c
    for cout in channels:
        layers.append(nn.Conv2d(cin, cout, 3, padding=1))
        if batchnorm:
            layers.append(OffsetBatchNorm2d(cout, bn_scale_offset, track_running_stats=bn_running_stats,
                                            scale_init=bn_scale_init))
        layers.append(nn.ReLU())
        if maxpool:
            layers.append(nn.MaxPool2d(2))  # floor, as the released ConvBlock's nn.MaxPool2d(2, 2): 28→14→7→3
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(cin * pool * pool, hidden), nn.ReLU(),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


def tiny_cnn(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *,
             channels: Sequence[int] = (16, 16, 32, 32), batchnorm: bool = False,
             pool_after: Sequence[int] = (1, 3), hidden: Sequence[int] = ()) -> nn.Module:
    """Small VGG-like CNN for 8×8 digits (FIGURES.md §1.6 ``tinyvgg``): Conv 3×3 (pad 1) [→ BN] → ReLU per
    channel count, a 2×2 max-pool after the conv layers whose 0-based index is in ``pool_after``, flatten,
    optional hidden Linear → ReLU layers, Linear(K). Defaults: 16-16-pool-32-32-pool (8→4→2, flatten 128)."""
    c, h, w = _image_shape(input_shape, "tiny_cnn")
    layers: list[nn.Module] = []
    cin = c
    for i, cout in enumerate(channels):
        layers += _conv_bn_act(cin, cout, 3, padding=1, batchnorm=batchnorm, bias=not batchnorm)
        if i in pool_after:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        cin = cout
    n = _flat_size(nn.Sequential(*layers), (c, h, w), "tiny_cnn")
    layers.append(nn.Flatten())
    for width in hidden:
        layers += [nn.Linear(n, width), nn.ReLU()]
        n = width
    layers.append(nn.Linear(n, num_classes))
    return nn.Sequential(*layers)


def tiny_resnet(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *, channels: int = 16,
                blocks: int = 2, batchnorm: bool = True) -> nn.Module:
    """Small ResNet for 8×8 digits (FIGURES.md §1.6 ``tinyres``): 3×3 conv [→ BN] → ReLU, ``blocks`` basic
    blocks at constant width (no downsampling), global average pool, Linear(K)."""
    c, h, w = _image_shape(input_shape, "tiny_resnet")
    layers: list[nn.Module] = _conv_bn_act(c, channels, 3, padding=1, batchnorm=batchnorm, bias=not batchnorm)
    layers += [BasicBlock(channels, channels, 1, batchnorm) for _ in range(blocks)]
    layers += [GlobalAvgPool(), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def cnn1d(input_shape: tuple[int, ...], num_classes: int, dropout: bool = True, *,
          channels: Sequence[int] = (25, 25, 25), kernels: Sequence[int] = (5, 3, 3), stride: int = 2,
          padding: int = 1, batchnorm: bool = False) -> nn.Module:
    """1-D CNN for signals (C, L): per channel count Conv1d(kernel, stride, padding) [→ BN] → ReLU, then
    flatten → Linear(K). No pooling and no dropout.

    Defaults: the CNN of the MNIST-1D paper (Greydanus 2020): three convolutions of 25 channels, kernels 5, 3, 3,
    stride 2, padding 1, a linear head; on L = 40: 40→19→10→5, flatten 125, 5,210 parameters.
    """
    c, length = _signal_shape(input_shape, "cnn1d")
    if len(kernels) != len(channels):
        raise ValueError(f"cnn1d: {len(channels)} channels but {len(kernels)} kernels")
    layers: list[nn.Module] = []
    cin = c
    for cout, k in zip(channels, kernels, strict=True):
        layers.append(nn.Conv1d(cin, cout, k, stride=stride, padding=padding, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(cout))
        layers.append(nn.ReLU())
        cin = cout
    n = _flat_size(nn.Sequential(*layers), (c, length), "cnn1d")
    layers += [nn.Flatten(), nn.Linear(n, num_classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "vgg": vgg, "resnet": resnet, "densenet": densenet, "st_vgg": st_vgg,
    "mnist_arch": mnist_arch, "conv3_firstbias": conv3_firstbias, "conv5_bn": conv5_bn, "mpo_cnn": mpo_cnn,
    "tiny_cnn": tiny_cnn, "tiny_resnet": tiny_resnet, "cnn1d": cnn1d,
}


# ------------------------------------------------------------------------------------------- public API

def build_model(arch: dict, input_shape: Sequence[int], num_classes: int, dropout: bool = True) -> nn.Module:
    """Build the model a config.yaml ``architectures:`` entry describes (``model`` = registry name or your own
    ``module:Factory``, lossatlas.byo; other keys = its keyword arguments; ``name`` is ignored), for inputs of
    ``input_shape`` and ``num_classes`` outputs.

    ``dropout=False`` builds it without any Dropout module. Parameters hold PyTorch's default initialisation
    drawn from a fixed seed (so the result is a pure function of the arguments); call ``initialize`` to draw
    a member's own initial weights.
    """
    label = arch.get("name", arch.get("model"))
    model_name = arch.get("model")
    if is_factory(model_name):  # your own model (lossatlas.byo); dropout=False does not apply to it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_factory_model(arch, tuple(int(v) for v in input_shape), int(num_classes),
                                       f"architectures.{label}")
    if model_name not in MODELS:
        raise ValueError(f"architecture {label!r}: unknown model {model_name!r}; known: {sorted(MODELS)}")
    constructor = MODELS[model_name]
    kwargs = {k: v for k, v in arch.items() if k not in ("model", "name")}
    allowed = {p.name for p in inspect.signature(constructor).parameters.values()
               if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"architecture {label!r}: model {model_name!r} has no option(s) {unknown}; "
                         f"it accepts {sorted(allowed)}")
    if num_classes < 1:
        raise ValueError(f"architecture {label!r}: num_classes must be >= 1, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            return constructor(tuple(int(v) for v in input_shape), int(num_classes), bool(dropout), **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"architecture {label!r}: {err}") from err


def parametrised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv layers of ``model`` as (qualified name, module), in forward order.

    Forward order = registration order: every model here registers its layers in the order it applies them;
    inside a residual block the main path comes before the shortcut's projection. BatchNorm layers are not
    included (the engine's per-layer weight norms and normalized_loss's layerwise normalisation are over the
    weight layers; BN is absorbed into them first, normalized_loss_linear.txt Fig. 1 caption).
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, _ConvNd))]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_convolution(model: nn.Module) -> bool:
    return any(isinstance(m, _ConvNd) for m in model.modules())


def channels_last(model: nn.Module) -> bool:
    """Whether to run ``model`` in channels_last memory format: convolutional nets (about 1.3× faster training
    on CPU here, and the layout cuDNN prefers). Values equal the default layout up to float summation order."""
    return has_convolution(model)


def _fill(tensor: torch.Tensor, draw: Callable[[torch.Tensor], object], generator: torch.Generator) -> None:
    """Draw into a float64 scratch tensor on the generator's device, then copy: the draw then does not depend
    on the model's dtype (float32 and float64 runs start from the same weights, up to rounding) or device."""
    scratch = torch.empty(tensor.shape, dtype=torch.float64, device=generator.device)
    draw(scratch)
    tensor.copy_(scratch)


def initialize(model: nn.Module, init: dict | None, generator: torch.Generator) -> nn.Module:
    """Redraw every parameter of ``model`` from ``generator`` alone (in place; returns the model).

    ``init`` = ``{"scheme": "default" | "xavier" | "gaussian", "std", "std_per_layer", "bias", "scale"}``:
    - ``default``: PyTorch's layer defaults: Linear/Conv weight ~ kaiming_uniform(a=√5) = U(±1/√fan_in), bias
      ~ U(±1/√fan_in).
    - ``xavier``: Glorot-uniform weights U(±√(6/(fan_in + fan_out))) (fans include the kernel area, as Keras),
      zero biases (created_equal.txt §2: "Xavier initialization").
    - ``gaussian``: weights ~ N(0, std²), one ``std`` for all weight layers or ``std_per_layer`` (one per
      entry of ``parametrised_layers``, forward order); zero biases (normalized_loss_linear.txt varies the
      init std).
    - ``bias`` (gaussian only): ``zero`` (the default) or ``default``: biases drawn as PyTorch's layer default
      U(±1/√fan_in), as the authors' code leaves them (brando90/Generalization-Puzzles-in-Deep-Networks
      redraws only the weights; its nets have a bias in the first layer only).
    - ``scale``: multiplies every Linear/Conv weight after drawing (small-init regimes,
      embedding_principle.txt); biases and BN parameters are not scaled.
    BatchNorm: γ = 1, β = 0, running statistics reset; for ``OffsetBatchNorm1d/2d`` with offset > 0, γ ~
    U[-offset, offset] (loss_patterns_mpo.txt App. C), or γ = 0 when its ``scale_init`` is ``zero`` (the
    released MPO code). Draws happen in module order, so a given model, init
    and generator state always give the same weights.
    """
    init = dict(init or {})
    scheme = init.pop("scheme", "default")
    std = init.pop("std", None)
    std_per_layer = init.pop("std_per_layer", None)
    gaussian_bias = init.pop("bias", None)
    scale = float(init.pop("scale", 1.0))
    if init:
        raise ValueError(f"init: unknown key(s) {sorted(init)}; known: scheme, std, std_per_layer, bias, scale")
    if scheme not in ("default", "xavier", "gaussian"):
        raise ValueError(f"init.scheme must be default | xavier | gaussian, got {scheme!r}")
    layers = parametrised_layers(model)
    stds: list[float] = []
    if scheme == "gaussian":
        if (std is None) == (std_per_layer is None):
            raise ValueError("init.scheme gaussian needs exactly one of init.std and init.std_per_layer")
        stds = [float(std)] * len(layers) if std_per_layer is None else [float(s) for s in std_per_layer]
        if len(stds) != len(layers):
            raise ValueError(f"init.std_per_layer has {len(stds)} values but the model has {len(layers)} "
                             f"parametrised layers: {[name for name, _ in layers]}")
    elif std is not None or std_per_layer is not None or gaussian_bias is not None:
        raise ValueError(f"init.std / init.std_per_layer / init.bias only apply to scheme gaussian, not {scheme!r}")
    if gaussian_bias not in (None, "zero", "default"):
        raise ValueError(f"init.bias must be zero | default, got {gaussian_bias!r}")

    layer_index = {id(module): i for i, (_, module) in enumerate(layers)}
    done: set[int] = set()
    g = generator
    with torch.no_grad():
        for module in model.modules():
            if id(module) in layer_index:
                weight, bias = module.weight, module.bias
                fan_in = weight[0].numel()
                default_bias = bias is not None and (scheme == "default" or gaussian_bias == "default")
                if scheme == "default":
                    _fill(weight, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g), g)
                elif scheme == "xavier":
                    _fill(weight, lambda t: nn.init.xavier_uniform_(t, generator=g), g)
                else:
                    s = stds[layer_index[id(module)]]
                    _fill(weight, lambda t, s=s: nn.init.normal_(t, 0.0, s, generator=g), g)
                if default_bias:
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    _fill(bias, lambda t, b=bound: nn.init.uniform_(t, -b, b, generator=g), g)
                elif bias is not None:
                    bias.zero_()
                weight.mul_(scale)
            elif isinstance(module, _BatchNorm):
                module.reset_running_stats()
                if module.affine:
                    offset = getattr(module, "offset", 0.0)
                    if offset > 0 and getattr(module, "scale_init", "uniform") == "zero":
                        module.weight.zero_()
                    elif offset > 0:
                        _fill(module.weight, lambda t, o=offset: nn.init.uniform_(t, -o, o, generator=g), g)
                    else:
                        module.weight.fill_(1.0)
                    module.bias.zero_()
            else:
                continue
            done.update(id(p) for p in module.parameters(recurse=False))
    missed = [name for name, p in model.named_parameters() if id(p) not in done]
    if missed:
        raise ValueError(f"initialize: no rule for parameter(s) {missed}")
    return model
