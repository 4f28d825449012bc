"""The audit and the cost model behind SLURM requests."""

from __future__ import annotations

from pathlib import Path

import yaml

from lossatlas import costs
from lossatlas.audit import audit_rows, other_gpu_jobs, planned_checkpoints, render_audit
from lossatlas.config import apply_defaults, expand_runs, validate_config
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


def test_a_measured_rate_replaces_the_assumed_one_on_its_kind_of_device(monkeypatch):
    cfg = validate_config(base_config())
    spec = {**expand_runs(cfg)[0].spec, "device": "cpu"}
    monkeypatch.setattr(costs, "measured_rates", lambda: {})
    assumed = run_cost(cfg, spec)
    assert assumed.rate == "assumed"
    table = {"cpu": {"device": "CPU: test", "training_flops_per_s": {spec["architecture"]["name"]: 1e6}}}
    monkeypatch.setattr(costs, "measured_rates", lambda: table)
    measured = run_cost(cfg, spec)
    assert measured.rate == "measured (CPU: test)"
    assert measured.gpu_hours > assumed.gpu_hours  # 1 MFLOP/s is far below the assumed 9 TFLOP/s
    assert run_cost(cfg, {**spec, "device": "cuda"}).rate == "assumed"  # CPU numbers say nothing about a GPU


def test_other_gpu_jobs_are_counted_with_status_and_rate(tmp_path):
    cfg = {
        "device": "auto",
        "datasets": {"d": {"source": "digits"}},
        "architectures": {"a": {"model": "mlp", "hidden": [8]}},
        "studies": {
            "loss_patterns": {"fit": {"iterations": 10, "cells_per_update": 2, "batch_size": 4}, "eval_examples": 8,
                              "searches": {"s1": {"architecture": "a", "dataset": "d", "grid": 4}},
                              "bn_experiment": {"dataset": "d", "without_bn": "a", "with_bn": "a", "mask_size": 3,
                                                "fill_probabilities": [0.5], "seeds": [0],
                                                "protocols": {"paper": {},
                                                              "official": {"fit": {"iterations": 20}}}}},
            "embedding": {"fig01": {"epochs": 100}, "fig05": {"epochs": 100}},
        },
    }
    outputs = {"lp_search": "lp/{search}.h5", "lp_bn_run": "bn/{protocol}/{variant}/s{seed}.h5",
               "embedding": "emb/{experiment}.npz"}
    (tmp_path / "lp").mkdir()
    (tmp_path / "lp" / "s1.h5").write_text("x")
    cfg["cost_model"] = apply_defaults({})["cost_model"]  # the schema's defaults, as validation fills them
    rows = other_gpu_jobs(cfg, [], outputs, tmp_path)
    assert sorted((r["job"], r["name"], r["status"]) for r in rows) == [
        ("embedding", "fig01", "missing"), ("embedding", "fig05", "missing"),
        ("lp_bn_run", "official/with_bn/s0", "missing"), ("lp_bn_run", "official/without_bn/s0", "missing"),
        ("lp_bn_run", "paper/with_bn/s0", "missing"), ("lp_bn_run", "paper/without_bn/s0", "missing"),
        ("lp_search", "s1", "done")]
    assert all(r["gpu_hours_total"] > 0 and r["rate"] == "assumed" for r in rows)
    assert [r["gpu_hours_left"] for r in rows if r["status"] == "done"] == [0.0]
    md = render_audit(rows, {"results/figures/loss_patterns/fig01a.png": []})
    assert "| lp_search | 1 | 1 |" in md and "| lp_bn_run | 4 | 0 |" in md
    assert "| results/figures/loss_patterns/fig01a.png | 0 | 0 | 0 | 5 |" in md  # its study's other jobs


def test_committed_rates_cover_every_paper_scale_architecture_and_name_their_device():
    from benchmarks.calibrate_costs import trained_architectures

    table = yaml.safe_load(costs.RATES_PATH.read_text())
    paper = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "paper.yaml").read_text())
    for kind, section in table.items():
        assert kind in ("cpu", "cuda") and section["device"].lower().startswith("cpu" if kind == "cpu" else "")
        missing = set(trained_architectures(paper)) - set(section["training_flops_per_s"])
        assert not missing, f"rerun benchmarks/calibrate_costs.py: no {kind} rate for {sorted(missing)}"
        assert all(rate > 0 for rate in section["training_flops_per_s"].values())
