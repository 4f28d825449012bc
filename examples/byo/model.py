"""A model defined outside lossatlas, used by examples/byo/config.yaml as ``model: "examples.byo.model:ReluMLP"``.

Any callable ``Factory(input_shape, num_classes, **options) -> nn.Module`` will do (lossatlas/byo.py). This one
is a plain ReLU MLP written as its own class, so lossatlas cannot widen it and stacks a block's members with
torch.func.vmap instead (recorded as ``stacking`` in each checkpoints.h5). ReLU layers without skip
connections keep it positively homogeneous, which the normalized-loss analysis needs.
"""

import math

import torch.nn.functional as F
from torch import nn


class ReluMLP(nn.Module):
    def __init__(self, input_shape, num_classes, hidden=(64,)):
        super().__init__()
        widths = [math.prod(input_shape), *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)
