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

import os
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
    ("stacked", "write:state_g*.pt:2", "'step': 6"),  # while writing the resume state itself
    ("stacked", "h5:checkpoints.h5:6", "already trained"),  # half-way through assembling checkpoints.h5
    ("stacked", "write:checkpoints.h5:1", "already trained"),  # checkpoints.h5 written but not yet renamed
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
        assert any(resume_at in line for line in resumed), f"expected a resume at {resume_at}: {resumed}"
    assert_h5_equal(reference[which] / "checkpoints.h5", run_dir / "checkpoints.h5")
    assert not (run_dir / "_work").exists()


@pytest.mark.slow
def test_repeated_kills_and_resumes_still_give_the_uninterrupted_checkpoints_and_metrics(tmp_path, digits,
                                                                                        reference):
    """Killed again and again, each time resuming from the last kill's state, then evaluated (and killed there)."""
    run_dir = tmp_path / "run"
    for fault in ("step::12", "write:state_g*.pt:2", "step::25", "h5:checkpoints.h5:3"):
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
    assert any((run_dir / "_work").glob("state_g*.pt")), "SIGTERM must save the training state"
    retry = train(spec, digits, run_dir)
    assert retry.returncode == 0, retry.stderr[-3000:]
    resumed = [line for line in retry.stderr.splitlines() if "resuming at" in line]
    # The state is saved at the step the signal arrived at (the 40th), not at an earlier epoch end.
    assert resumed and "'step': 40," in resumed[0], resumed
    assert_h5_equal(reference[which] / "checkpoints.h5", run_dir / "checkpoints.h5")


@pytest.mark.slow
def test_a_rerun_removes_the_temporary_that_a_killed_write_left(tmp_path, digits):
    run_dir = tmp_path / "run"
    _assert_nothing_finished(run_dir, train(STACKED, digits, run_dir, "write:checkpoints.h5:1"), "write")
    assert train(STACKED, digits, run_dir).returncode == 0
    assert not list(run_dir.glob(".checkpoints.h5.*.tmp"))


@pytest.mark.slow
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


def test_an_entry_script_failure_is_written_to_the_rule_log(tmp_path):
    """lossatlas.entry.setup sends an uncaught exception's traceback into the rule's log file as well."""
    import sys
    from types import SimpleNamespace

    from lossatlas.entry import setup

    log_path = tmp_path / "logs" / "train.log"
    previous = sys.excepthook
    try:
        setup(SimpleNamespace(threads=1, log=[str(log_path)], rule="train"))
        try:
            raise ValueError("checkpoints.epochs: epoch 99 is beyond the run's 1 epochs")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = previous
        import logging

        for handler in logging.getLogger().handlers[:]:
            handler.close()
            logging.getLogger().removeHandler(handler)
    text = log_path.read_text()
    assert "job failed" in text and "Traceback" in text and "epoch 99 is beyond" in text


# ------------------------------------------------------------------------------------- through snakemake

LONG_EPOCHS = 40  # a few seconds of training: long enough to be interrupted after its first checkpoints


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """tests/configs/tiny.yaml plus a longer recipe (``rel_long``) and one that fails in training (``rel_bad``:
    an MLP whose per-layer bias list has the wrong length, which only building the model can tell), a work
    directory holding the built dataset (copied per test), and the uninterrupted result of the long run computed
    by the library directly."""
    import yaml

    from lossatlas.config import expand_runs, jsonable, validate_config

    from .reliability_helpers import TINY_CONFIG, snakemake

    root = tmp_path_factory.mktemp("workflow")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    recipes = config["studies"]["universality"]["recipes"]
    base = recipes["tiny"]
    recipes["rel_long"] = {**base, "losses": ["ce"], "epochs": LONG_EPOCHS, "checkpoints": {"every": 5}}
    config["architectures"]["rel_bad_mlp"] = {"model": "mlp", "hidden": [16], "bias": [True, False, True]}
    recipes["rel_bad"] = {**base, "architectures": ["rel_bad_mlp"], "losses": ["ce"], "seeds": [0], "epochs": 1}
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    runs = {(r.recipe, r.loss): r for r in expand_runs(validate_config(config))}
    long_run = runs[("rel_long", "ce")]
    seed_dir = root / "seed"
    dataset = f"data/{long_run.dataset}.h5"
    proc = snakemake(seed_dir, dataset, configfile=config_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    reference = root / "reference"
    spec = jsonable(long_run.spec)
    for step in (train, evaluate):
        done = step(spec, seed_dir / dataset, reference)
        assert done.returncode == 0, done.stderr[-3000:]
    return {"config": config_path, "seed": seed_dir, "runs": runs, "long": long_run, "reference": reference}


def _workdir(workflow, tmp_path: Path) -> Path:
    import shutil

    workdir = tmp_path / "work"
    shutil.copytree(workflow["seed"], workdir, symlinks=True)
    return workdir


def _wait_for_progress(run_dir: Path, proc, checkpoints: int = 2) -> None:
    from .reliability_helpers import wait_for

    ckpt = run_dir / "_work" / "ckpt"
    wait_for(lambda: any((run_dir / "_work").glob("state_g*.pt")) and ckpt.is_dir()
             and len([p for p in ckpt.iterdir() if p.suffix == ".pt"]) >= checkpoints,
             what="training to write its first checkpoints", proc=proc)


def _assert_equals_reference(workflow, run_dir: Path) -> None:
    assert_h5_equal(workflow["reference"] / "checkpoints.h5", run_dir / "checkpoints.h5")
    assert_h5_equal(workflow["reference"] / "metrics.h5", run_dir / "metrics.h5")
    assert not (run_dir / "_work").exists()


def _train_log(workdir: Path, run) -> str:
    """The train rule's log of ``run`` (found under results/logs/, wherever rules/train.smk puts it)."""
    tail = run.dir.split("results/runs/", 1)[1]
    hits = [p for p in (workdir / "results" / "logs").rglob("train.log") if p.parent.as_posix().endswith(tail)]
    assert len(hits) == 1, f"expected one train.log for {run.dir}, found {hits}"
    return hits[0].read_text()


def _train_job(proc) -> int:
    """The process id of the python running workflow_scripts/train.py below a snakemake started by the test."""
    from .reliability_helpers import cmdline, descendants

    jobs = [pid for pid in descendants(proc.pid) if "train.py" in cmdline(pid) and "python" in cmdline(pid)
            and not cmdline(pid).startswith(("bash", "/bin/bash", "/usr/bin/bash"))]
    assert len(jobs) == 1, [cmdline(p) for p in descendants(proc.pid)]
    return jobs[0]


@pytest.mark.slow
def test_killing_the_whole_workflow_mid_training_then_rerunning_gives_the_uninterrupted_result(tmp_path, workflow):
    """A node lost mid-job: snakemake and its job die together (SIGKILL to the process group)."""
    from .reliability_helpers import kill_group, snakemake, start_snakemake

    workdir, run = _workdir(workflow, tmp_path), workflow["long"]
    run_dir = workdir / run.dir
    proc = start_snakemake(workdir, run.metrics, configfile=workflow["config"])
    _wait_for_progress(run_dir, proc)
    kill_group(proc)
    assert finished_looking_files(run_dir) == []
    # Snakemake's lock survives a SIGKILL: the next run refuses, naming the remedy, and touches nothing.
    refused = snakemake(workdir, run.metrics, configfile=workflow["config"])
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    assert snakemake(workdir, "--unlock", configfile=workflow["config"]).returncode == 0
    rerun = snakemake(workdir, run.metrics, configfile=workflow["config"])
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert "resuming at" in _train_log(workdir, run)
    _assert_equals_reference(workflow, run_dir)


@pytest.mark.slow
def test_sigterm_to_a_training_job_saves_and_the_retry_resumes(tmp_path, workflow):
    """SLURM's time limit / preemption: the job gets SIGTERM, saves its state, fails; the retry resumes."""
    from .reliability_helpers import snakemake, start_snakemake

    workdir, run = _workdir(workflow, tmp_path), workflow["long"]
    run_dir = workdir / run.dir
    proc = start_snakemake(workdir, run.metrics, configfile=workflow["config"])
    _wait_for_progress(run_dir, proc)
    os.kill(_train_job(proc), signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Error in rule train" in out, out[-3000:]
    assert "SIGTERM received" in _train_log(workdir, run)
    assert any((run_dir / "_work").glob("state_g*.pt"))
    assert finished_looking_files(run_dir) == []
    retry = snakemake(workdir, run.metrics, configfile=workflow["config"])
    assert retry.returncode == 0, (retry.stdout + retry.stderr)[-3000:]
    assert "resuming at" in _train_log(workdir, run)
    _assert_equals_reference(workflow, run_dir)


@pytest.mark.slow
def test_a_failing_job_under_keep_going_leaves_every_other_job_complete(tmp_path, workflow):
    from .reliability_helpers import snakemake

    workdir = _workdir(workflow, tmp_path)
    good = [workflow["runs"][("tiny", loss)] for loss in ("ce", "mse_softmax")]
    bad = workflow["runs"][("rel_bad", "ce")]
    proc = snakemake(workdir, "--keep-going", bad.metrics, *[r.metrics for r in good], configfile=workflow["config"])
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Error in rule train" in log, log[-3000:]
    # The error is in snakemake's output and in the rule's own log (what a SLURM user opens first).
    problem = "architecture 'rel_bad_mlp': bias lists 3 values but the model has 2 Linear layers"
    assert problem in log
    assert problem in _train_log(workdir, bad)
    assert not (workdir / bad.dir).exists() or finished_looking_files(workdir / bad.dir) == []
    for run in good:
        run_dir = workdir / run.dir
        assert finished_looking_files(run_dir) == ["checkpoints.h5", "metrics.h5"]
        assert not (run_dir / "_work").exists()
        with h5py.File(run_dir / "metrics.h5", "r") as f:
            assert f["checkpoints/valid"][()].all() and not f["status/diverged"][()].any()
            for split in ("train", "test"):
                for name, ds in f[f"{split}/summary"].items():
                    assert np.isfinite(ds[()]).all(), f"{run.dir}: {split}/summary/{name}"
    again = snakemake(workdir, "-n", *[r.metrics for r in good], configfile=workflow["config"])
    assert "Nothing to be done" in again.stdout + again.stderr, "the good jobs must count as finished"


@pytest.mark.slow
def test_a_second_snakemake_on_the_same_directory_is_refused_and_the_first_finishes_intact(tmp_path, workflow):
    from .reliability_helpers import snakemake, start_snakemake

    workdir, run = _workdir(workflow, tmp_path), workflow["long"]
    first = start_snakemake(workdir, run.metrics, configfile=workflow["config"])
    _wait_for_progress(workdir / run.dir, first)
    # Hold the first one's training job still, so that it is certainly running while the second one starts.
    job = _train_job(first)
    os.kill(job, signal.SIGSTOP)
    try:
        for extra in ((), ("--rerun-incomplete",)):
            second = snakemake(workdir, *extra, run.metrics, configfile=workflow["config"])
            assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr, \
                (second.stdout + second.stderr)[-3000:]
        assert first.poll() is None, "the second invocation must not disturb the running one"
    finally:
        os.kill(job, signal.SIGCONT)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    _assert_equals_reference(workflow, workdir / run.dir)


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os

    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
