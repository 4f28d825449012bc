"""The worker processes of a CPU training job: one single-threaded process per core, sharing out the groups.

On CPU one process with T threads trains small models far below the speed of T single-threaded processes
(per-op thread synchronisation dominates; benchmarks/ensemble_training.py), so a block job runs T workers
(``python -m lossatlas.train_worker``), each claiming the next untrained group whenever it is free (a claim file
per group and launch, so a slower worker does not leave the others idle at the end). The groups write their own
state and finished records in work_dir, so resume and the assembled checkpoints.h5 do not depend on which
process trained what.
"""

# Kept next to Snakemake's own scheduling because it measured several times faster than the block in one process
# with all cores as threads (benchmarks/ensemble_training.py, column blk/inproc; blk/proc: one job per member).

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lossatlas.io import atomic_path
from lossatlas.resume import PREEMPTED_EXIT_CODE, Preempted, Sigterm

log = logging.getLogger("lossatlas.training")


def run_workers(work_dir: Path, job: dict, workers: int, threads: int) -> None:
    """Start ``workers`` worker processes sharing ``threads`` cores on ``job`` (``train_run``'s arguments, see
    ``lossatlas.train_worker``), wait for them, and raise as they end (``wait_for_workers``)."""
    claims = work_dir / "claims" / f"{os.getpid()}_{time.time_ns()}"
    claims.mkdir(parents=True)
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    library = str(Path(__file__).resolve().parents[1])
    procs, labels = [], []
    try:
        for w in range(workers):
            worker_threads = threads // workers + (1 if w < threads % workers else 0)
            args_path = work_dir / f"worker{w}.json"
            with atomic_path(args_path) as tmp:
                tmp.write_text(json.dumps({**job, "worker": w, "claims_dir": str(claims), "threads": worker_threads,
                                           "log_files": log_files, "parent_pid": os.getpid(),
                                           "log_level": logging.getLogger().getEffectiveLevel()}))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([library, os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": str(worker_threads), "MKL_NUM_THREADS": str(worker_threads)}
            procs.append(subprocess.Popen([sys.executable, "-m", "lossatlas.train_worker", str(args_path)],
                                          env=env))
            labels.append(f"worker {w} (pid {procs[-1].pid})")
    except BaseException:
        for p in procs:
            p.kill()
        raise
    wait_for_workers(procs, labels)


def claim(claims_dir: Path, group: int, worker: int) -> bool:
    """Claim ``group`` for ``worker``; False if another worker has it."""
    try:
        fd = os.open(claims_dir / f"g{group:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(worker).encode())
    os.close(fd)
    return True


def wait_for_workers(procs: Sequence[subprocess.Popen], labels: Sequence[str], poll_s: float = 0.1) -> None:
    """Wait until every worker has ended. SIGTERM to this process is passed on to the workers (each saves its
    state); when one fails the others are sent SIGTERM too, so they save theirs and a retry resumes. Raises
    RuntimeError naming the failed workers, else ``Preempted`` if any was stopped by SIGTERM."""
    stopped = False
    with Sigterm() as sigterm:
        while [p.poll() for p in procs].count(None):  # poll every worker (any() would stop at the first)
            failed = any(p.returncode not in (None, 0, PREEMPTED_EXIT_CODE, -signal.SIGTERM) for p in procs)
            if (sigterm.received or failed) and not stopped:
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(poll_s)
    codes = [p.returncode for p in procs]
    failures = [f"{label} exited with status {code}" for label, code in zip(labels, codes, strict=True)
                if code not in (0, PREEMPTED_EXIT_CODE, -signal.SIGTERM)]
    if failures:
        raise RuntimeError("training worker process(es) failed: " + "; ".join(failures)
                           + " (the error is logged above; a negative status is the signal that killed it)")
    if any(code != 0 for code in codes):
        raise Preempted()
