"""Ensemble training throughput of the engine: N members as one block job vs one after another vs one job each.

For each model (default: the default study's architectures from config.yaml), measured side by side in one run,
alternating the modes round by round, each mode going first in turn (the median round is reported, so
background load and order effects hit every mode alike),
each mode being ``lossatlas.training.train_run`` on the same synthetic data of the default study's input shape
(1×8×8, 10 classes, 2,048 training examples, batch 64, SGD with momentum, cross-entropy):

- ``block``: one job training seeds 0..N-1, ``threads`` = all cores, as the pipeline's ``train`` rule runs it
  (on CPU: one single-threaded worker process per core, each training its share of the members as one wide
  network, stacked with vmap or in a loop, as ``vectorize: auto`` decides; on CUDA: one process);
- ``inprocess``: the block job without worker processes: one process with all cores as torch threads
  (``vectorize: auto``, ``workers=1``; CPU only, on CUDA that is ``block``): what the worker pool is measured
  against (column ``blk/inproc``);
- ``sequential``: the same N members one after another in one process with all cores as torch threads
  (``vectorize: never``, ``workers=1``);
- ``processes``: N one-member jobs, as many single-threaded processes as cores taking them in turn (what a
  plain Snakemake grid of one-member jobs does; CPU only).

Throughput is marginal: each mode runs for 1 epoch and for 1 + k epochs, and examples/s = the extra examples
over the extra wall time (k chosen per model and mode from one-epoch pilots in this process, so that the extra
epochs take about ``--seconds``). The fixed costs of a job (interpreter and torch start-up, about 2 s per
process here, data loading, writing checkpoints.h5) so cancel out for every mode alike; the block job's are
printed (``startup s``: its 1-epoch wall time less one epoch at its measured rate).

Printed per model: examples/s of each mode, the achieved GFLOP/s (FLOPs of one training step counted by
torch.utils.flop_counter) against this machine's measured float32 matmul peak, the ratios block/sequential and
block/processes (the median over rounds, then the range of the per-round paired ratio, which shows how much
of a difference is noise). Final line: ``speedup_block_vs_sequential: X`` = the smallest block/sequential ratio over the
MLPs measured.

    .venv/bin/python benchmarks/ensemble_training.py              # default models, N = 32
    .venv/bin/python benchmarks/ensemble_training.py --models uni_mlp256 tiny_cnn --members 32 --seconds 3

``--compare`` instead times, side by side in one process, the engine's parts that were rewritten for speed
against their per-tensor forms, on the first model's wide group of N members: the optimizer step (one
multi-tensor ``_foreach`` kernel per operation vs a few kernels per parameter tensor) and evaluation's layer norms
(one host transfer vs one per tensor). Printed: ms per call of each form and old/new.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

DEFAULT_MODELS = ["fc1", "uni_mlp256", "uni_mlp128x2", "uni_mlp64x3", "cons_stvgg", "nl_conv3", "lp_mlp2_bn",
                  "tiny_cnn", "tiny_resnet"]
# The 2-D convolutional nets measured on the 8×8 inputs (the default study's universality nets were these until it
# moved to MNIST-1D's 1-D signals, issue 18)
CONV_8X8 = {"tiny_cnn": {"model": "tiny_cnn", "channels": [16, 16, 32, 32], "pool_after": [1, 3], "batchnorm": True},
            "tiny_resnet": {"model": "tiny_resnet", "channels": 16, "blocks": 2, "batchnorm": True}}
INPUT_SHAPE = (1, 8, 8)
CLASSES = 10
BATCH = 64
N_DATA = 2048


def architectures() -> dict:
    import yaml

    with open(REPO / "config.yaml") as fh:
        return {**yaml.safe_load(fh)["architectures"], **CONV_8X8}


def make_dataset(path: Path) -> Path:
    """Class-dependent Gaussian images (so training has a signal), written with the pipeline's dataset writer."""
    import numpy as np

    from lossatlas.datasets import write_dataset

    rng = np.random.default_rng(0)
    means = rng.standard_normal((CLASSES, *INPUT_SHAPE))

    def split(n: int, start: int) -> dict:
        y = rng.integers(0, CLASSES, n)
        x = (means[y] + rng.standard_normal((n, *INPUT_SHAPE))).astype(np.float32)
        return {"x": x, "y": y.astype(np.int64), "id": np.arange(start, start + n, dtype=np.int64)}

    meta = {"name": "bench", "task": "classification", "num_classes": CLASSES,
            "class_names": [str(k) for k in range(CLASSES)], "source": "benchmark", "derivation": [], "seed": 0}
    write_dataset(path, {"train": split(N_DATA, 0), "test": split(16, N_DATA)}, meta)
    return path


def spec_for(arch_name: str, arch: dict, seeds: list[int], epochs: int, vectorize: str, device: str) -> dict:
    return {"dataset": "bench", "architecture": {"name": arch_name, **arch},
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}, "loss": "ce", "seeds": seeds,
            "epochs": epochs, "batch_size": BATCH, "dtype": "float32", "dropout": True,
            "init": {"scheme": "default"}, "checkpoints": {"every": epochs}, "pretrain": None,
            "stop_at_train_loss": None, "vectorize": vectorize, "device": device}


def timed_train(spec: dict, data: Path, work: Path, threads: int, workers: int | None) -> float:
    from lossatlas.training import train_run

    t0 = time.perf_counter()
    train_run(spec, data, work / "checkpoints.h5", work / "_work", threads=threads, workers=workers)
    return time.perf_counter() - t0


def _grid_init() -> None:
    import torch

    from lossatlas.entry import tune_allocator

    tune_allocator()  # as every pipeline job does (lossatlas.entry.setup)
    torch.set_num_threads(1)


def _grid_job(args: tuple) -> None:
    spec, data, work = args
    timed_train(spec, Path(data), Path(work), threads=1, workers=1)


def run_grid(pool, arch_name: str, arch: dict, members: int, epochs: int, data: Path, tmp: Path) -> float:
    """Wall time for the pool's single-threaded processes to run N one-member jobs between them."""
    jobs = [(spec_for(arch_name, arch, [s], epochs, "never", "cpu"), str(data), str(tmp / f"grid{s}"))
            for s in range(members)]
    t0 = time.perf_counter()
    list(pool.imap_unordered(_grid_job, jobs))
    return time.perf_counter() - t0


def flops_per_example(arch_name: str, arch: dict, device) -> float:
    """FLOPs of one training step (forward + backward) of one member on one batch, per example."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lossatlas.optim import batch_loss
    from lossatlas.training import SingleGroup, build_member

    spec = spec_for(arch_name, arch, [0], 1, "never", device.type)
    group = SingleGroup(build_member(spec, INPUT_SHAPE, CLASSES, 0, device, torch.float32), 0)
    group.train()
    x = torch.randn(1, BATCH, *INPUT_SHAPE, device=device)
    y = torch.randint(0, CLASSES, (1, BATCH), device=device)
    with FlopCounterMode(display=False) as counter:
        batch_loss("ce", group.forward(x), y, CLASSES).sum().backward()
    return float(counter.get_total_flops()) / BATCH  # the elementwise optimizer update is negligible


def matmul_peak_gflops(device) -> float:
    import torch

    a = torch.randn(2048, 2048, device=device)
    for _ in range(2):
        a @ a
    best = 0.0
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9)
    return best


def median_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def spread(a: list[float], b: list[float]) -> str:
    """min–max over the rounds of the paired ratio a/b (both measured in the same round), or '-'."""
    ratios = [x / y for x, y in zip(a, b, strict=False) if math.isfinite(x / y)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def per_tensor_step(opt) -> None:
    """The optimizer step as it was, a few kernels per parameter tensor (SGD with momentum, Adam): the baseline of
    ``--compare``."""
    import torch

    opt.step_count += 1
    with torch.no_grad():
        for p, st in zip(opt.params, opt.state, strict=True):
            g = p.grad
            if opt.kind == "sgd":
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = g.clone()
                else:
                    st["momentum_buffer"].mul_(opt.momentum).add_(g)
                p.add_(st["momentum_buffer"], alpha=-opt.lr)
            else:
                t = opt.step_count
                if not st:
                    st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                st["exp_avg"].lerp_(g, 0.1)
                st["exp_avg_sq"].mul_(0.999).addcmul_(g, g, value=0.001)
                denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.999**t)).add_(1e-8)
                p.addcdiv_(st["exp_avg"], denom, value=-opt.lr / (1 - 0.9**t))


def compare(arch_name: str, arch: dict, members: int, device, rounds: int) -> None:
    """Old vs new forms of the optimizer step and of the layer norms, alternating, median ms per call."""
    import torch

    from lossatlas import metrics as M
    from lossatlas.models import parametrised_layers
    from lossatlas.optim import Optimizer
    from lossatlas.training import WideGroup, build_member

    spec = spec_for(arch_name, arch, list(range(members)), 1, "always", device.type)
    models = [build_member(spec, INPUT_SHAPE, CLASSES, s, device, torch.float32) for s in range(members)]
    group = WideGroup(models, list(range(members)), INPUT_SHAPE)
    for p in group.parameters():
        p.grad = torch.randn_like(p)

    def timed(fn, calls: int = 20) -> float:
        fn()  # warm-up (and lazily created optimizer state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / calls * 1e3

    print(f"{arch_name}: {members} members as one wide group, {len(group.parameters())} parameter tensors")
    for kind in ("sgd", "adam"):
        old_opt, new_opt = (Optimizer(group.parameters(), kind, 1e-6, momentum=0.9) for _ in range(2))
        old, new = [], []
        for _ in range(rounds):
            old.append(timed(lambda o=old_opt: per_tensor_step(o)))
            new.append(timed(new_opt.step))
        print(f"optimizer step {kind:4s}: per-tensor {statistics.median(old):7.3f} ms, foreach "
              f"{statistics.median(new):7.3f} ms, old/new {statistics.median(old) / statistics.median(new):5.2f}")
    model = models[0]
    layers = [list(layer.parameters()) for _, layer in parametrised_layers(model)]
    old, new = [], []
    for _ in range(rounds):
        old.append(timed(lambda: ([M.frobenius_norm(x) for x in layers], [M.l1_norm(x) for x in layers])))
        new.append(timed(lambda: M.layer_norms_of(layers)))
    print(f"layer norms (one member): one sync per tensor {statistics.median(old):7.3f} ms, one sync "
          f"{statistics.median(new):7.3f} ms, old/new {statistics.median(old) / statistics.median(new):5.2f}")


def main(argv: list[str] | None = None) -> None:
    import torch

    from lossatlas.devices import resolve_device
    from lossatlas.entry import tune_allocator

    tune_allocator()  # the in-process modes run as a pipeline job would (lossatlas.entry.setup)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="about the time the extra epochs of each mode take (see above)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--compare", action="store_true", help="old vs new optimizer step and norms (see above)")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    torch.set_num_threads(args.cores if device.type == "cpu" else 1)
    archs = architectures()
    if args.compare:
        for name in args.models:
            compare(name, archs[name], args.members, device, args.rounds)
        return
    peak = matmul_peak_gflops(device)
    print(f"device {device}, {args.cores} cores, torch {torch.__version__}, float32 matmul peak {peak:.0f} GFLOP/s")
    print(f"N = {args.members} members, batch {BATCH}, {N_DATA} examples, marginal rate between 1 and 1 + k "
          f"epochs, median of {args.rounds} alternating rounds; examples/s over all members")
    print(f"{'model':14s} {'block ex/s':>11s} {'seq ex/s':>10s} {'proc ex/s':>10s} {'GF/s blk':>9s} "
          f"{'GF/s proc':>9s} {'%peak blk':>9s} {'startup s':>9s} {'blk/seq':>8s} {'blk/proc':>8s} "
          f"{'per round':>11s} {'blk/inproc':>10s}", flush=True)
    mlp_speedups = []
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp_name, ctx.Pool(args.cores, initializer=_grid_init) as pool:
        tmp = Path(tmp_name)
        data = make_dataset(tmp / "bench.h5")
        for name in args.models:
            if name not in archs:
                raise SystemExit(f"unknown architecture {name!r} (config.yaml architectures: {sorted(archs)})")
            arch = archs[name]
            seeds = list(range(args.members))
            pilot_seq = timed_train(spec_for(name, arch, seeds, 1, "never", device.type), data, tmp / "pilot",
                                    args.cores, 1)
            pilot_auto = timed_train(spec_for(name, arch, seeds, 1, "auto", device.type), data, tmp / "pilot",
                                     args.cores, 1)
            # epochs of about --seconds each, guessing that workers / processes use every core fully
            parallel = args.cores if device.type == "cpu" else 1
            extra = {"block": pilot_auto / parallel, "inprocess": pilot_auto, "sequential": pilot_seq,
                     "processes": pilot_seq / parallel}
            extra = {k: max(1, round(args.seconds / v)) for k, v in extra.items()}
            rates: dict[str, list[float]] = {"block": [], "inprocess": [], "sequential": [], "processes": []}
            startups = []
            for r in range(args.rounds):
                modes = list(rates)
                first = r % len(modes)
                for mode in modes[first:] + modes[:first]:  # each mode goes first in turn (order effects)
                    if mode in ("processes", "inprocess") and device.type != "cpu":
                        continue
                    times = []
                    for epochs in (1, 1 + extra[mode]):
                        work = tmp / f"{name}_{mode}_{epochs}"
                        if mode == "block":
                            spec = spec_for(name, arch, seeds, epochs, "auto", device.type)
                            times.append(timed_train(spec, data, work, args.cores, None))
                        elif mode == "inprocess":
                            spec = spec_for(name, arch, seeds, epochs, "auto", device.type)
                            times.append(timed_train(spec, data, work, args.cores, 1))
                        elif mode == "sequential":
                            spec = spec_for(name, arch, seeds, epochs, "never", device.type)
                            times.append(timed_train(spec, data, work, args.cores, 1))
                        else:
                            times.append(run_grid(pool, name, arch, args.members, epochs, data, work))
                    # extra epochs faster than the noise of the fixed costs: no rate (raise --seconds)
                    gain = times[1] - times[0]
                    rate = args.members * N_DATA * extra[mode] / gain if gain > 0 else float("nan")
                    rates[mode].append(rate)
                    if mode == "block":
                        startups.append(times[0] - args.members * N_DATA / rate)
            rate = {k: median_finite(v) for k, v in rates.items()}
            flops = flops_per_example(name, arch, device)
            gflops = {k: rate[k] * flops / 1e9 for k in rate}
            speedup = rate["block"] / rate["sequential"]
            if arch["model"] == "mlp":
                mlp_speedups.append(speedup)
            print(f"{name:14s} {rate['block']:11.0f} {rate['sequential']:10.0f} {rate['processes']:10.0f} "
                  f"{gflops['block']:9.1f} {gflops['processes']:9.1f} {100 * gflops['block'] / peak:8.1f}% "
                  f"{median_finite(startups):9.1f} {speedup:8.2f} {rate['block'] / rate['processes']:8.2f} "
                  f"{spread(rates['block'], rates['processes']):>11s} {rate['block'] / rate['inprocess']:10.2f}",
                  flush=True)
    # nan when no MLP was measured or one MLP's rate could not be measured
    worst = min(mlp_speedups) if mlp_speedups and all(map(math.isfinite, mlp_speedups)) else float("nan")
    print(f"speedup_block_vs_sequential: {worst:.2f}")


if __name__ == "__main__":
    main()
