"""Ensemble training throughput: N members as one stacked block vs one after another vs one process per core.

For each model (default: the default study's architectures from config.yaml), measured side by side in one run,
alternating the modes round by round (the median round is reported, so background load hits every mode alike):

- ``block``: the N members stacked (torch.func vmap, lossatlas.training.StackedGroup), one process, all cores;
- ``sequential``: the same N members one after another in one process (SingleGroup), all cores;
- ``processes``: one member at a time per process, as many single-threaded processes as cores, the N members
  shared out between them (what a plain Snakemake grid of one-member jobs does; CPU only).

Each member trains on its own random minibatches (batch 64) of synthetic data of the default study's input
shape, with the engine's own loss and optimizer code. Printed per model: examples/s of each mode, the achieved
GFLOP/s (FLOPs of one training step counted by torch.utils.flop_counter) against this machine's measured
float32 matmul peak, the ratios block/sequential and block/processes. Final line:
``speedup_block_vs_sequential: X`` = the smallest block/sequential ratio over the MLPs measured.

Threads: with another process busy on this 2-core machine, a 2-thread torch process slows down by an order of
magnitude (threads wait for a descheduled sibling), so on a shared machine compare with ``--threads 1`` (what the
default config's jobs use: ``threads: 1``).

    .venv/bin/python benchmarks/ensemble_training.py              # default models, N = 32
    .venv/bin/python benchmarks/ensemble_training.py --models uni_mlp256 uni_cnn --members 32 --steps 30
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

DEFAULT_MODELS = ["fc1", "uni_mlp256", "uni_mlp128x2", "uni_mlp64x3", "cons_stvgg", "nl_conv3", "lp_mlp2_bn",
                  "uni_cnn", "uni_resnet"]
INPUT_SHAPE = (1, 8, 8)
CLASSES = 10
BATCH = 64
N_DATA = 2048


def architectures() -> dict:
    import yaml

    with open(REPO / "config.yaml") as fh:
        return yaml.safe_load(fh)["architectures"]


def spec_for(arch_name: str, arch: dict, seeds: list[int]) -> dict:
    return {"architecture": {"name": arch_name, **arch}, "dropout": True, "init": {"scheme": "default"},
            "seeds": seeds, "dtype": "float32"}


def make_data(device):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_DATA, *INPUT_SHAPE, generator=g).to(device)
    y = torch.randint(0, CLASSES, (N_DATA,), generator=g).to(device)
    return x, y


def train_steps(group, x, y, members: int, steps: int, seed: int, device) -> None:
    """``steps`` SGD steps of ``group`` (G members), each member on its own random minibatches."""
    import torch

    from lossatlas.training import Optimizer, batch_loss

    opt = Optimizer(group.parameters(), "sgd", 0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    group.train()
    for _ in range(steps):
        index = torch.randint(0, N_DATA, (members, BATCH), generator=g).to(device)
        losses = batch_loss("ce", group.forward(x[index]), y[index], CLASSES)
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_groups(arch_name: str, arch: dict, members: int, stacked: bool, device):
    import torch

    from lossatlas.training import SingleGroup, StackedGroup, build_member

    spec = spec_for(arch_name, arch, list(range(members)))
    models = [build_member(spec, INPUT_SHAPE, CLASSES, s, device, torch.float32) for s in range(members)]
    return [StackedGroup(models)] if stacked else [SingleGroup(m) for m in models]


def run_block(arch_name, arch, members, steps, device) -> float:
    x, y = make_data(device)
    (group,) = build_groups(arch_name, arch, members, True, device)
    train_steps(group, x, y, members, 3, 1, device)  # warm-up
    t0 = time.perf_counter()
    train_steps(group, x, y, members, steps, 2, device)
    return time.perf_counter() - t0


def run_sequential(arch_name, arch, members, steps, device) -> float:
    x, y = make_data(device)
    groups = build_groups(arch_name, arch, members, False, device)
    for group in groups:
        train_steps(group, x, y, 1, 3, 1, device)
    t0 = time.perf_counter()
    for i, group in enumerate(groups):
        train_steps(group, x, y, 1, steps, 2 + i, device)
    return time.perf_counter() - t0


def _worker(arch_name, arch, members, steps, barrier, results) -> None:
    import torch

    torch.set_num_threads(1)
    device = torch.device("cpu")
    x, y = make_data(device)
    groups = build_groups(arch_name, arch, members, False, device)
    for group in groups:
        train_steps(group, x, y, 1, 3, 1, device)
    barrier.wait()
    t0 = time.perf_counter()
    for i, group in enumerate(groups):
        train_steps(group, x, y, 1, steps, 2 + i, device)
    results.put(time.perf_counter() - t0)


def run_processes(arch_name, arch, members, steps, cores) -> float:
    """Wall time for ``cores`` single-threaded processes to train the N members between them."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(cores), ctx.Queue()
    shares = [members // cores + (1 if i < members % cores else 0) for i in range(cores)]
    procs = [ctx.Process(target=_worker, args=(arch_name, arch, share, steps, barrier, results))
             for share in shares if share > 0]
    for p in procs:
        p.start()
    times = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def flops_per_member_step(arch_name, arch, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    (group,) = build_groups(arch_name, arch, 1, False, device)
    x, y = make_data(device)
    with FlopCounterMode(display=False) as counter:
        train_steps(group, x, y, 1, 1, 0, device)
    # the optimizer's elementwise update is negligible next to the matmuls/convs counted here
    del torch
    return float(counter.get_total_flops())


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


def is_mlp(arch: dict) -> bool:
    return arch["model"] == "mlp"


def main(argv: list[str] | None = None) -> None:
    import torch

    from lossatlas.training import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="minibatch steps per member per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the block and sequential modes (default: --cores)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    threads = args.threads or args.cores
    torch.set_num_threads(threads if device.type == "cpu" else 1)
    archs = architectures()
    peak = matmul_peak_gflops(device)
    print(f"device {device}, {args.cores} cores ({threads} threads in-process), torch {torch.__version__}, "
          f"float32 matmul peak {peak:.0f} GFLOP/s")
    print(f"N = {args.members} members, batch {BATCH}, {args.steps} steps per member per round, median of "
          f"{args.rounds} alternating rounds; examples/s over all members")
    header = (f"{'model':14s} {'block ex/s':>11s} {'seq ex/s':>10s} {'proc ex/s':>10s} {'GF/s blk':>9s} "
              f"{'GF/s seq':>9s} {'%peak blk':>9s} {'blk/seq':>8s} {'blk/proc':>8s}")
    print(header)
    mlp_speedups = []
    for name in args.models:
        if name not in archs:
            raise SystemExit(f"unknown architecture {name!r} (config.yaml architectures: {sorted(archs)})")
        arch = archs[name]
        flops = flops_per_member_step(name, arch, device)
        times: dict[str, list[float]] = {"block": [], "sequential": [], "processes": []}
        for _ in range(args.rounds):
            times["block"].append(run_block(name, arch, args.members, args.steps, device))
            times["sequential"].append(run_sequential(name, arch, args.members, args.steps, device))
            if device.type == "cpu":
                times["processes"].append(run_processes(name, arch, args.members, args.steps, args.cores))
        examples = args.members * args.steps * BATCH
        rate = {k: (examples / statistics.median(v) if v else float("nan")) for k, v in times.items()}
        gflops = {k: rate[k] / BATCH * flops / 1e9 for k in rate}
        speedup = rate["block"] / rate["sequential"]
        if is_mlp(arch):
            mlp_speedups.append(speedup)
        print(f"{name:14s} {rate['block']:11.0f} {rate['sequential']:10.0f} {rate['processes']:10.0f} "
              f"{gflops['block']:9.1f} {gflops['sequential']:9.1f} {100 * gflops['block'] / peak:8.1f}% "
              f"{speedup:8.2f} {rate['block'] / rate['processes']:8.2f}", flush=True)
    if mlp_speedups:
        print(f"speedup_block_vs_sequential: {min(mlp_speedups):.2f}")
    else:
        print("speedup_block_vs_sequential: nan")


if __name__ == "__main__":
    main()
