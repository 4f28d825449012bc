"""Every quantitative claim of the five papers, checked against what the pipeline measured.

The registry is ``workflow_scripts/lossatlas/claims.yaml``: one entry per row of the quantitative-claims
tables of FIGURES.md (§1.5, §2.4, §3.4, §4.4, §5.4) plus qualitative claims stated as measurable comparisons.
Each entry names the paper, where the claim is made, the claim in words, the paper's number or direction, the
figures it bears on, and a ``check`` saying how our value is computed from analysis outputs:

- ``kind: value``   — report one measured value; with ``expect`` it also judges it:
                      ``{op: ">"|">="|"<"|"<="|"==", than: number}`` or ``{approx: number, rel: r, abs: a}``.
- ``kind: compare`` — ``left op right`` for two measured values (e.g. normalised R² > unnormalised R²); ``op: "≈"``
                      means ``|left − right| ≤ tol``.
- ``kind: all``     — ``op`` between every value of ``left`` (a list selector) and ``than`` or ``right`` (a number,
                      or a list compared element by element); with ``majority: true`` more than half suffice.
- ``kind: config``  — a setting of the paper-scale config (``configs/<paper>.yaml`` by default) equals
                      ``expect``; checks that the paper-scale study is configured as the paper states.
- ``kind: order``   — ``values`` (selectors or numbers, named by ``names``) are strictly increasing, e.g.
                      black-cell CE < the objective's clamp < white-cell CE.
- ``kind: correlation`` — the sign of Pearson r or Spearman ρ between two equally long lists ``x`` and ``y``,
                      with a one-sided permutation test (``permutations``, default 10,000, fixed seed): the
                      claim holds when the claimed sign is significant at ``alpha`` (default 0.05), does not hold
                      when the opposite sign is, and is ``reported`` (underpowered) otherwise.

Any check may carry ``requires``: a second check that must hold for the first to hold (a phase's duration
presupposes the phase).

Every entry also says what it is (FIGURES.md, "Conventions"): ``kind: setting`` (the paper's configuration,
checked against our paper-scale config; never counted as a reproduction) or ``kind: finding`` (a measured
result) with ``scale: paper`` (its number belongs to the paper's dataset or model; below paper scale it is
``paper scale only`` with our value printed beside the paper's), ``scale: medium`` (the phenomenon needs more
training than the default study's minutes, e.g. longer runs or larger ensembles; judged at medium and paper scale,
``medium scale only`` in the default study) or ``scale: any``. An optional ``why`` is the
one-line explanation shown when a finding does not hold; ``{ours}`` and ``{reason}`` in it are filled from the
run, so it stays true when the numbers move.

Selectors (``value``, ``left``, ``right``, ``x``, ``y``, ``values``):
``{file, key}`` reads a dotted key path from a JSON file (``*`` takes every element of a list);
``{file, column, where}`` reads one column of the CSV rows matching ``where`` (one row → a number, several → a
list); ``{config, file?}`` reads a dotted config path; ``{file, array}`` reads an array of a ``.npz`` file, and
``{file, array, count: zero|negative}`` counts its zero or significant negative eigenvalues by the gap rule of
``spectrum_counts``; ``{file, dataset, row?, stat?}`` reads an HDF5 dataset (see ``_h5``). Any list selector may
add ``reduce: mean|min|max|count|first|last``. Result files are relative to the working directory
(``results/analysis/...``); config files to the repository.

A claim whose inputs do not exist for the current config is ``not run`` with the missing file named; none is
dropped. The outcome of each claim is ``holds``, ``does not hold``, ``paper scale only``, ``medium scale only``,
``reported`` (a value without a judgement) or ``not run``.
"""

from __future__ import annotations

import csv
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossatlas.io import read_yaml

REGISTRY = Path(__file__).with_name("claims.yaml")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq}
PAPER_CONFIGS = {
    "universality": "configs/universality.yaml",
    "consistency": "configs/consistency.yaml",
    "normalized_loss": "configs/normalized_loss.yaml",
    "loss_patterns": "configs/loss_patterns.yaml",
    "embedding": "configs/embedding.yaml",
}


CSV_COLUMNS = ["id", "paper", "where", "claim", "paper_value", "ours", "scale", "kind", "claim_scale", "outcome",
               "reason", "why"]
OUTCOMES = ("holds", "does not hold", "paper scale only", "medium scale only", "reported", "not run")
# A finding of claim scale S is judged in a run of scale R when RANK[R] >= RANK[S].
SCALE_RANK = {"any": 0, "default": 0, "medium": 1, "paper": 2}


def scale_name(scale: str) -> str:
    """``default``, ``medium`` or ``paper`` from a run's scale as the claims job gets it (``medium (<config>)``)."""
    return scale.split(" ")[0]
# Zero eigenvalues sit below the widest gap of log10|λ| when that gap spans at least this many decades: round-off
# zeros of a float64 Hessian (~1e-16) lie many decades under the smallest curvature a small net has, while a
# fixed threshold relative to the largest eigenvalue both swallows small real curvatures and keeps 1e-10 values.
ZERO_GAP_DECADES = 4.0
ZERO_CEILING = 1.5e-8  # √(float64 ε), relative to the largest |λ|


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
    kind: str = "finding"
    claim_scale: str = "any"
    why: str = ""


def load_registry(path: Path = REGISTRY) -> list[dict]:
    entries = read_yaml(path)
    ids = [e["id"] for e in entries]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate claim ids {sorted(dup)}")
    return entries


def _dig(obj: Any, key: str, where: str) -> Any:
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part == "*" and isinstance(obj, list):  # every element, e.g. one number per search of a figure
            return [_dig(o, ".".join(parts[i + 1:]), where) for o in obj]
        if isinstance(obj, list):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise MissingInput(f"{where} has no '{key}'")
    return obj


def spectrum_counts(eigenvalues: Any) -> dict[str, int]:
    """Zero and significant negative eigenvalues of a Hessian spectrum, by the widest gap of log10|λ|.

    The eigenvalues below the widest gap between neighbours of sorted log10|λ| are zero when that gap spans at
    least ``ZERO_GAP_DECADES`` and they lie below ``ZERO_CEILING`` × max|λ|; otherwise none is. A negative
    eigenvalue is significant when it is not zero.
    """
    import numpy as np

    lam = np.asarray(eigenvalues, dtype=float)
    mags = np.sort(np.abs(lam))
    logs = np.log10(np.maximum(mags, 1e-300))
    n_zero = 0
    if len(logs) > 1:
        gaps = np.diff(logs)
        widest = int(np.argmax(gaps))
        # A wide gap between real curvatures (e.g. 1e-4 and 10) is no zero cluster: zeros lie below √ε·max|λ|.
        if gaps[widest] >= ZERO_GAP_DECADES and mags[widest] <= ZERO_CEILING * mags[-1]:
            n_zero = widest + 1
    zero_ceiling = mags[n_zero - 1] if n_zero else -1.0
    return {"zero": n_zero, "negative": int(np.sum((lam < 0) & (np.abs(lam) > zero_ceiling)))}


REDUCE = {"mean": lambda v: sum(v) / len(v), "min": min, "max": max, "count": len, "first": lambda v: v[0],
          "last": lambda v: v[-1]}


def select(selector: dict, root: Path, repo: Path, paper: str) -> Any:
    """The value a selector points at (see the module docstring)."""
    if "reduce" in selector:
        values = select({k: v for k, v in selector.items() if k != "reduce"}, root, repo, paper)
        return float(REDUCE[selector["reduce"]](values if isinstance(values, list) else [values]))
    if "config" in selector:
        cfg_file = repo / selector.get("file", PAPER_CONFIGS[paper])
        if not cfg_file.exists():
            raise MissingInput(f"{cfg_file.relative_to(repo)} missing")
        return _dig(read_yaml(cfg_file), selector["config"], str(cfg_file.relative_to(repo)))
    path = root / selector["file"]
    if not path.exists():
        raise MissingInput(f"{selector['file']} not produced by this config")
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path) as arrays:
            if selector["array"] not in arrays.files:
                raise MissingInput(f"{selector['file']} has no array '{selector['array']}'")
            values = arrays[selector["array"]].astype(float)
        if "count" in selector:
            return spectrum_counts(values)[selector["count"]]
        return [float(v) for v in values]
    if path.suffix == ".h5":
        return _h5(path, selector)
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


def _h5(path: Path, selector: dict) -> Any:
    """A dataset of an HDF5 file as a flat list; ``row`` (an index, or ``middle``) picks one row of a 2-D dataset and
    ``stat: mode`` returns the most common value rounded to one decimal (a histogram's peak in bins of 0.1)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        if selector["dataset"] not in f:
            raise MissingInput(f"{selector['file']} has no dataset '{selector['dataset']}'")
        values = np.asarray(f[selector["dataset"]][...], dtype=float)
    if "row" in selector:
        values = values[len(values) // 2 if selector["row"] == "middle" else int(selector["row"])]
    if selector.get("stat") == "mode":
        rounded, counts = np.unique(np.round(values[np.isfinite(values)], 1), return_counts=True)
        return float(rounded[np.argmax(counts)])
    return [float(v) for v in np.ravel(values)]


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


def correlation_test(x: list[float], y: list[float], method: str, sign: str, permutations: int = 10000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(statistic, one-sided p for the claimed sign, one-sided p for the opposite sign) by permuting ``y``.

    Spearman ρ is Pearson r of the ranks (ties averaged); the p-values count the statistic itself among the
    permutations, so they are never 0.
    """
    import numpy as np
    from scipy import stats

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) != len(ys) or len(xs) < 3:
        raise ValueError(f"correlation needs two equally long lists of ≥ 3 values, got {len(xs)} and {len(ys)}")
    if method == "spearman":
        xs, ys = stats.rankdata(xs), stats.rankdata(ys)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method '{method}'")
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan, 1.0, 1.0
    stat = float(np.corrcoef(xs, ys)[0, 1])
    rng = np.random.default_rng(seed)
    null = np.array([np.corrcoef(xs, rng.permutation(ys))[0, 1] for _ in range(permutations)])
    above = (1 + np.sum(null >= stat - 1e-12)) / (permutations + 1)
    below = (1 + np.sum(null <= stat + 1e-12)) / (permutations + 1)
    return (stat, float(above), float(below)) if sign == "positive" else (stat, float(below), float(above))


def _judge(check: dict, root: Path, repo: Path, paper: str) -> tuple[str, str, str]:
    """(ours, outcome, reason) of one check, before the claim's kind and scale are applied."""
    kind = check["kind"]
    if kind == "value":
        value = select(check["value"], root, repo, paper)
        if "expect" not in check:
            return _fmt(value), "reported", check.get("note", "measured; the paper gives no number to compare")
        ok, why = _judge_expect(value, check["expect"])
        return _fmt(value), "holds" if ok else "does not hold", why
    if kind == "compare":
        left = select(check["left"], root, repo, paper)
        right = select(check["right"], root, repo, paper)
        # "≈": equal within the paper's precision ``tol``.
        ok = abs(left - right) <= check["tol"] if check["op"] == "≈" else OPS[check["op"]](left, right)
        return (f"{_fmt(left)} vs {_fmt(right)}", "holds" if ok else "does not hold",
                f"{check.get('left_name', 'left')} {_fmt(left)} {check['op']} "
                f"{check.get('right_name', 'right')} {_fmt(right)}: {ok}")
    if kind == "all":
        values = select(check["left"], root, repo, paper)
        values = values if isinstance(values, list) else [values]
        than = select(check["right"], root, repo, paper) if "right" in check else check["than"]
        # A list on the right is compared element by element (e.g. per panel).
        pairs = list(zip(values, than, strict=True)) if isinstance(than, list) else [(v, than) for v in values]
        passed = sum(bool(OPS[check["op"]](v, t)) for v, t in pairs)
        # "in most of the cases": more than half; otherwise every value.
        ok = passed > len(pairs) / 2 if check.get("majority") else passed == len(pairs)
        need = "more than half" if check.get("majority") else "all"
        return (_fmt(values), "holds" if ok else "does not hold",
                f"{passed}/{len(pairs)} values {check['op']} {_fmt(than)} (needs {need})")
    if kind == "config":
        value = select({"config": check["key"], **({"file": check["file"]} if "file" in check else {})},
                       root, repo, paper)
        ok = value == check["expect"]
        cfg = check.get("file", PAPER_CONFIGS[paper])
        return _fmt(value), "holds" if ok else "does not hold", f"{cfg}: {check['key']} = {_fmt(value)}"
    if kind == "order":
        values = [select(v, root, repo, paper) if isinstance(v, dict) else v for v in check["values"]]
        ok = all(a < b for a, b in zip(values, values[1:], strict=False))
        names = check.get("names", [f"v{i}" for i in range(len(values))])
        chain = " < ".join(f"{n} {_fmt(v)}" for n, v in zip(names, values, strict=True))
        return " < ".join(_fmt(v) for v in values), "holds" if ok else "does not hold", f"{chain}: {ok}"
    if kind == "correlation":
        x = select(check["x"], root, repo, paper)
        y = select(check["y"], root, repo, paper)
        x, y = (x if isinstance(x, list) else [x]), (y if isinstance(y, list) else [y])
        n_perm, alpha = int(check.get("permutations", 10000)), float(check.get("alpha", 0.05))
        if len(x) == len(y) and len(x) < 3:  # a tiny study: no correlation to judge, not a broken input
            return "n/a", "reported", f"n = {len(x)} points: too few for a correlation"
        stat, p_claim, p_opposite = correlation_test(x, y, check["method"], check["sign"], n_perm)
        name = "ρ" if check["method"] == "spearman" else "r"
        test = f"{name} = {_fmt(stat)}, n = {len(x)}, one-sided permutation p = {p_claim:.3g} ({n_perm} permutations)"
        if p_claim <= alpha:
            return _fmt(stat), "holds", f"{check['sign']} and significant: {test}"
        if p_opposite <= alpha:
            opposite = "negative" if check["sign"] == "positive" else "positive"
            return _fmt(stat), "does not hold", f"significantly {opposite}: {test}"
        return _fmt(stat), "reported", f"underpowered, not significant at {alpha}: {test}"
    raise ValueError(f"unknown check kind '{kind}'")


def evaluate_claim(entry: dict, root: Path, repo: Path, scale: str = "default") -> ClaimResult:
    """One claim's result. ``scale`` is the run's (the config's ``scale`` key, ``default``, ``medium`` or
    ``paper``, then the config file named on the command line): below its own scale a finding is
    ``paper scale only`` or ``medium scale only``, our value beside the paper's."""
    kind, claim_scale = entry["kind"], entry.get("scale", "any") if entry["kind"] == "finding" else "paper"
    base = dict(id=entry["id"], paper=entry["paper"], where=entry["where"], claim=entry["claim"],
                paper_value=str(entry["paper_value"]), figures=list(entry.get("figures", [])), kind=kind,
                claim_scale=claim_scale)
    try:
        ours, outcome, reason = _judge(entry["check"], root, repo, entry["paper"])
        if "requires" in entry["check"] and outcome == "holds":
            # A claim about a phenomenon (e.g. how long a phase lasts) cannot hold where the phenomenon is absent.
            _, met, why_not = _judge(entry["check"]["requires"], root, repo, entry["paper"])
            if met != "holds":
                outcome, reason = "does not hold", f"{reason}, but its precondition fails: {why_not}"
    except MissingInput as missing:
        return ClaimResult(**base, ours="—", outcome="not run", reason=str(missing))
    except ValueError as bad:
        raise ValueError(f"claim {entry['id']}: {bad}") from bad
    if kind == "finding" and SCALE_RANK[scale_name(scale)] < SCALE_RANK[claim_scale] \
            and outcome in ("holds", "does not hold"):
        what = "a number of the paper's dataset or model" if claim_scale == "paper" else \
            "a phenomenon that needs more training than this study's"
        reason = f"ours {ours} beside the paper's {entry['paper_value']}: {what}, judged only at {claim_scale} " \
                 f"scale (here: {reason})"
        outcome = f"{claim_scale} scale only"
    why = entry.get("why", "").format(ours=ours, reason=reason) if outcome == "does not hold" else ""
    return ClaimResult(**base, ours=ours, outcome=outcome, reason=reason, why=why)


def evaluate_claims(root: Path, repo: Path, registry: Path = REGISTRY, scale: str = "default") -> list[ClaimResult]:
    return [evaluate_claim(entry, root, repo, scale) for entry in load_registry(registry)]


def tally(rows: list[ClaimResult]) -> dict[str, dict[str, int]]:
    """Outcome counts of the findings and of the settings, kept apart (a setting is no reproduction)."""
    out = {kind: {k: 0 for k in OUTCOMES} for kind in ("finding", "setting")}
    for r in rows:
        out[r.kind][r.outcome] += 1
    return out


def headline(rows: list[ClaimResult], scale: str) -> str:
    f, s = (tally(rows)[k] for k in ("finding", "setting"))
    judged = f["holds"] + f["does not hold"]
    extra = f", {f['not run']} not run" if f["not run"] else ""
    settings = f"settings: {s['holds']} of {s['holds'] + s['does not hold']} match the papers"
    aside = [f"{s[k]} {k}" for k in ("reported", "not run") if s[k]]
    if aside:
        settings += f" ({', '.join(aside)})"
    medium = f"{f['medium scale only']} medium scale only, " if f["medium scale only"] else ""
    return (f"findings judged at {scale_name(scale)} scale: {f['holds']} of {judged} hold "
            f"({medium}{f['paper scale only']} paper scale only, {f['reported']} reported{extra}); {settings}.")


def _sections(rows: list[ClaimResult]) -> list[tuple[str, list[ClaimResult]]]:
    return [("Findings", [r for r in rows if r.kind == "finding"]),
            ("Settings (the papers' configurations, checked against configs/; not reproductions)",
             [r for r in rows if r.kind == "setting"])]


def render_markdown(rows: list[ClaimResult], scale: str) -> str:
    lines = ["# Claims of the five papers, checked against this run", "", headline(rows, scale)]
    for title, part in _sections(rows):
        lines += ["", f"## {title}", "", "| paper | where | claim | scale | paper | ours | outcome | reason |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in part:
            outcome = f"{r.outcome}: {r.why}" if r.why else r.outcome
            cells = [r.paper, r.where, r.claim, r.claim_scale, r.paper_value, r.ours, outcome, r.reason]
            lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_rst(rows: list[ClaimResult], scale: str) -> str:
    """The same tables as reStructuredText, for the front page of `snakemake --report`."""

    def cell(text: str) -> str:
        return text.replace("\n", " ").replace("`", "'").replace("*", "\\*").replace("|", "/") or "—"

    lines = [f"**Claims** ({len(rows)}): {cell(headline(rows, scale))}"]
    for title, part in _sections(rows):
        lines += ["", f"**{cell(title)}**", "", ".. list-table::", "   :header-rows: 1", ""]
        lines += [f"   {'*' if i == 0 else ' '} - {h}" for i, h in
                  enumerate(("paper", "where", "claim", "scale", "paper", "ours", "outcome"))]
        for r in part:
            outcome = f"{r.outcome}: {r.why or r.reason}"
            lines.append(f"   * - {cell(r.paper)}")
            for value in (r.where, r.claim, r.claim_scale, r.paper_value, r.ours, outcome):
                lines.append(f"     - {cell(value)}")
    return "\n".join(lines) + "\n"


def write_claims(out_csv: str, out_md: str, out_rst: str, scale: str, root: str = ".", repo: str = ".") -> None:
    """The rule's entry: evaluate the registry; write results/claims.csv, .md and .rst."""
    from lossatlas.io import atomic_path

    rows = evaluate_claims(Path(root), Path(repo), scale=scale)
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([getattr(r, c) if c != "scale" else scale for c in CSV_COLUMNS])
    with atomic_path(out_md) as tmp:
        tmp.write_text(render_markdown(rows, scale))
    with atomic_path(out_rst) as tmp:
        tmp.write_text(render_rst(rows, scale))
