"""Measured training rates for the cost model (lossatlas/costs.py), on the machine at hand.

For every architecture of the paper-scale studies (configs/paper.yaml), on synthetic data of the shape of the first
dataset it is trained on there: one warm-up step, then ``--steps`` timed SGD steps (forward, cross-entropy,
backward, update) on a batch of ``--batch`` examples. The rate written is the training FLOP/s the cost model
counts, 3 × forward FLOPs per example (``costs.forward_flops``, the same count the estimates use) × examples / s,
so an estimate is seconds = 3 × FLOPs × examples / rate.

The rates go into lossatlas/cost_rates.yaml under the kind of device measured (``cpu`` or ``cuda``), with the
device's name, the batch and the date; the section of the other kind is kept. The cost model uses a measured rate
only for jobs on that kind of device; anything else rests on the assumed peak × utilisation, and the audit says
which. Small batches on a CPU understate what large ones reach; they keep the run cheap (a few minutes on 2 cores).

    .venv/bin/python benchmarks/calibrate_costs.py                       # CPU here, CUDA where a GPU is present
    .venv/bin/python benchmarks/calibrate_costs.py --archs uni_vgg11 --steps 2 --batch 4 --out /tmp/rates.yaml
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

import torch  # noqa: E402
import yaml  # noqa: E402

from lossatlas.costs import RATES_PATH, dataset_shape, forward_flops  # noqa: E402
from lossatlas.models import build_model  # noqa: E402


def trained_architectures(config: dict) -> dict[str, str]:
    """Architecture name -> the first dataset it is trained on, over every study's recipes and searches."""
    out: dict[str, str] = {}
    for study in config.get("studies", {}).values():
        for recipe in (study.get("recipes") or {}).values():
            for arch in recipe.get("architectures", []):
                out.setdefault(arch, recipe["datasets"][0])
        for search in (study.get("searches") or {}).values():
            out.setdefault(search["architecture"], search["dataset"])
        bn = study.get("bn_experiment")
        if bn:
            for variant in ("without_bn", "with_bn"):
                out.setdefault(bn[variant], bn["dataset"])
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        model = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")][0]
        cpu = model
    except (OSError, IndexError):
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} cores"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_rate(arch: dict, shape: tuple[int, ...], batch: int, steps: int, device: torch.device) -> float:
    """Training FLOP/s (the cost model's count) of ``steps`` SGD steps after one warm-up step."""
    model = build_model(arch, shape, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    return 3.0 * forward_flops(arch, shape) * batch * steps / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "paper.yaml"))
    parser.add_argument("--archs", nargs="*", help="only these architectures, merged into the rates already there "
                        "(default: all of the config, replacing them)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 128 on CUDA")
    parser.add_argument("--out", default=str(RATES_PATH))
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (128 if device.type == "cuda" else 4)
    config = yaml.safe_load(Path(args.config).read_text())
    archs = trained_architectures(config)
    rates = {}
    for name in args.archs or sorted(archs):
        shape, _ = dataset_shape(config, archs[name])
        arch = config["architectures"][name]
        rate = training_rate(arch, shape, batch, args.steps, device)
        rates[name] = float(f"{rate:.4g}")
        print(f"{name:24s} {'x'.join(map(str, shape)):>10s}  {rate / 1e9:10.3f} GFLOP/s", flush=True)

    out = Path(args.out)
    table = yaml.safe_load(out.read_text()) if out.exists() else {}
    if args.archs and device.type in table:  # measure a few (new) architectures: keep the others' rates
        rates = {**table[device.type]["training_flops_per_s"], **rates}
    table[device.type] = {
        "device": device_name(device),
        "measured": datetime.date.today().isoformat(),
        "batch": batch,
        "steps": args.steps,
        "load_average": round(os.getloadavg()[0], 1),  # other processes on the machine slow the rates down
        "training_flops_per_s": rates,
    }
    header = ("# Written by benchmarks/calibrate_costs.py (do not edit by hand): measured training FLOP/s per\n"
              "# architecture, per kind of device. lossatlas/costs.py uses a rate only for jobs on that kind.\n")
    tmp = out.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(table, sort_keys=True, width=120))
    tmp.replace(out)
    print(f"wrote {len(rates)} {device.type} rates to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
