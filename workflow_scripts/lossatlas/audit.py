"""The experiment audit: per study and per figure, which runs it needs, which are done, what is left to spend.

`snakemake audit` (rules/audit.smk) calls :func:`write_audit` from the workflow's own run grid, so it costs a
dry run, imports no torch and trains nothing. A run is

- ``done``: checkpoints.h5 and metrics.h5 exist;
- ``trained``: checkpoints.h5 exists, evaluation missing;
- ``interrupted``: a resumable training state exists in the run's ``_work/`` folder;
- ``missing``: nothing yet.

GPU-hours still to spend come from lossatlas.costs (training of every run not yet trained; evaluation is
counted as a third of training, as the SLURM runtime requests do). The other GPU jobs (learning-rate probes,
pattern searches and BN runs, normalized_loss post-processing, embedding experiments) are counted from the config
too, each ``done`` when its output exists, else ``missing``; every figure is charged all of its study's other GPU
jobs. Each estimate rests on a rate measured by benchmarks/calibrate_costs.py or an assumed one, and says which.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from lossatlas.config import Run
from lossatlas.costs import (
    checkpoint_eval_hours,
    dataset_shape,
    embedding_hours,
    lr_probe_hours,
    mpo_hours,
    run_cost,
)
from lossatlas.io import atomic_path
from lossatlas.loss_patterns_specs import bn_run_spec

STATUSES = ("done", "trained", "interrupted", "missing")
# The GPU jobs beyond train/evaluate: job kind -> (rule, the output whose pattern says where a job's result lands).
# rules/functions/audit.smk reads the patterns from these rules; tests/test_profiles.py checks that these rules,
# train and evaluate are exactly the SLURM profile's GPU rules.
GPU_JOB_RULES = {
    "lr_probe": ("lr_probe", 0),
    "lp_search": ("lp_search", "h5"),
    "lp_bn_run": ("lp_bn_run", 0),
    "normalized_loss_postprocess": ("normalized_loss_postprocess", "points"),
    "embedding": ("embedding_experiment", "arrays"),
}


def run_status(run: Run, root: Path, evaluated: bool = True) -> str:
    """``evaluated=False`` for studies whose analyses read checkpoints.h5 directly (no metrics.h5 needed)."""
    if (root / run.checkpoints).exists() and (not evaluated or (root / run.metrics).exists()):
        return "done"
    if (root / run.checkpoints).exists():
        return "trained"
    if (root / run.dir / "_work").exists():
        return "interrupted"
    return "missing"


def planned_checkpoints(spec: dict, steps_per_epoch: int) -> int:
    """How many checkpoints the recipe's schedule asks for (schemas/recipe.schema.yaml `checkpoints`).

    Counts distinct checkpoint positions: epoch 0, every k-th epoch, the last epoch, the extra points inside
    the first epochs, explicit epochs and log-spaced steps (which may coincide with the others; the count is
    an upper bound then). A run that stops early at a target loss has fewer. ``spec`` has the schema's defaults.
    """
    sched = spec["checkpoints"]
    epochs = int(spec["epochs"]) + int((spec.get("pretrain") or {}).get("epochs", 0))
    every = int(sched["every"])
    points = {float(e) for e in range(0, epochs + 1, every)} | {0.0, float(epochs)}
    within, per = int(sched["within_epochs"]), int(sched["per_epoch"])
    for e in range(min(within, epochs)):
        for j in range(1, per + 1):
            points.add(e + j / (per + 1))
    points |= {float(e) for e in sched.get("epochs", []) or [] if e <= epochs}
    return len(points) + min(int(sched["log_spaced"]), max(steps_per_epoch * epochs, 0))


def audit_rows(config: dict, runs: Iterable[Run], root: Path = Path("."),
               unevaluated_studies: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    rows = []
    for run in runs:
        _, n_train = dataset_shape(config, run.dataset)
        steps = max(1, -(-n_train // int(run.spec["batch_size"])))
        cost = run_cost(config, run.spec)
        evaluated = run.study not in unevaluated_studies
        status = run_status(run, root, evaluated)
        train_left = 0.0 if status in ("done", "trained") else cost.gpu_hours
        eval_left = 0.0 if status == "done" or not evaluated else cost.gpu_hours / 3.0
        rows.append(
            {
                "study": run.study,
                "job": "train+evaluate" if evaluated else "train",
                "recipe": run.recipe,
                "dataset": run.dataset,
                "arch": run.arch,
                "optimizer": run.optimizer,
                "loss": run.loss,
                "seeds": run.block,
                "members": len(run.seeds),
                "checkpoints": planned_checkpoints(run.spec, steps),
                "status": status,
                "gpu_hours_total": round(cost.gpu_hours * (4.0 / 3.0 if evaluated else 1.0), 4),
                "gpu_hours_left": round(train_left + eval_left, 4),
                "rate": cost.rate,
                "dir": run.dir,
            }
        )
    return rows


def other_gpu_jobs(config: dict, runs: Iterable[Run], outputs: dict[str, str], root: Path = Path(".")) -> list[dict]:
    """Rows of the GPU jobs beyond train/evaluate. ``outputs``: job kind -> its rule's output pattern (present
    only where the rule exists, i.e. its study is enabled); a job is done when its output exists."""
    runs = list(runs)
    studies = config.get("studies", {})
    rows: list[dict] = []

    def add(study: str, kind: str, name: str, path: str, estimate: tuple[float, str]) -> None:
        hours, source = estimate
        done = (root / path).exists()
        rows.append({"study": study, "job": kind, "name": name, "status": "done" if done else "missing",
                     "gpu_hours_total": round(hours, 4), "gpu_hours_left": 0.0 if done else round(hours, 4),
                     "rate": source, "dir": path})

    if "lr_probe" in outputs:
        probed = {}
        for r in runs:
            if r.spec["optimizer"].get("lr") == "probe":
                probed.setdefault((r.study, r.recipe, r.dataset, r.arch, r.optimizer, r.loss), r)
        for (study, recipe, dataset, arch, opt, loss), r in probed.items():
            settings = studies.get(study, {}).get("lr_probe") or studies.get("universality", {}).get("lr_probe") or {}
            path = outputs["lr_probe"].format(study=study, recipe=recipe, dataset=dataset, arch=arch, optimizer=opt,
                                              loss=loss)
            add(study, "lr_probe", f"{recipe}/{dataset}/{arch}/{opt}/{loss}", path,
                lr_probe_hours(config, r.spec, len(r.spec["optimizer"].get("lr_candidates", [])),
                               int(settings.get("epochs", 3))))
    lp = studies.get("loss_patterns", {})
    if "lp_search" in outputs:
        for name, search in lp["searches"].items():
            add("loss_patterns", "lp_search", name, outputs["lp_search"].format(search=name),
                mpo_hours(config, search["architecture"], search["dataset"], lp["fit"], search["grid"],
                          lp["eval_examples"]))
    if "lp_bn_run" in outputs:
        bn = lp["bn_experiment"]
        for protocol in bn["protocols"]:
            for variant in ("without_bn", "with_bn"):
                for seed in bn["seeds"]:
                    spec = bn_run_spec(lp, config["architectures"], protocol, variant, seed, "auto")
                    add("loss_patterns", "lp_bn_run", f"{protocol}/{variant}/s{seed}",
                        outputs["lp_bn_run"].format(protocol=protocol, variant=variant, seed=seed),
                        mpo_hours(config, spec["architecture"]["name"], bn["dataset"], spec["fit"], bn["mask_size"],
                                  lp["eval_examples"], fits=len(bn["fill_probabilities"])))
    if "normalized_loss_postprocess" in outputs:
        for name, exp in studies["normalized_loss"].get("experiments", {}).items():
            chosen = [r for r in runs if r.study == "normalized_loss" and r.recipe in exp["recipes"]
                      and r.arch in exp.get("architectures", [r.arch])
                      and r.dataset in exp.get("datasets", [r.dataset])]
            checkpoints = [planned_checkpoints(r.spec, 1) for r in chosen]
            job = "normalized_loss_postprocess"
            add("normalized_loss", job, name, outputs[job].format(experiment=name),
                checkpoint_eval_hours(config, [r.spec for r in chosen], checkpoints))
    if "embedding" in outputs:
        emb = studies["embedding"]
        for name in ("fig01", "fig03a", "fig03b", "fig04", "fig05"):
            if name in emb:
                add("embedding", "embedding", name, outputs["embedding"].format(experiment=name),
                    embedding_hours(name, emb[name]))
    return rows


def _tally(rows: list[dict]) -> dict:
    """Training runs (rows with ``members``) by status; the other GPU jobs; GPU-hours left of all; rate basis."""
    runs = [r for r in rows if "members" in r]
    others = [r for r in rows if "members" not in r]
    out = {s: 0 for s in STATUSES}
    for r in runs:
        out[r["status"]] += 1
    out["runs"] = len(runs)
    out["members"] = sum(r["members"] for r in runs)
    out["checkpoints"] = sum(r["checkpoints"] * r["members"] for r in runs)
    out["other"] = len(others)
    out["other_done"] = sum(r["status"] == "done" for r in others)
    out["gpu_hours_total"] = round(sum(r["gpu_hours_total"] for r in rows), 2)
    out["gpu_hours_left"] = round(sum(r["gpu_hours_left"] for r in rows), 2)
    measured = {r["rate"] != "assumed" for r in rows}
    out["rates"] = "measured" if measured == {True} else "assumed" if measured == {False} else "mixed" if rows else "-"
    return out


def render_audit(rows: list[dict], figure_runs: dict[str, list[str]]) -> str:
    """Markdown: totals, per study, per GPU job kind, per figure (rates: measured, assumed or mixed)."""
    by_dir = {r["dir"]: r for r in rows}
    total = _tally(rows)
    lines = ["# lossatlas audit", ""]
    everything_done = total["runs"] == total["done"] and total["other"] == total["other_done"]
    lines.append(
        f"{total['runs']} training jobs ({total['members']} networks, {total['checkpoints']} checkpoints): "
        f"{total['done']} done, {total['trained']} trained but not evaluated, "
        f"{total['interrupted']} interrupted (will resume), {total['missing']} missing. "
        f"{total['other']} other GPU jobs: {total['other_done']} done. "
        f"GPU-hours left (estimate): {total['gpu_hours_left']} of {total['gpu_hours_total']} "
        f"(rates: {total['rates']})."
    )
    lines.append("")
    lines.append("Everything is done." if everything_done else "Work remains.")
    lines.append("")
    lines.append("Rates: `measured` = training rates timed by benchmarks/calibrate_costs.py on the kind of device "
                 "the jobs run on (lossatlas/cost_rates.yaml); `assumed` = peak FLOP/s x utilisation "
                 "(`cost_model` in the config); `mixed` = some of each.")
    lines += ["", "## Per study", "",
              "| study | runs | done | trained | interrupted | missing | other GPU jobs | other done | GPU-h left "
              "| rates |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for study in sorted({r["study"] for r in rows}):
        t = _tally([r for r in rows if r["study"] == study])
        lines.append(f"| {study} | {t['runs']} | {t['done']} | {t['trained']} | {t['interrupted']} | "
                     f"{t['missing']} | {t['other']} | {t['other_done']} | {t['gpu_hours_left']} | {t['rates']} |")
    lines += ["", "## Per GPU job kind", "", "| job | jobs | done | GPU-h total | GPU-h left | rates |",
              "|---|---|---|---|---|---|"]
    for kind in sorted({r["job"] for r in rows}):
        kr = [r for r in rows if r["job"] == kind]
        t = _tally(kr)
        done = sum(r["status"] == "done" for r in kr)
        lines.append(f"| {kind} | {len(kr)} | {done} | {t['gpu_hours_total']} | {t['gpu_hours_left']} | "
                     f"{t['rates']} |")
    lines += ["", "## Per figure", "",
              "Each figure is charged its training runs and all other GPU jobs of its study.", "",
              "| figure | runs | done | missing or unfinished | other GPU jobs | GPU-h left | rates |",
              "|---|---|---|---|---|---|---|"]
    for fig in sorted(figure_runs):
        paper = fig.split("/")[2] if fig.count("/") >= 2 else ""
        fr = [by_dir[d] for d in figure_runs[fig] if d in by_dir]
        fr += [r for r in rows if "members" not in r and r["study"] == paper]
        t = _tally(fr)
        left = t["runs"] - t["done"]
        lines.append(f"| {fig} | {t['runs']} | {t['done']} | {left} | {t['other']} | {t['gpu_hours_left']} | "
                     f"{t['rates']} |")
    return "\n".join(lines) + "\n"


def write_audit(config: dict, runs: list[Run], figure_runs: dict[str, list[str]], out_md: str, out_csv: str,
                root: str = ".", unevaluated_studies: frozenset[str] | set[str] = frozenset(),
                gpu_job_outputs: dict[str, str] | None = None) -> str:
    """Write results/audit.md and results/audit.csv; return the markdown (the rule also prints it)."""
    rows = audit_rows(config, runs, Path(root), unevaluated_studies)
    rows += other_gpu_jobs(config, runs, gpu_job_outputs or {}, Path(root))
    md = render_audit(rows, figure_runs)
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["study"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_csv) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)
    return md
