"""Run ``train_run`` or ``evaluate_run`` in a fresh process, optionally with one deterministic fault injected.

Usage: ``python tests/reliability_driver.py <args.json>``, or ``child(args, env, log_path)`` forked from a
server that already imported torch (what the tests do: a fork costs milliseconds, a torch import seconds).
The args: ``{"what": "train" | "evaluate", "spec": {...}, "dataset": path, "out": path, "work_dir": path}``.

The fault is read from the environment variable ``LOSSATLAS_TEST_FAULT`` = ``<kind>:<pattern>:<n>``:

- ``step::N``     SIGKILL this process at the N-th training step (a ``batch_loss`` call), between state saves;
- ``sigterm::N``  send SIGTERM to this process at the N-th training step (what SLURM does at a time limit);
- ``write:GLOB:N`` during the N-th atomic write of a file whose name matches GLOB (``state_g*.pt``,
  ``g*_c*.pt``, ``checkpoints.h5``, ``metrics.h5``): once the temporary file is written, cut it to half its
  size and SIGKILL before the rename, i.e. die in the middle of writing it;
- ``h5:GLOB:N``   SIGKILL when the N-th HDF5 dataset of an output matching GLOB is about to be created (a
  half-assembled checkpoints.h5 / metrics.h5).

The library code is not modified: the hooks wrap the module attributes the engine calls, so the kill points
are exact and repeatable (a timer-based kill would land somewhere different on every machine).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import signal
import sys
from pathlib import Path

FAULT_ENV = "LOSSATLAS_TEST_FAULT"


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(fault: str) -> None:
    import lossatlas.evaluation as evaluation
    import lossatlas.resume as resume
    import lossatlas.training as training

    kind, pattern, n = fault.split(":")
    target = int(n)
    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == target

    if kind in ("step", "sigterm"):
        original_loss = training.batch_loss

        def batch_loss(*args, **kwargs):
            if hit():
                if kind == "step":
                    _die()
                os.kill(os.getpid(), signal.SIGTERM)
            return original_loss(*args, **kwargs)

        training.batch_loss = batch_loss
    elif kind == "write":
        original_atomic = training.atomic_path

        @contextlib.contextmanager
        def atomic_path(path):
            with original_atomic(path) as tmp:
                yield tmp
                if fnmatch.fnmatch(Path(path).name, pattern) and hit():
                    size = tmp.stat().st_size
                    with open(tmp, "r+b") as fh:
                        fh.truncate(size // 2)
                    _die()

        training.atomic_path = atomic_path
        resume.atomic_path = atomic_path  # the work_dir files: checkpoint weights, resume states
        evaluation.atomic_path = atomic_path
    elif kind == "h5":
        writer = training.H5Writer
        original_call = writer.__call__

        def call(self, path, data, **kwargs):
            if fnmatch.fnmatch(Path(self.f.filename).name, f".{pattern}.*") and hit():
                self.f.flush()
                _die()
            return original_call(self, path, data, **kwargs)

        writer.__call__ = call
    else:
        raise ValueError(f"{FAULT_ENV}: unknown fault kind {kind!r}")


def child(args: dict, env: dict[str, str], log_path: str) -> None:
    """Entry of a forked run: stderr (and the logs) go to ``log_path``; the fault comes from ``env``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(env)
    if FAULT_ENV not in env:
        os.environ.pop(FAULT_ENV, None)
    run(args)


def run(args: dict) -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stderr, force=True)
    fault = os.environ.get(FAULT_ENV)
    if fault:
        install_fault(fault)
    if args["what"] == "train":
        from lossatlas.training import train_run

        train_run(args["spec"], args["dataset"], args["out"], args["work_dir"])
    elif args["what"] == "evaluate":
        from lossatlas.evaluation import evaluate_run

        evaluate_run(args["spec"], args["checkpoints"], args["dataset"], args["out"])
    else:
        raise ValueError(f"what: train | evaluate, got {args['what']!r}")


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
