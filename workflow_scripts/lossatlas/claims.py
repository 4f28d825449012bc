"""Every quantitative claim of the five papers, checked against what the pipeline measured.

The registry is ``workflow_scripts/lossatlas/claims.yaml``: one entry per row of the quantitative-claims
tables of FIGURES.md (§1.5, §2.4, §3.4, §4.4, §5.4) plus qualitative claims stated as measurable comparisons.
Each entry names the paper, where the claim is made, the claim in words, the paper's number or direction, the
figures it bears on, and a ``check`` saying how our value is computed from analysis outputs:

- ``kind: value``   — report one measured value; with ``expect`` it also judges it:
                      ``{op: ">"|">="|"<"|"<="|"==", than: number}`` or ``{approx: number, rel: r, abs: a}``.
- ``kind: compare`` — ``left op right`` for two measured values (e.g. normalised R² > unnormalised R²).
- ``kind: all``     — ``op`` between every value of ``left`` (a list selector) and ``than`` or ``right``.
- ``kind: config``  — a setting of the paper-scale config (``configs/<paper>.yaml`` by default) equals
                      ``expect``; checks that the paper-scale study is configured as the paper states.

Selectors (``value``, ``left``, ``right``): ``{file, key}`` reads a dotted key path from a JSON file;
``{file, column, where}`` reads one column of the CSV rows matching ``where`` (one row → a number, several →
a list); ``{config, file?}`` reads a dotted config path. Result files are relative to the working directory
(``results/analysis/...``); config files to the repository.

A claim whose inputs do not exist for the current config is ``not run`` with the missing file named; none is
dropped. The outcome of each claim is ``holds``, ``does not hold``, ``reported`` (a value without a judgement)
or ``not run``.
"""

from __future__ import annotations

import csv
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REGISTRY = Path(__file__).with_name("claims.yaml")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}
PAPER_CONFIGS = {
    "universality": "configs/universality.yaml",
    "consistency": "configs/consistency.yaml",
    "normalized_loss": "configs/normalized_loss.yaml",
    "loss_patterns": "configs/loss_patterns.yaml",
    "embedding": "configs/embedding.yaml",
}


CSV_COLUMNS = ["id", "paper", "where", "claim", "paper_value", "ours", "scale", "outcome", "reason"]


class MissingInput(Exception):
    """An input of a claim does not exist in this run's outputs."""


@dataclass
class ClaimResult:
    id: str
    paper: str
    where: str
    claim: str
    paper_value: str
    ours: str
    outcome: str
    reason: str
    figures: list[str]


def load_registry(path: Path = REGISTRY) -> list[dict]:
    entries = yaml.safe_load(path.read_text())
    ids = [e["id"] for e in entries]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate claim ids {sorted(dup)}")
    return entries


def _dig(obj: Any, key: str, where: str) -> Any:
    for part in key.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise MissingInput(f"{where} has no '{key}'")
    return obj


def select(selector: dict, root: Path, repo: Path, paper: str) -> Any:
    """The value a selector points at (see the module docstring)."""
    if "config" in selector:
        cfg_file = repo / selector.get("file", PAPER_CONFIGS[paper])
        if not cfg_file.exists():
            raise MissingInput(f"{cfg_file.relative_to(repo)} missing")
        return _dig(yaml.safe_load(cfg_file.read_text()), selector["config"], str(cfg_file.relative_to(repo)))
    path = root / selector["file"]
    if not path.exists():
        raise MissingInput(f"{selector['file']} not produced by this config")
    if path.suffix == ".json":
        value = _dig(json.loads(path.read_text()), selector["key"], selector["file"])
        if _absent(value):
            raise MissingInput(f"{selector['file']}: '{selector['key']}' has no value (null or NaN)")
        return value
    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        where = selector.get("where", {})
        hits = [r for r in rows if all(str(r.get(k)) == str(v) for k, v in where.items())]
        if not hits:
            raise MissingInput(f"{selector['file']} has no row where {where}")
        column = selector["column"]
        if column not in hits[0]:
            raise MissingInput(f"{selector['file']} has no column '{column}'")
        values = [_number(r[column]) for r in hits]
        if any(_absent(v) for v in values):
            raise MissingInput(f"{selector['file']}: no value in '{column}' where {where}")
        return values[0] if len(values) == 1 else values
    raise ValueError(f"claims: cannot read {path.suffix} files ({selector['file']})")


def _absent(value: Any) -> bool:
    """A measured value that is not there: JSON null, an empty CSV cell, NaN (e.g. a statistic of no curves)."""
    if value is None or value == "":
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, list) and any(_absent(v) for v in value)


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if not math.isnan(value) else "nan"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _judge_expect(value: Any, expect: dict) -> tuple[bool, str]:
    if "op" in expect:
        ok = OPS[expect["op"]](value, expect["than"])
        return bool(ok), f"{_fmt(value)} {expect['op']} {_fmt(expect['than'])}"
    target = float(expect["approx"])
    tol = max(float(expect.get("abs", 0.0)), float(expect.get("rel", 0.0)) * abs(target))
    ok = abs(float(value) - target) <= tol
    return ok, f"|{_fmt(value)} − {_fmt(target)}| {'≤' if ok else '>'} {_fmt(tol)}"


def evaluate_claim(entry: dict, root: Path, repo: Path) -> ClaimResult:
    check, paper = entry["check"], entry["paper"]
    base = dict(id=entry["id"], paper=paper, where=entry["where"], claim=entry["claim"],
                paper_value=str(entry["paper_value"]), figures=list(entry.get("figures", [])))
    try:
        kind = check["kind"]
        if kind == "value":
            value = select(check["value"], root, repo, paper)
            if "expect" not in check:
                return ClaimResult(**base, ours=_fmt(value), outcome="reported",
                                   reason=check.get("note", "measured; the paper gives no number to compare"))
            ok, why = _judge_expect(value, check["expect"])
            outcome = "holds" if ok else "does not hold"
            return ClaimResult(**base, ours=_fmt(value), outcome=outcome, reason=why)
        if kind == "compare":
            left = select(check["left"], root, repo, paper)
            right = select(check["right"], root, repo, paper)
            ok = OPS[check["op"]](left, right)
            return ClaimResult(**base, ours=f"{_fmt(left)} vs {_fmt(right)}",
                               outcome="holds" if ok else "does not hold",
                               reason=f"{check.get('left_name', 'left')} {_fmt(left)} {check['op']} "
                                      f"{check.get('right_name', 'right')} {_fmt(right)}: {ok}")
        if kind == "all":
            values = select(check["left"], root, repo, paper)
            values = values if isinstance(values, list) else [values]
            than = select(check["right"], root, repo, paper) if "right" in check else check["than"]
            fails = [v for v in values if not OPS[check["op"]](v, than)]
            passed = len(values) - len(fails)
            return ClaimResult(**base, ours=_fmt(values), outcome="does not hold" if fails else "holds",
                               reason=f"{passed}/{len(values)} values {check['op']} {_fmt(than)}")
        if kind == "config":
            value = select({"config": check["key"], **({"file": check["file"]} if "file" in check else {})},
                           root, repo, paper)
            ok = value == check["expect"]
            cfg = check.get("file", PAPER_CONFIGS[paper])
            return ClaimResult(**base, ours=_fmt(value), outcome="holds" if ok else "does not hold",
                               reason=f"{cfg}: {check['key']} = {_fmt(value)}")
        raise ValueError(f"claim {entry['id']}: unknown check kind '{kind}'")
    except MissingInput as missing:
        return ClaimResult(**base, ours="—", outcome="not run", reason=str(missing))


def evaluate_claims(root: Path, repo: Path, registry: Path = REGISTRY) -> list[ClaimResult]:
    return [evaluate_claim(entry, root, repo) for entry in load_registry(registry)]


def tally(rows: list[ClaimResult]) -> dict[str, int]:
    out = {k: 0 for k in ("holds", "does not hold", "reported", "not run")}
    for r in rows:
        out[r.outcome] += 1
    return out


def render_markdown(rows: list[ClaimResult], scale: str) -> str:
    lines = [
        "# Claims of the five papers, checked against this run",
        "",
        headline(rows, scale),
        "",
        "| paper | where | claim | paper | ours | outcome | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.paper, r.where, r.claim, r.paper_value, r.ours, r.outcome, r.reason]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_rst(rows: list[ClaimResult], scale: str) -> str:
    """The same table as reStructuredText, for the front page of `snakemake --report`."""
    t = tally(rows)

    def cell(text: str) -> str:
        return text.replace("\n", " ").replace("`", "'").replace("*", "\\*").replace("|", "/") or "—"

    lines = [
        f"**Claims** (scale: {scale}): {len(rows)} claims, {t['holds']} hold, {t['does not hold']} do not hold, "
        f"{t['reported']} reported, {t['not run']} not run.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - paper",
        "     - where",
        "     - claim",
        "     - paper",
        "     - ours",
        "     - outcome",
    ]
    for r in rows:
        lines.append(f"   * - {cell(r.paper)}")
        for value in (r.where, r.claim, r.paper_value, r.ours, f"{r.outcome}: {r.reason}"):
            lines.append(f"     - {cell(value)}")
    return "\n".join(lines) + "\n"


def headline(rows: list[ClaimResult], scale: str) -> str:
    t = tally(rows)
    return (f"{len(rows)} claims checked at {scale} scale: {t['holds']} hold, {t['does not hold']} do not hold, "
            f"{t['reported']} reported without a judgement, {t['not run']} not run.")


def write_claims(out_csv: str, out_md: str, out_rst: str, scale: str, root: str = ".", repo: str = ".") -> None:
    """The rule's entry: evaluate the registry; write results/claims.csv, .md and .rst."""
    from lossatlas.io import atomic_path

    rows = evaluate_claims(Path(root), Path(repo))
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([getattr(r, c) if c != "scale" else scale for c in CSV_COLUMNS])
    with atomic_path(out_md) as tmp:
        tmp.write_text(render_markdown(rows, scale))
    with atomic_path(out_rst) as tmp:
        tmp.write_text(render_rst(rows, scale))
