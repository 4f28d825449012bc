"""Tiny datasets and specs for the training / evaluation tests (written with the real dataset writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.datasets import write_dataset

# A test parametrized over DEVICES has a CUDA variant (marker ``cuda``, what benchmarks/gpu_check.sh runs),
# skipped where torch sees no CUDA device.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device")])]


def make_classification_h5(path: Path, n_train: int = 96, n_test: int = 40, classes: int = 3,
                           shape: tuple[int, ...] = (1, 4, 4), seed: int = 0, uint8: bool = False) -> Path:
    """Gaussian blobs (one mean per class) as images of ``shape``; learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, *shape)) * 1.5

    def part(n: int) -> dict[str, np.ndarray]:
        y = np.arange(n, dtype=np.int64) % classes
        x = means[y] + rng.standard_normal((n, *shape))
        if uint8:
            x = np.clip(x * 40 + 128, 0, 255).astype(np.uint8)
        return {"x": x.astype(np.uint8 if uint8 else np.float32), "y": y}

    train, test = part(n_train), part(n_test)
    train["id"] = np.arange(n_train, dtype=np.int64)
    test["id"] = np.arange(n_train, n_train + n_test, dtype=np.int64)
    meta = {"name": path.stem, "task": "classification", "num_classes": classes,
            "class_names": [f"c{k}" for k in range(classes)], "source": "test", "derivation": [], "seed": seed}
    write_dataset(path, {"train": train, "test": test}, meta)
    return path


def make_regression_h5(path: Path, n_train: int = 12, n_test: int = 0) -> Path:
    def part(n: int) -> dict[str, np.ndarray]:
        x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
        return {"x": x, "y": np.sin(2 * x).astype(np.float32)}

    train, test = part(n_train), part(n_test)
    train["id"] = np.arange(n_train, dtype=np.int64)
    test["id"] = np.arange(n_train, n_train + n_test, dtype=np.int64)
    meta = {"name": path.stem, "task": "regression", "num_classes": 0, "class_names": [], "source": "test",
            "derivation": [], "seed": 0}
    write_dataset(path, {"train": train, "test": test}, meta)
    return path


def make_spec(**over) -> dict:
    """A run spec as lossatlas.config.run_spec builds it (schema defaults filled)."""
    spec = {
        "dataset": "blobs",
        "architecture": {"name": "mlp16", "model": "mlp", "hidden": [16], "batchnorm": True},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "loss": "ce", "seeds": [0, 1, 2], "epochs": 2, "batch_size": 16, "dtype": "float64", "dropout": True,
        "init": {"scheme": "default"}, "checkpoints": {"every": 1}, "pretrain": None,
        "stop_at_train_loss": None, "vectorize": "auto", "device": "cpu",
        "eval": {"splits": ["train", "test"], "lp": [1, 2, "inf"], "full_softmax": False, "batch_size": 32},
    }
    spec.update(over)
    return spec
