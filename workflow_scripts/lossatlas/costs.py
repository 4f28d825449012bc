"""A small cost model for training jobs: GPU-hours, SLURM runtime and memory requests, audit estimates.

Cheap on purpose (it runs inside the Snakefile at every start): no torch. The estimate is
    seconds = 3 · forward FLOPs per example · examples seen / (peak FLOP/s · utilisation) + fixed start-up,
with forward FLOPs from the architecture config and the dataset's input shape (MLPs exactly:
2·Σ fan_in·fan_out; convolutional families from their published per-image multiply-adds at 32×32,
scaled by the pixel count).
``cost_model`` in the config calibrates it (utilisation per architecture family, measured from real timings).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from lossatlas.dataset_specs import resolve_spec
from lossatlas.io import read_yaml

RATES_PATH = Path(__file__).with_name("cost_rates.yaml")

# Input shapes of the sources (C, H, W) or (D,); bundled sources as the datasets module stores them.
SOURCE_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (1, 8, 8),
    "iris": (4,),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "regression1d": (1,),
    "mnist5k": (1, 28, 28),
    "mnist1d": (1, 40),
}
SOURCE_TRAIN_SIZES: dict[str, int] = {
    "digits": 1797,
    "iris": 150,
    "cifar10": 50000,
    "cifar100": 50000,
    "mnist": 60000,
    "fashion_mnist": 60000,
    "mnist5k": 4000,
    "mnist1d": 4000,
}

# Forward GFLOPs (2 × multiply-adds) per 32×32 image of the CIFAR variants, from the architectures' layer
# lists (VGG: 0.15/0.31 GMACs; ResNet-18/50: 0.56/1.3 GMACs; DenseNet-121: 0.9 GMACs). Order of magnitude is
# what matters for scheduling; calibrate with `cost_model.utilization`.
CONV_GFLOPS_32 = {
    "vgg11": 0.30,
    "vgg16": 0.63,
    "resnet18": 1.11,
    "resnet50": 2.6,
    "densenet121": 1.8,
    "st_vgg": 0.08,
    "mnist_arch": 0.024,
    "conv3_firstbias": 0.02,
    "conv5_bn": 0.04,
    "mpo_cnn": 0.02,
    "tiny_cnn": 0.002,
    "tiny_resnet": 0.002,
    "cnn1d": 0.0001,  # the MNIST-1D CNN on 40-long signals: 32 k multiply-adds
}


@dataclass(frozen=True)
class RunCost:
    gpu_hours: float
    runtime_minutes: int
    mem_mb: int
    rate: str = "assumed"  # "measured (<device>)" or "assumed"


@functools.cache
def measured_rates(path: Path = RATES_PATH) -> dict:
    """The benchmark's table: device kind -> {device, measured, training_flops_per_s: {architecture: FLOP/s}}."""
    return (read_yaml(path) or {}) if path.exists() else {}


def device_kind(config: dict, spec: dict | None = None) -> str:
    """``cpu`` for jobs pinned to the CPU; otherwise ``cuda`` (``auto`` picks the GPU a cluster job is given)."""
    device = (spec or {}).get("device", config.get("device", "auto"))
    return "cpu" if device == "cpu" else "cuda"


def training_rate(config: dict, arch_name: str | None, family: str, kind: str) -> tuple[float, str]:
    """(training FLOP/s, where it comes from) of an architecture on a kind of device."""
    table = measured_rates().get(kind) or {}
    measured = (table.get("training_flops_per_s") or {}).get(arch_name)
    if measured:
        return float(measured), f"measured ({table.get('device', kind)})"
    cm = config["cost_model"]  # validated: the schema's defaults are filled in
    utilization = float(cm["utilization"].get(family, cm["default_utilization"]))
    return float(cm["peak_tflops"]) * 1e12 * utilization, "assumed"


def dataset_shape(config: dict, name: str) -> tuple[tuple[int, ...], int]:
    """(input shape, approximate train-set size) of a configured dataset, following derivations."""
    while "derive_from" in config["datasets"][name]:
        name = config["datasets"][name]["derive_from"]
    spec = resolve_spec(name, config["datasets"][name])  # the source's defaults live in dataset_specs
    source = spec["source"]
    if source == "imagenet":
        size = int(spec["image_size"])
        n = int(spec["train_per_class"] or 1300) * len(spec["wnids"])  # ImageNet: about 1,300 per class
        return (3, size, size), n
    if source == "mnist5k":
        size = int(spec["image_size"])
        return (1, size, size), round(5000 * (1 - float(spec["test_fraction"])))
    if source in ("gaussian_mixture", "make_classification"):
        return (int(spec["n_features"]),), int(spec["n_samples"])
    n = int(spec.get("n_train") or SOURCE_TRAIN_SIZES.get(source, 1000))
    return SOURCE_SHAPES.get(source, (1,)), n


def forward_flops(arch: dict, input_shape: tuple[int, ...], num_classes: int = 10) -> float:
    """Forward FLOPs per example (see the module docstring for how each family is counted)."""
    model = arch["model"]
    if model == "mlp":
        widths = [math.prod(input_shape), *arch.get("hidden", []), num_classes]
        return 2.0 * sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    key = model
    if model in ("vgg", "resnet", "densenet"):
        key = f"{model}{arch.get('depth', {'vgg': 11, 'resnet': 18, 'densenet': 121}[model])}"
    per_32 = CONV_GFLOPS_32.get(key, 0.05) * 1e9
    pixels = math.prod(input_shape[-2:]) if len(input_shape) == 3 else 1024
    width = float(arch.get("width", 1.0)) if model == "vgg" else 1.0
    return per_32 * (pixels / 1024.0) * width**2


def run_cost(config: dict, spec: dict) -> RunCost:
    """Estimated cost of one training job (all members of its seed block, all phases); ``config`` validated,
    so every cost_model default is filled in from schemas/config.schema.yaml."""
    cm = config["cost_model"]
    shape, n_train = dataset_shape(config, spec["dataset"])
    flops = forward_flops(spec["architecture"], shape)
    epochs = int(spec["epochs"]) + int((spec.get("pretrain") or {}).get("epochs", 0))
    examples = n_train * epochs * len(spec["seeds"])
    rate, source = training_rate(config, spec["architecture"].get("name"), spec["architecture"]["model"],
                                 device_kind(config, spec))
    seconds = 3.0 * flops * examples / rate + float(cm["startup_seconds"])
    mem_mb = int(2000 + 4 * 4 * math.prod(shape) * n_train / 1e6)  # dataset held in memory, 4 bytes, ×4 slack
    runtime = max(10, int(math.ceil(seconds * float(cm["runtime_safety"]) / 60.0)))
    return RunCost(gpu_hours=seconds / 3600.0, runtime_minutes=runtime, mem_mb=mem_mb, rate=source)


def dataset_mem_mb(config: dict, name: str) -> int:
    """Memory to build or derive one dataset: its arrays (as float32, the worst case) three times over."""
    shape, n_train = dataset_shape(config, name)
    return int(2000 + 3 * 4 * math.prod(shape) * n_train * 1.2 / 1e6)


def _seconds(config: dict, arch_name: str | None, arch: dict, kind: str, train_examples: float,
             eval_examples: float, shape: tuple[int, ...]) -> tuple[float, str]:
    """Seconds of a job that trains on ``train_examples`` and evaluates ``eval_examples`` (forward only)."""
    rate, source = training_rate(config, arch_name, arch["model"], kind)
    flops = forward_flops(arch, shape)
    startup = float((config.get("cost_model", {}) or {}).get("startup_seconds", 60.0))
    return (3.0 * flops * train_examples + flops * eval_examples) / rate + startup, source


def lr_probe_hours(config: dict, spec: dict, candidates: int, epochs: int) -> tuple[float, str]:
    """One probe job: every candidate rate trained for ``epochs`` epochs from one initialisation."""
    shape, n_train = dataset_shape(config, spec["dataset"])
    arch = spec["architecture"]
    s, source = _seconds(config, arch.get("name"), arch, device_kind(config, spec), n_train * epochs * candidates,
                         0.0, shape)
    return s / 3600.0, source


def mpo_hours(config: dict, arch_name: str, dataset: str, fit: dict, grid: int, eval_examples: int,
              fits: int = 1) -> tuple[float, str]:
    """A multi-point-optimisation job (loss_patterns): ``fits`` planes fitted one after another, each for
    ``fit.iterations`` updates of 2 × cells_per_update cells (black and white) on a batch, then its grid × grid
    landscape evaluated on eval_examples of train and test."""
    shape, _ = dataset_shape(config, dataset)
    arch = config["architectures"][arch_name]
    train = float(fit.get("iterations", 10000)) * 2 * fit.get("cells_per_update", 50) * fit.get("batch_size", 512)
    evaluate = float(grid) ** 2 * eval_examples * 2
    s, source = _seconds(config, arch_name, arch, device_kind(config), fits * train, fits * evaluate, shape)
    return s / 3600.0, source


def checkpoint_eval_hours(config: dict, specs: list[dict], checkpoints: list[int]) -> tuple[float, str]:
    """Re-evaluating every checkpoint of these runs on their train and test sets (normalized_loss
    post-processing); the rate basis is the least measured of the runs'."""
    seconds, sources = 0.0, set()
    for spec, n_ckpt in zip(specs, checkpoints, strict=True):
        shape, n_train = dataset_shape(config, spec["dataset"])
        arch = spec["architecture"]
        s, source = _seconds(config, arch.get("name"), arch, device_kind(config, spec), 0.0,
                             1.2 * n_train * n_ckpt * len(spec["seeds"]), shape)  # test set: about a fifth more
        seconds += s
        sources.add(source)
    return seconds / 3600.0, "assumed" if "assumed" in sources or not sources else sources.pop()


# Seconds per full-batch epoch of the embedding experiments (float64 numpy, 2 cores): the figures' own rule
# budgets (rules/embedding.smk), not measured by benchmarks/calibrate_costs.py.
EMBEDDING_SECONDS_PER_EPOCH = {"fig05": 0.2}
EMBEDDING_DEFAULT_SECONDS_PER_EPOCH = 0.02


def embedding_hours(experiment: str, settings: dict) -> tuple[float, str]:
    epochs = int(settings.get("epochs", 1000)) + int(settings.get("reduced_epochs", 0))
    per = EMBEDDING_SECONDS_PER_EPOCH.get(experiment, EMBEDDING_DEFAULT_SECONDS_PER_EPOCH)
    return epochs * per / 3600.0, "assumed"
