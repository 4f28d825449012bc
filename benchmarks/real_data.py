"""Do the real-data sources show what the stand-ins hide? Test accuracy of small models on MNIST-1D and MNIST-5k.

Builds ``mnist1d`` (the published set: seed 42, 5,000 examples, 4,000 train) and ``mnist5k`` (seed 0, 4,000
train, 1,000 test) with ``lossatlas.datasets`` into a scratch folder, then trains each model from the registry
with Adam on the whole train set in memory (batch 100, one seed) and prints its final test accuracy:

- MNIST-1D: logistic regression (``mlp``, no hidden layer), an MLP 100-100 and ``cnn1d`` (the paper's CNN). The
  MNIST-1D paper reports about 32 %, 68 % and 94 % for these three: the gap between them (spatial inductive
  bias) is what the 8×8 digits stand-in cannot show.
- MNIST-5k: a small st-VGG (8-8-16-16 channels, dense 64) on the 28×28 images.

About a minute on one CPU core with the defaults; ``--epochs-scale`` shortens or lengthens every run.

    .venv/bin/python benchmarks/real_data.py [--epochs-scale 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lossatlas.datasets import build_source_dataset, load_dataset
from lossatlas.models import build_model, count_parameters, initialize

DATASETS = {
    "mnist1d": {"source": "mnist1d", "seed": 42},
    "mnist5k": {"source": "mnist5k", "seed": 0},
}
# (dataset, label, architecture entry, learning rate, epochs)
RUNS = [
    ("mnist1d", "logistic", {"model": "mlp", "hidden": []}, 1e-2, 40),
    ("mnist1d", "mlp100x2", {"model": "mlp", "hidden": [100, 100]}, 1e-2, 40),
    ("mnist1d", "cnn1d", {"model": "cnn1d"}, 1e-2, 60),
    ("mnist5k", "st_vgg_small8", {"model": "st_vgg", "channels": [8, 8, 16, 16], "dense": 64}, 1e-3, 4),
]


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(dataset, arch: dict, lr: float, epochs: int, seed: int = 0, batch: int = 100) -> tuple[float, float, int]:
    """(train accuracy, test accuracy, parameters) after ``epochs`` of Adam on minibatches of ``batch``."""
    x_train, x_test = (torch.from_numpy(dataset.float_inputs(s)) for s in ("train", "test"))
    y_train, y_test = torch.from_numpy(dataset.y_train), torch.from_numpy(dataset.y_test)
    model = build_model(arch, dataset.input_shape, dataset.num_classes)
    generator = torch.Generator().manual_seed(seed)
    initialize(model, {"scheme": "default"}, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return accuracy(model, x_train, y_train), accuracy(model, x_test, y_test), count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = {}
        for name, spec in DATASETS.items():
            path = Path(tmp) / f"{name}.h5"
            build_source_dataset(name, spec, str(path))
            data[name] = load_dataset(path)
        print(f"{'dataset':8s} {'model':14s} {'params':>8s} {'epochs':>6s} {'train acc':>9s} {'test acc':>8s} "
              f"{'seconds':>7s}")
        for name, label, arch, lr, epochs in RUNS:
            n_epochs = max(1, round(epochs * args.epochs_scale))
            start = time.perf_counter()
            train_acc, test_acc, params = train(data[name], arch, lr, n_epochs)
            print(f"{name:8s} {label:14s} {params:8d} {n_epochs:6d} {train_acc:9.3f} {test_acc:8.3f} "
                  f"{time.perf_counter() - start:7.1f}", flush=True)


if __name__ == "__main__":
    main()
