"""Resume state of a training job: its work_dir files, the position in training, and SIGTERM handling.

A job's ``work_dir`` holds ``key`` (hash of what the arithmetic depends on: a work_dir of another key is
discarded whole), ``state_g<group>.pt`` (a started group's weights, optimizer, RNG, position and records, saved
atomically), ``done_g<group>.pt`` (a finished group's records) and ``ckpt/g<group>_c<index>.pt`` (checkpoint
weights as they are taken). A damaged file is logged and ignored, so a retry trains that part again.

State files hold tensors only (loaded with ``weights_only=True``, always onto the CPU) and their metadata as a
JSON string: results live in group-writable cluster folders, so loading must never unpickle arbitrary objects.
RNG states are CPU byte tensors on every device (what ``torch.set_rng_state``, ``Generator.set_state`` and
``torch.cuda.set_rng_state`` accept); on CUDA only the current device's generator is saved, so a state resumes
on a node with fewer GPUs.

SIGTERM (SLURM time limit, preemption) becomes a flag the training loop checks after every step; the loop then
saves the group's state and raises ``Preempted``, which exits with status 143 so a retry resumes.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossatlas.dropout import MemberMasks
from lossatlas.io import atomic_path

log = logging.getLogger("lossatlas.training")

STATE_EVERY_S_ENV = "LOSSATLAS_STATE_EVERY_S"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job


class Preempted(SystemExit):
    """Raised after SIGTERM once the training state is saved; exits non-zero so a retry resumes."""

    def __init__(self) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)


class Sigterm:
    """Turns SIGTERM into a flag the loop checks after every step (so the state saved is consistent)."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> Sigterm:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners): no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM received: saving the training state, then exiting %d", PREEMPTED_EXIT_CODE)
        self.received = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclass
class Position:
    group: int = 0
    phase: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0  # main-phase global step
    next_checkpoint: int = 0


class WorkDir:
    """The resume files of one job (see the module docstring); ``key`` identifies the job's arithmetic."""

    def __init__(self, path: Path, key: str, device: torch.device):
        self.path, self.key, self.device = Path(path), key, device

    def open(self) -> None:
        """Start or resume: keep the folder only if it belongs to this key; anything else there is from another
        run and is removed."""
        key_file = self.path / "key"
        if self.path.exists() and (not key_file.is_file() or key_file.read_text() != self.key):
            log.info("discarding a resume state of a different spec/dataset in %s", self.path)
            shutil.rmtree(self.path)
        (self.path / "ckpt").mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            with atomic_path(key_file) as tmp:
                tmp.write_text(self.key)

    def checkpoint_path(self, group: int, index: int) -> Path:
        return self.path / "ckpt" / f"g{group:05d}_c{index:06d}.pt"

    def state_path(self, group: int) -> Path:
        return self.path / f"state_g{group:05d}.pt"

    def done_path(self, group: int) -> Path:
        return self.path / f"done_g{group:05d}.pt"

    def save_checkpoint(self, group: int, index: int, weights: dict[str, torch.Tensor]) -> None:
        with atomic_path(self.checkpoint_path(group, index)) as tmp:
            torch.save(weights, tmp)

    def load_checkpoint(self, group: int, index: int) -> dict[str, torch.Tensor]:
        return torch.load(self.checkpoint_path(group, index), map_location="cpu", weights_only=True)

    def save_state(self, group: int, meta: dict, tensors: dict) -> None:
        """Save a group's resume state: ``meta`` plain JSON values, ``tensors`` (nested dicts / lists of)
        tensors."""
        self._write(self.state_path(group), meta, tensors)

    def load_state(self, group: int) -> tuple[dict, dict] | None:
        """(meta, tensors on the CPU) of a group's resume state, or None."""
        return self._read(self.state_path(group), "resume state")

    def save_done(self, group: int, status: dict) -> None:
        """Record a finished group (its status rows, tensors); its resume state is no longer needed."""
        self._write(self.done_path(group), {}, status)
        self.state_path(group).unlink(missing_ok=True)

    def load_done(self, group: int) -> dict | None:
        """The status rows of a finished group, or None."""
        payload = self._read(self.done_path(group), "finished-group record")
        return None if payload is None else payload[1]

    def _write(self, path: Path, meta: dict, tensors: dict) -> None:
        with atomic_path(path) as tmp:
            torch.save({"meta": json.dumps({"key": self.key, **meta}), "tensors": tensors}, tmp)

    def _read(self, path: Path, what: str) -> tuple[dict, dict] | None:
        if not path.exists():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:  # a damaged or foreign file must not block every retry
            log.warning("discarding an unreadable %s %s (%s: %s)", what, path, type(exc).__name__, exc)
            return None
        if meta.get("key") != self.key:
            log.info("discarding a %s of a different spec/dataset: %s", what, path)
            return None
        return meta, payload["tensors"]


def rng_state(device: torch.device, masks: MemberMasks) -> dict[str, Any]:
    """The random state a group trains from, as CPU tensors: torch's CPU generator, the members' dropout
    generators and, on CUDA, the current device's generator (not every visible GPU's)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state(), "dropout": [s.cpu() for s in masks.get_state()]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).cpu()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device, masks: MemberMasks) -> None:
    """Restore ``rng_state``'s result; every setter takes a CPU byte tensor, whatever the device."""
    torch.set_rng_state(state["cpu"].cpu())
    masks.set_state([s.cpu() for s in state["dropout"]])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
