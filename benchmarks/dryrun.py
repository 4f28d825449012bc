"""Dry-run speed at paper scale: `snakemake -n all_figures` on configs/paper.yaml with nothing built, and again
after a single parameter change (one optimizer's learning rate), in a scratch working directory.

    .venv/bin/python benchmarks/dryrun.py [--configfile configs/paper.yaml]

Prints the job count and the wall time of each dry run; the acceptance target is under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(configfile: Path, workdir: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", "--configfile", str(configfile),
                           "--directory", str(workdir), "all_figures"],
                          cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    out = proc.stdout + proc.stderr
    total = re.search(r"^total\s+(\d+)", out, re.M)
    return (int(total.group(1)) if total else 0), seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="configs/paper.yaml")
    args = parser.parse_args()
    configfile = (REPO / args.configfile).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs, seconds, out = dry_run(configfile, tmp)
        train = re.search(r"^train\s+(\d+)", out, re.M)
        print(f"dry run, nothing built: {jobs} jobs ({train.group(1) if train else 0} training) in {seconds:.1f} s")
        cfg = yaml.safe_load(configfile.read_text())
        name, opt = next((n, o) for n, o in cfg["optimizers"].items() if isinstance(o.get("lr"), (int, float)))
        opt["lr"] = opt["lr"] / 2
        changed = tmp / "changed.yaml"
        changed.write_text(yaml.safe_dump(cfg))
        jobs2, seconds2, _ = dry_run(changed, tmp)
        print(f"dry run after halving optimizers.{name}.lr: {jobs2} jobs in {seconds2:.1f} s")
        print(f"dryrun_seconds: {seconds:.1f}")


if __name__ == "__main__":
    main()
