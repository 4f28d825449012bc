"""Devices, dtypes, seeds and data on the device: what training and evaluation share.

``derive_seed`` makes every random stream a pure function of names (seed, "init"), so a member's init, data order
and dropout masks do not depend on the process, the grouping or the machine. ``to_device_data`` places a split as
one tensor on the device; a batch is ``data.inputs(index)``. ``configure_numerics`` makes CUDA deterministic.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger("lossatlas.devices")

# cuBLAS is deterministic only with a fixed workspace (NVIDIA's documented value); read when cuBLAS starts
CUBLAS_WORKSPACE = ":4096:8"


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



def configure_numerics(device: torch.device, tf32: bool = False, nondeterministic: Sequence[str] = ()) -> dict:
    """Make ``device``'s arithmetic reproducible run to run, and return what is set (for the outputs' attributes).

    On CUDA, before CUDA starts (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it creates its handle): deterministic
    algorithms, cuDNN deterministic without benchmark, and float32 matmuls and convolutions in full precision
    unless ``tf32`` (the recipe's ``tf32`` key) asks for TF32. ``nondeterministic`` names the model's layers
    without a deterministic CUDA kernel (``models.nondeterministic_on_cuda``): they are logged, and deterministic
    algorithms then only warn on them instead of failing. CPU kernels are deterministic already: nothing is set.
    """
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        if nondeterministic:
            log.warning("no deterministic CUDA kernel for %s: results may differ run to run", list(nondeterministic))
        torch.use_deterministic_algorithms(True, warn_only=bool(nondeterministic))
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        precision = "tf32" if tf32 else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    cuda = device.type == "cuda"
    return {"device": device.type, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic) if cuda else None,
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
            "tf32": bool(tf32) if cuda else False,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG") if cuda else None,
            "nondeterministic_layers": list(nondeterministic) if cuda else []}
