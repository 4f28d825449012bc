"""Factories outside workflow_scripts/ for tests/test_byo.py: one good, and one of each way a user's model can
be wrong. Resolved as ``tests.byo_factories:<Name>`` from the repository root, like a user's own module."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def gelu_mlp(input_shape, num_classes, hidden=(16,)):
    """Fine for consistency and universality; not positively homogeneous, so not for normalized_loss."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden[0]), nn.GELU(),
                         nn.Linear(hidden[0], num_classes))


def not_a_module(input_shape, num_classes):
    return [nn.Linear(math.prod(input_shape), num_classes)]


def wrong_width(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


class DataDependentMLP(nn.Module):
    """Its forward reads a tensor's value into Python, which torch.func.vmap cannot run."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        out = self.linear(x.flatten(1))
        return F.relu(out) if out.sum().item() > 0 else out


class ScaledMLP(nn.Module):
    """A parameter outside any Linear/Conv/BatchNorm layer: neither layerwise-normalisable nor initialisable."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * self.linear(x.flatten(1))
