"""Devices, dtypes, seeds and data on the device: what training and evaluation share.

``derive_seed`` makes every random stream a pure function of names (seed, "init"), so a member's init, data order
and dropout masks do not depend on the process, the grouping or the machine. ``to_device_data`` places a split as
one tensor on the device; a batch is ``data.inputs(index)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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

