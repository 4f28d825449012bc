"""Fault injection: a training job killed with SIGKILL, or stopped with SIGTERM, resumes to the same result;
the same with the job's members shared out between worker processes (``threads`` > 1 on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lossatlas.training import train_run
from tests.engine_helpers import DEVICES, make_classification_h5, make_spec

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
import torch
torch.set_num_threads(1)
from lossatlas.training import train_run
spec, data, out, work, threads = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
train_run(spec, data, out, work, threads=threads)
"""

pytestmark = pytest.mark.slow


def reference(spec: dict, data: Path, tmp_path: Path, threads: int = 1) -> Path:
    """The uninterrupted run, in this process (same thread count as the children: 1; with ``threads`` > 1 the
    same worker processes of one thread each)."""
    torch.set_num_threads(1)
    out = tmp_path / "ref.h5"
    train_run(spec, data, out, tmp_path / "ref_work", threads=threads)
    return out


def start(spec: dict, data: Path, out: Path, work: Path, threads: int = 1) -> subprocess.Popen:
    env = {**os.environ, "LOSSATLAS_STATE_EVERY_S": "0", "PYTHONPATH": str(REPO / "workflow_scripts")}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(spec), str(data), str(out), str(work),
                             str(threads)], env=env, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoints(work: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((work / "ckpt").glob("*.pt"))) >= count and any(work.glob("state_g*.pt")):
            return
        assert proc.poll() is None, f"the job ended before it could be interrupted:\n{proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError("no checkpoints appeared")


def file_content(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = dict(f.attrs)
    return out


def assert_same(a: Path, b: Path) -> None:
    ca, cb = file_content(a), file_content(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        if k == "attrs":
            assert {x: str(v) for x, v in ca[k].items()} == {x: str(v) for x, v in cb[k].items()}
        else:
            np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    assert a.read_bytes() == b.read_bytes()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_classification_h5(tmp_path_factory.mktemp("data") / "big.h5", n_train=800, n_test=10)


@pytest.mark.parametrize("device", DEVICES)
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path, data, device):
    # Two members one after another (loop), so the kill lands inside some member's run.
    spec = make_spec(seeds=[0, 1], epochs=8, batch_size=8, vectorize="never", device=device,
                     checkpoints={"every": 1, "within_epochs": 2, "per_epoch": 3})
    ref, out, work = reference(spec, data, tmp_path), tmp_path / "out.h5", tmp_path / "work"

    proc = start(spec, data, out, work)
    wait_for_checkpoints(work, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not out.exists() and any(work.glob("state_g*.pt"))

    proc = start(spec, data, out, work)
    assert proc.wait(120) == 0
    assert "resuming at" in proc.stderr.read()
    assert not work.exists()
    assert_same(ref, out)


@pytest.mark.parametrize("device", DEVICES)
def test_sigterm_saves_state_exits_nonzero_and_resumes(tmp_path, data, device):
    # stacked, with dropout: each member's mask generator is part of the saved state
    spec = make_spec(seeds=[0, 1, 2], epochs=8, batch_size=8, vectorize="always", dtype="float32", device=device,
                     architecture={"name": "mlp16d", "model": "mlp", "hidden": [16], "batchnorm": True,
                                   "dropout_p": 0.3})
    ref, out, work = reference(spec, data, tmp_path), tmp_path / "out.h5", tmp_path / "work"

    proc = start(spec, data, out, work)
    wait_for_checkpoints(work, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    assert not out.exists() and any(work.glob("state_g*.pt"))

    proc = start(spec, data, out, work)
    assert proc.wait(120) == 0
    assert "resuming at" in proc.stderr.read()
    assert_same(ref, out)


def test_state_of_another_spec_is_discarded(tmp_path, data):
    spec = make_spec(seeds=[0], epochs=6, batch_size=8)
    out, work = tmp_path / "out.h5", tmp_path / "work"
    proc = start(spec, data, out, work)
    wait_for_checkpoints(work, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    changed = {**spec, "optimizer": {**spec["optimizer"], "lr": 0.01}}
    proc = start(changed, data, out, work)
    assert proc.wait(120) == 0
    err = proc.stderr.read()
    assert "discarding a resume state" in err and "resuming at" not in err
    assert_same(reference(changed, data, tmp_path), out)


# --------------------------------------------------------------------------------------- worker processes


def test_members_shared_between_worker_processes_equal_one_process(tmp_path, data):
    """threads=2 on CPU: two single-threaded workers; a loop gives the same bytes as one process, stacked
    chunks equal the whole stack (same per-member arithmetic), and the file says how it was trained."""
    torch.set_num_threads(1)  # as each worker has
    for vectorize in ("never", "always"):
        spec = make_spec(seeds=[0, 1, 2], epochs=2, batch_size=32, vectorize=vectorize)
        one = tmp_path / f"one_{vectorize}.h5"
        two = tmp_path / f"two_{vectorize}.h5"
        train_run(spec, data, one, tmp_path / "w1", threads=2, workers=1)
        train_run(spec, data, two, tmp_path / "w2", threads=2)
        a, b = file_content(one), file_content(two)
        assert (a["attrs"]["workers"], b["attrs"]["workers"]) == (1, 2)
        for k in a:
            if k != "attrs":
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{vectorize}: {k}")
        assert not (tmp_path / "w2").exists()


def test_sigterm_reaches_the_workers_and_sigkill_stops_them_and_a_rerun_resumes(tmp_path, data):
    from tests.reliability_helpers import descendants

    spec = make_spec(seeds=[0, 1, 2, 3], epochs=6, batch_size=8, vectorize="never",
                     checkpoints={"every": 1, "within_epochs": 2, "per_epoch": 3})
    ref, out, work = reference(spec, data, tmp_path, threads=2), tmp_path / "out.h5", tmp_path / "work"

    proc = start(spec, data, out, work, threads=2)
    wait_for_checkpoints(work, 6, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    err = proc.stderr.read()
    assert err.count("SIGTERM received") >= 2, err  # the job and its workers
    assert not out.exists() and any(work.glob("state_g*.pt"))

    proc = start(spec, data, out, work, threads=2)
    wait_for_checkpoints(work, 20, proc)
    workers = descendants(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers)), "workers outlived their killed job"

    proc = start(spec, data, out, work, threads=2)
    assert proc.wait(120) == 0, proc.stderr.read()
    assert "resuming at" in proc.stderr.read()
    assert_same(ref, out)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie nobody reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_failed_worker_is_named_and_the_others_are_stopped():
    from lossatlas.workers import wait_for_workers

    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    # (SIG_DFL explicitly: a test runner's process may ignore SIGTERM, and children inherit that)
    sleeping = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_DFL); time.sleep(120)"])
    with pytest.raises(RuntimeError, match=r"worker B exited with status 3") as info:
        wait_for_workers([sleeping, failing], ["worker A", "worker B"], poll_s=0.01)
    assert "worker A" not in str(info.value)  # stopped by SIGTERM (to save its state), not a failure
    assert sleeping.returncode == -signal.SIGTERM
