"""Writes examples/byo/spirals.npz, the worked example's own data: four interleaved noisy spirals in the plane,
lifted to 8 features (the point and sines / cosines of it), 400 train and 200 test examples.

Deterministic (a fixed seed), so the committed file can be rebuilt: python examples/byo/make_data.py
"""

import sys
from pathlib import Path

import numpy as np

CLASSES, N_TRAIN, N_TEST, SEED = 4, 400, 200, 0


def spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % CLASSES
    r = rng.uniform(0.2, 1.0, n)
    angle = 2 * np.pi * y / CLASSES + 3.0 * r + rng.normal(0.0, 0.25, n)
    point = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    x = np.concatenate([point, np.sin(3 * point), np.cos(3 * point), point**2], axis=1)
    return x.astype(np.float32), y.astype(np.int64)


def make(path: Path) -> None:
    rng = np.random.default_rng(SEED)
    x_train, y_train = spirals(N_TRAIN, rng)
    x_test, y_test = spirals(N_TEST, rng)
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("spirals.npz"))
