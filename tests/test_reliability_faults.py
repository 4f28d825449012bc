"""Faults: killed and preempted jobs resume to the same result, failed jobs leave nothing that looks finished.

Library level (deterministic kill points, tests/reliability_driver.py): a training / evaluation process is
SIGKILLed mid-epoch, while writing a checkpoint weight file, while writing the resume state, while assembling
checkpoints.h5 / metrics.h5 and just before the final rename; or gets SIGTERM (SLURM time limit). After each,
no checkpoints.h5 / metrics.h5 exists, and a plain re-run ends with the same file, bit for bit in content, as an
uninterrupted run. Workflow level (snakemake on a throwaway directory): killing the whole snakemake process
tree, SIGTERM to a training job, ``--keep-going`` around a failing job, and a second snakemake on the same
directory.
"""

from __future__ import annotations

import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from lossatlas.io import atomic_path, write_json

from .reliability_helpers import (
    assert_h5_equal,
    evaluate,
    finished_looking_files,
    make_digits,
    tiny_spec,
    train,
)

STACKED = tiny_spec()  # 2 members trained as one stacked model, 19 steps per epoch, 3 epochs
# 2 members one after another, with dropout: the resume must restore the dropout RNG and the member position.
LOOPED = tiny_spec(architecture={"name": "mlp16d", "model": "mlp", "hidden": [16], "dropout_p": 0.25},
                   vectorize="never")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return make_digits(tmp_path_factory.mktemp("data") / "digits.h5")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits) -> dict[str, Path]:
    """Uninterrupted runs (train + evaluate) of both specs, in the same kind of process as the faulty ones."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, spec in (("stacked", STACKED), ("looped", LOOPED)):
        run_dir = root / name
        for step in (train, evaluate):
            proc = step(spec, digits, run_dir)
            assert proc.returncode == 0, proc.stderr[-3000:]
        assert not (run_dir / "_work").exists(), "the resume folder is removed after a successful run"
        out[name] = run_dir
    return out


def _assert_nothing_finished(run_dir: Path, proc, fault: str, expect_rc: int = -signal.SIGKILL) -> None:
    assert proc.returncode == expect_rc, f"fault {fault} was not hit (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert finished_looking_files(run_dir) == [], f"after {fault}: {finished_looking_files(run_dir)}"


# Each kill point: (spec, fault, the resume position it must restart from: None = from scratch).
KILLS = [
    ("stacked", "step::5", None),  # first epoch, before any state was saved
    ("stacked", "step::30", "'epoch': 1"),  # middle of epoch 2: resumes from the end of epoch 1
    ("stacked", "write:g*_c*.pt:3", "'step': 6"),  # while writing a checkpoint's weights
    ("stacked", "write:state.pt:2", "'step': 6"),  # while writing the resume state itself
    ("stacked", "h5:checkpoints.h5:6", "'epoch': 3"),  # half-way through assembling checkpoints.h5
    ("stacked", "write:checkpoints.h5:1", "'epoch': 3"),  # checkpoints.h5 written but not yet renamed
    ("looped", "step::30", "'group': 0"),  # member 0 of a loop with dropout
    ("looped", "step::70", "'group': 1"),  # member 1: member 0 is done and must not be retrained
]


@pytest.mark.slow
@pytest.mark.parametrize(("which", "fault", "resume_at"), KILLS, ids=[f"{w}-{f}" for w, f, _ in KILLS])
def test_sigkill_during_training_then_rerun_gives_the_uninterrupted_result(tmp_path, digits, reference, which,
                                                                          fault, resume_at):
    spec = STACKED if which == "stacked" else LOOPED
    run_dir = tmp_path / "run"
    killed = train(spec, digits, run_dir, fault)
    _assert_nothing_finished(run_dir, killed, fault)
    rerun = train(spec, digits, run_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = [line for line in rerun.stderr.splitlines() if "resuming at" in line]
    if resume_at is None:
        assert not resumed, "nothing was saved before the kill, so the re-run must start from scratch"
    else:
        assert resumed and resume_at in resumed[0], f"expected a resume at {resume_at}: {resumed}"
    assert_h5_equal(reference[which] / "checkpoints.h5", run_dir / "checkpoints.h5")
    assert not (run_dir / "_work").exists()


@pytest.mark.slow
def test_repeated_kills_and_resumes_still_give_the_uninterrupted_checkpoints_and_metrics(tmp_path, digits,
                                                                                        reference):
    """Killed again and again, each time resuming from the last kill's state, then evaluated (and killed there)."""
    run_dir = tmp_path / "run"
    for fault in ("step::12", "write:state.pt:2", "step::25", "h5:checkpoints.h5:3"):
        _assert_nothing_finished(run_dir, train(STACKED, digits, run_dir, fault), fault)
    assert train(STACKED, digits, run_dir).returncode == 0
    assert_h5_equal(reference["stacked"] / "checkpoints.h5", run_dir / "checkpoints.h5")
    for fault in ("h5:metrics.h5:10", "write:metrics.h5:1"):
        killed = evaluate(STACKED, digits, run_dir, fault)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert not (run_dir / "metrics.h5").exists(), f"{fault} left a metrics.h5"
    done = evaluate(STACKED, digits, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_h5_equal(reference["stacked"] / "metrics.h5", run_dir / "metrics.h5")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["stacked", "looped"])
def test_sigterm_saves_the_state_exits_143_and_a_retry_resumes(tmp_path, digits, reference, which):
    spec = STACKED if which == "stacked" else LOOPED
    run_dir = tmp_path / "run"
    stopped = train(spec, digits, run_dir, "sigterm::40")
    _assert_nothing_finished(run_dir, stopped, "sigterm::40", expect_rc=143)
    assert "SIGTERM received" in stopped.stderr
    assert (run_dir / "_work" / "state.pt").is_file(), "SIGTERM must save the training state"
    retry = train(spec, digits, run_dir)
    assert retry.returncode == 0, retry.stderr[-3000:]
    resumed = [line for line in retry.stderr.splitlines() if "resuming at" in line]
    # The state is saved at the step the signal arrived at (the 40th), not at an earlier epoch end.
    assert resumed and "'step': 40," in resumed[0], resumed
    assert_h5_equal(reference[which] / "checkpoints.h5", run_dir / "checkpoints.h5")


def test_a_resume_state_of_another_spec_is_discarded(tmp_path, digits, reference):
    """A state left by a run with other settings (e.g. the lr was changed after a crash) must not be resumed."""
    run_dir = tmp_path / "run"
    other = tiny_spec(optimizer={"name": "sgd", "lr": 0.2, "momentum": 0.9})
    _assert_nothing_finished(run_dir, train(other, digits, run_dir, "step::30"), "step::30")
    rerun = train(STACKED, digits, run_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "discarding a resume state" in rerun.stderr and "resuming at" not in rerun.stderr
    assert_h5_equal(reference["stacked"] / "checkpoints.h5", run_dir / "checkpoints.h5")


# ------------------------------------------------------------------------------------------ atomic writes


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out" / "metrics.h5"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as f:
            f["x"] = np.arange(10)
        raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


def test_atomic_path_keeps_the_previous_file_when_a_rewrite_fails(tmp_path):
    target = tmp_path / "analysis.json"
    write_json(target, {"version": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2')
        raise KeyboardInterrupt
    assert target.read_text().strip().endswith("}") and '"version": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["analysis.json"]
