"""Per-member dropout: each member of a block draws its dropout masks from its own generator.

Every ``nn.Dropout`` of a member trains as a ``MemberDropout`` whose mask is set from outside; ``MemberMasks``
draws the masks of a group's members, member by member, from generators seeded from (seed, "dropout"). A member
so gets the same masks alone, stacked with ``torch.func`` or as channel groups of a wide network.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from lossatlas.devices import derive_seed


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
            g.set_state(state.cpu())  # a generator on any device takes its state as a CPU byte tensor

