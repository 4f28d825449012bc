"""What every rule's entry script does before calling its one library function."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this parameter on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30


def setup(snakemake, threads: int | None = None) -> logging.Logger:
    """Send logging to the rule's log file (and stderr) and pin the thread count the rule declared.

    Oversubscription on small machines is severe (two processes fighting for two cores run far slower
    than half speed), so torch and the BLAS libraries get exactly ``threads`` threads.
    """
    threads = int(threads if threads is not None else getattr(snakemake, "threads", 1) or 1)
    tune_allocator()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # for child processes; this one has already loaded its BLAS
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # numpy/scipy BLAS and OpenMP pools of this process, from now on
    # Entry scripts import their library function (and so torch, where it is needed) before calling setup();
    # jobs that never use torch (figures, tables) do not pay its import.
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    logs = list(getattr(snakemake, "log", []) or [])
    if logs:
        Path(logs[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logs[0], mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers,
                        force=True)
    logger = logging.getLogger(f"lossatlas.{getattr(snakemake, 'rule', 'job')}")
    sys.excepthook = _log_uncaught(logger)
    return logger


def tune_allocator() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel (Linux only;
    returns whether it applied). PyTorch's CPU tensors come straight from malloc: with glibc's defaults the
    large temporaries of a training step (a wide group's activations are megabytes) are mapped and unmapped
    anew every step, and every page faults again. The process keeps up to ``TRIM_THRESHOLD_BYTES`` of freed
    heap; results do not change."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): its allocator has no such knobs
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _log_uncaught(logger: logging.Logger):
    """An excepthook that writes the error into the rule's log too: on a cluster the job's stderr lands in the
    scheduler's file, and a rule log that ends without a word about the failure sends users the wrong way."""

    def hook(exc_type, exc, tb) -> None:
        logger.critical("job failed", exc_info=(exc_type, exc, tb))  # to stderr and the log file

    return hook

