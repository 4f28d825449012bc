"""The audit and the cost model behind SLURM requests."""

from __future__ import annotations

from lossatlas.audit import audit_rows, planned_checkpoints, render_audit
from lossatlas.config import expand_runs, validate_config
from lossatlas.costs import forward_flops, run_cost

from .test_config import base_config


def test_mlp_forward_flops_exact():
    # 64 -> 32 -> 10: 2 * (64*32 + 32*10) = 4736
    assert forward_flops({"model": "mlp", "hidden": [32]}, (1, 8, 8), 10) == 4736.0


def test_cost_grows_with_model_epochs_and_members():
    cfg = validate_config(base_config())
    spec = next(r for r in expand_runs(cfg) if r.arch == "fc1").spec
    base = run_cost(cfg, spec).gpu_hours
    wider = dict(spec, architecture={"name": "w", "model": "mlp", "hidden": [256]})
    longer = dict(spec, epochs=spec["epochs"] * 2)
    more = dict(spec, seeds=spec["seeds"] * 2)
    assert run_cost(cfg, wider).gpu_hours > base
    assert run_cost(cfg, longer).gpu_hours > base and run_cost(cfg, more).gpu_hours > base


def test_planned_checkpoints_counts_schedule():
    # specs as the validated config gives them: every schedule key has its schema default
    spec = {"epochs": 10, "checkpoints": {"every": 2, "within_epochs": 2, "per_epoch": 3, "log_spaced": 0}}
    # epochs 0,2,4,6,8,10 (6) + 2 epochs x 3 inner points
    assert planned_checkpoints(spec, steps_per_epoch=5) == 12
    every_epoch = {"every": 1, "within_epochs": 0, "per_epoch": 0, "log_spaced": 0}
    assert planned_checkpoints({"epochs": 3, "checkpoints": every_epoch}, 5) == 4


def test_audit_status_and_rendering(tmp_path):
    cfg = validate_config(base_config())
    runs = expand_runs(cfg)
    done, trained, interrupted = runs[0], runs[1], runs[2]
    for r in (done, trained):
        (tmp_path / r.dir).mkdir(parents=True)
        (tmp_path / r.checkpoints).write_text("x")
    (tmp_path / done.metrics).write_text("x")
    (tmp_path / interrupted.dir / "_work").mkdir(parents=True)
    rows = audit_rows(cfg, runs, tmp_path)
    status = {r["dir"]: r["status"] for r in rows}
    assert status[done.dir] == "done" and status[trained.dir] == "trained"
    assert status[interrupted.dir] == "interrupted"
    assert sum(s == "missing" for s in status.values()) == len(runs) - 3
    by_dir = {r["dir"]: r for r in rows}
    assert by_dir[done.dir]["gpu_hours_left"] == 0
    # trained runs still owe their evaluation, a third of training; missing runs owe both
    assert 0 < by_dir[trained.dir]["gpu_hours_left"] < by_dir[runs[3].dir]["gpu_hours_left"]
    md = render_audit(rows, {"results/figures/universality/fig01.png": [done.dir, trained.dir]})
    assert "Work remains." in md and "fig01.png | 2 | 1 | 1" in md
    for r in runs:
        (tmp_path / r.dir).mkdir(parents=True, exist_ok=True)
        (tmp_path / r.checkpoints).write_text("x")
        (tmp_path / r.metrics).write_text("x")
    assert "Everything is done." in render_audit(audit_rows(cfg, runs, tmp_path), {})


def test_unevaluated_study_is_done_with_checkpoints_only(tmp_path):
    cfg = validate_config(base_config())
    run = expand_runs(cfg)[0]
    (tmp_path / run.dir).mkdir(parents=True)
    (tmp_path / run.checkpoints).write_text("x")
    assert audit_rows(cfg, [run], tmp_path)[0]["status"] == "trained"
    row = audit_rows(cfg, [run], tmp_path, unevaluated_studies={run.study})[0]
    assert row["status"] == "done" and row["gpu_hours_left"] == 0
