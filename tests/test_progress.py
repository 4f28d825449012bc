"""Progress lines: long jobs log epoch/step, loss, rate and time left at a fixed interval, not only at the end."""

from __future__ import annotations

import logging

from lossatlas.progress import Progress, format_duration


def test_lines_at_the_interval_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="lossatlas.progress")
    progress = Progress("train", total=5, unit="epoch", interval_s=3600)
    assert progress.update(1, loss=0.5) is None  # the interval has not passed
    assert progress.update(4) is None
    last = progress.update(5, loss=0.25)  # the last unit always logs
    assert last is not None and last.startswith("train: epoch 5/5, loss 0.25, ") and "s/epoch" in last
    assert [r.getMessage() for r in caplog.records] == [last]


def test_every_update_logs_with_interval_zero_and_counts_from_a_resumed_start(caplog):
    caplog.set_level(logging.INFO, logger="lossatlas.progress")
    progress = Progress("fit", total=10, unit="iteration", done=4, interval_s=0)
    calls = []
    line = progress.update(6, loss=lambda: calls.append(1) or 1.5)
    assert line is not None and "iteration 6/10" in line and "loss 1.5" in line and "left" in line
    assert calls == [1]  # a loss function is called only for a line


def test_format_duration():
    assert format_duration(42) == "42s"
    assert format_duration(425) == "7m05s"
    assert format_duration(2 * 3600 + 9 * 60 + 20) == "2h09m"
    assert format_duration(float("nan")) == "?"


def test_a_training_job_logs_progress_before_it_finishes(tmp_path):
    """A training job killed in its third epoch has already logged a progress line for each finished epoch."""
    from lossatlas.progress import INTERVAL_ENV

    from .reliability_helpers import make_digits, run_driver, tiny_spec

    dataset = make_digits(tmp_path / "digits.h5")
    run_dir = tmp_path / "run"
    spec = tiny_spec(epochs=6, seeds=[0], checkpoints={"every": 1})
    steps_per_epoch = -(-1198 // 64)  # digits' 1,198 training examples, batches of 64
    proc = run_driver("train", {"spec": spec, "dataset": dataset, "out": run_dir / "checkpoints.h5",
                                "work_dir": run_dir / "_work"}, tmp_path / "args",
                      fault=f"step::{2 * steps_per_epoch + 3}", env={INTERVAL_ENV: "0"})
    assert proc.returncode != 0, "the fault should have killed the job"
    assert not (run_dir / "checkpoints.h5").exists()
    lines = [ln for ln in proc.stderr.splitlines() if "train group 0 main: epoch" in ln]
    assert [ln.split("epoch ")[1].split(",")[0] for ln in lines] == ["1/6", "2/6"], proc.stderr[-2000:]
    assert all("s/epoch" in ln and "left" in ln and "loss" in ln for ln in lines)
