"""The experiment audit: per study and per figure, which runs it needs, which are done, what is left to spend.

`snakemake audit` (rules/audit.smk) calls :func:`write_audit` from the workflow's own run grid, so it costs a
dry run, imports no torch and trains nothing. A run is

- ``done``: checkpoints.h5 and metrics.h5 exist;
- ``trained``: checkpoints.h5 exists, evaluation missing;
- ``interrupted``: a resumable training state exists in the run's ``_work/`` folder;
- ``missing``: nothing yet.

GPU-hours still to spend come from lossatlas.costs (training of every run not yet trained; evaluation is
counted as a third of training, as the SLURM runtime requests do).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from lossatlas.config import Run
from lossatlas.costs import dataset_shape, run_cost
from lossatlas.io import atomic_path

STATUSES = ("done", "trained", "interrupted", "missing")


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
                "dir": run.dir,
            }
        )
    return rows


def _tally(rows: list[dict]) -> dict:
    out = {s: 0 for s in STATUSES}
    for r in rows:
        out[r["status"]] += 1
    out["runs"] = len(rows)
    out["members"] = sum(r["members"] for r in rows)
    out["checkpoints"] = sum(r["checkpoints"] * r["members"] for r in rows)
    out["gpu_hours_left"] = round(sum(r["gpu_hours_left"] for r in rows), 2)
    return out


def render_audit(rows: list[dict], figure_runs: dict[str, list[str]]) -> str:
    """Markdown: totals, per study, per figure."""
    by_dir = {r["dir"]: r for r in rows}
    total = _tally(rows)
    lines = ["# lossatlas audit", ""]
    everything_done = total["runs"] == total["done"]
    lines.append(
        f"{total['runs']} training jobs ({total['members']} networks, {total['checkpoints']} checkpoints): "
        f"{total['done']} done, {total['trained']} trained but not evaluated, "
        f"{total['interrupted']} interrupted (will resume), {total['missing']} missing. "
        f"GPU-hours left (estimate): {total['gpu_hours_left']}."
    )
    lines.append("")
    lines.append("Everything is done." if everything_done else "Work remains.")
    lines += ["", "## Per study", "",
              "| study | runs | done | trained | interrupted | missing | GPU-h left |",
              "|---|---|---|---|---|---|---|"]
    for study in sorted({r["study"] for r in rows}):
        t = _tally([r for r in rows if r["study"] == study])
        lines.append(f"| {study} | {t['runs']} | {t['done']} | {t['trained']} | {t['interrupted']} | "
                     f"{t['missing']} | {t['gpu_hours_left']} |")
    lines += ["", "## Per figure", "", "| figure | runs | done | missing or unfinished | GPU-h left |",
              "|---|---|---|---|---|"]
    for fig in sorted(figure_runs):
        fr = [by_dir[d] for d in figure_runs[fig] if d in by_dir]
        t = _tally(fr)
        left = t["runs"] - t["done"]
        lines.append(f"| {fig} | {t['runs']} | {t['done']} | {left} | {t['gpu_hours_left']} |")
    return "\n".join(lines) + "\n"


def write_audit(config: dict, runs: list[Run], figure_runs: dict[str, list[str]], out_md: str, out_csv: str,
                root: str = ".", unevaluated_studies: frozenset[str] | set[str] = frozenset()) -> str:
    """Write results/audit.md and results/audit.csv; return the markdown (the rule also prints it)."""
    rows = audit_rows(config, runs, Path(root), unevaluated_studies)
    md = render_audit(rows, figure_runs)
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["study"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_csv) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)
    return md
