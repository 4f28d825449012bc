"""How long the medium study takes, per paper, next to the recorded run.

Runs ``snakemake --cores N all_figures --configfile configs/medium.yaml`` in a scratch working directory (or reads
the Snakemake log of a run already made, ``--log``), then attributes every job's wall time (from the log's start and
finish stamps) to the paper whose results it writes: ``results/{runs,analysis,figures}/<paper>/...``; datasets,
the claims table and the report are counted apart. Prints, per paper, the job-seconds (the sum of its jobs' wall
times: with N cores running, the run's wall time is about their total / N) and the ratio to the record in
``benchmarks/medium_run.json`` (above 1: slower). ``--record`` writes this run as the new record.

    .venv/bin/python benchmarks/medium_run.py [--workdir DIR] [--cores 2] [--record]
    .venv/bin/python benchmarks/medium_run.py --log DIR/.snakemake/log/<stamp>.snakemake.log --wall SECONDS
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).with_name("medium_run.json")
PAPERS = ("universality", "consistency", "normalized_loss", "loss_patterns", "embedding")
STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]")


def paper_of(outputs: str) -> str:
    """The paper whose results a job writes (its first output), else what the job is for."""
    m = re.search(r"results/(?:runs|analysis|figures|logs)/(\w+)/", outputs)
    if m and m.group(1) in PAPERS:
        return m.group(1)
    if outputs.startswith("data/"):
        return "datasets"
    return "claims, report"


def job_seconds(log_text: str) -> dict[str, float]:
    """Job-seconds per paper from a Snakemake log: each job from its "rule ..." block's stamp to the stamp of its
    "Finished jobid" line."""
    started: dict[str, tuple[datetime, str]] = {}
    out: dict[str, float] = {}
    now, outputs, in_job = None, "", False
    for line in log_text.splitlines():
        if m := STAMP.match(line):
            now = datetime.strptime(re.sub(" +", " ", m.group(1)), "%a %b %d %H:%M:%S %Y")
        elif re.match(r"(local)?rule \w+:", line):
            in_job, outputs = True, ""
        elif in_job and (m := re.match(r"\s+output: (.*)", line)):
            outputs = m.group(1)
        elif in_job and (m := re.match(r"\s+jobid: (\d+)", line)):
            started[m.group(1)] = (now, outputs)
            in_job = False
        elif m := re.match(r"Finished jobid: (\d+)", line):
            if m.group(1) in started:
                begin, outs = started.pop(m.group(1))
                key = paper_of(outs)
                out[key] = out.get(key, 0.0) + (now - begin).total_seconds()
    return out


def run(workdir: Path, cores: int) -> tuple[float, Path]:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", str(cores), "all_figures",
           "--configfile", str(REPO / "configs" / "medium.yaml"), "--directory", str(workdir)]
    start = time.monotonic()
    subprocess.run(cmd, cwd=REPO, check=True)
    wall = time.monotonic() - start
    return wall, max((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=os.path.getmtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to run (default: a new scratch folder)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--log", type=Path, help="read this Snakemake log instead of running")
    parser.add_argument("--wall", type=float, help="with --log: the run's wall time in seconds")
    parser.add_argument("--record", action="store_true", help=f"write this run to {RECORD.name}")
    args = parser.parse_args(argv)
    if args.log:
        if args.wall is None:
            parser.error("--log needs --wall (the log does not say how long the command took)")
        wall, log = args.wall, args.log
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lossatlas-medium-"))
        wall, log = run(workdir, args.cores)
    seconds = job_seconds(log.read_text())
    record = json.loads(RECORD.read_text()) if RECORD.exists() else None
    print(f"medium run: {wall / 60:.1f} min wall on {args.cores} cores ({log})")
    print(f"{'part':18s} {'job-s':>8s} {'record':>8s} {'ratio':>6s}")
    for key in [*PAPERS, "datasets", "claims, report"]:
        ours = seconds.get(key, 0.0)
        old = record["job_seconds"].get(key) if record else None
        ratio = f"{ours / old:6.2f}" if old else "     -"
        print(f"{key:18s} {ours:8.0f} {old if old is not None else '-':>8} {ratio}")
    if record:
        print(f"{'wall':18s} {wall:8.0f} {record['wall_seconds']:>8.0f} {wall / record['wall_seconds']:6.2f}")
    if args.record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        RECORD.write_text(json.dumps({
            "command": "snakemake --cores 2 all_figures --configfile configs/medium.yaml",
            "commit": commit, "date": datetime.now().strftime("%Y-%m-%d"), "cores": args.cores,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "wall_seconds": round(wall),
            "job_seconds": {k: round(v) for k, v in sorted(seconds.items())}}, indent=2) + "\n")
        print(f"recorded in {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
