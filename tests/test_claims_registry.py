"""The claims registry (lossatlas/claims.yaml, issue 10): complete against FIGURES.md, well-formed, evaluable."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lossatlas.claims import OUTCOMES, PAPER_CONFIGS, REGISTRY, evaluate_claims, load_registry, tally

REPO = Path(__file__).resolve().parents[1]
PAPERS = ("universality", "consistency", "normalized_loss", "loss_patterns", "embedding")
# FIGURES.md section of each paper's quantitative-claims table and the key its rows start with.
CLAIM_TABLES = {"universality": ("1.5", "UNI"), "consistency": ("2.4", "HW"), "normalized_loss": ("3.4", "LIAO"),
                "loss_patterns": ("4.4", "MPO"), "embedding": ("5.4", "EMB")}
FIGURES_MD = [REPO / "shared" / "FIGURES.md", REPO.parent / "shared" / "FIGURES.md"]
CHECK_FIELDS = {"id", "paper", "where", "claim", "paper_value", "figures", "check"}


def claim_table_rows(text: str) -> dict[str, int]:
    """Rows of each paper's quantitative-claims table: lines `| KEY | ...` inside section `## N.M`."""
    counts = {}
    for paper, (section, key) in CLAIM_TABLES.items():
        match = re.search(rf"^## {re.escape(section)} .*?$(.*?)(?=^#)", text, re.M | re.S)
        assert match, f"FIGURES.md has no section {section}"
        counts[paper] = sum(1 for line in match.group(1).splitlines() if line.startswith(f"| {key} |"))
    return counts


def selectors(check: dict) -> list[dict]:
    return [check[k] for k in ("value", "left", "right", "x", "y") if isinstance(check.get(k), dict)] + \
        [v for v in check.get("values", []) if isinstance(v, dict)]


@pytest.fixture(scope="module")
def registry() -> list[dict]:
    return load_registry()


def test_claim_table_parser_counts_rows():
    text = "## 1.5 Quantitative claims (UNI)\n\n| paper | x |\n|---|---|\n| UNI | a |\n| UNI | b |\n\n## 1.6 next\n"
    text += "".join(f"## {s} t\n| {k} | a |\n#\n" for s, k in list(CLAIM_TABLES.values())[1:])
    assert claim_table_rows(text) == {"universality": 2, "consistency": 1, "normalized_loss": 1,
                                      "loss_patterns": 1, "embedding": 1}


def test_registry_loads_with_unique_ids_and_every_field(registry):
    ids = [e["id"] for e in registry]
    assert len(ids) == len(set(ids))
    for entry in registry:
        assert CHECK_FIELDS <= set(entry), f"{entry['id']}: missing {CHECK_FIELDS - set(entry)}"
        assert entry["paper"] in PAPERS, entry["id"]
        assert isinstance(entry["figures"], list), entry["id"]
        assert all(re.fullmatch(r"(fig|table)\d\d[a-z]*|robustness", f) for f in entry["figures"]), entry["id"]
        assert entry["check"]["kind"] in {"value", "compare", "all", "config", "correlation", "order"}, entry["id"]
        assert entry["kind"] in {"setting", "finding"}, entry["id"]
        # A setting is checked against the paper-scale config; a finding says whose scale its number belongs to.
        assert (entry["kind"] == "setting") == ("scale" not in entry), entry["id"]
        assert entry.get("scale", "any") in {"paper", "medium", "any"}, entry["id"]
        if entry["check"]["kind"] == "config":
            assert entry["kind"] == "setting", entry["id"]


def test_every_paper_has_at_least_its_table_rows(registry):
    path = next((p for p in FIGURES_MD if p.exists()), None)
    if path is None:
        pytest.skip("FIGURES.md not found beside the checkout")
    rows = claim_table_rows(path.read_text())
    assert all(n > 0 for n in rows.values()), rows
    per_paper = Counter(e["paper"] for e in registry)
    for paper in PAPERS:
        assert per_paper[paper] >= rows[paper], f"{paper}: {per_paper[paper]} claims < {rows[paper]} table rows"


def test_selectors_point_at_analysis_outputs_or_configs(registry):
    for entry in registry:
        check = entry["check"]
        required = selectors(check.get("requires", {}))
        for sel in selectors(check) + required + ([{"file": check["file"]}] if "file" in check else []):
            if "file" in sel:
                assert sel["file"].startswith(("results/analysis/", "configs/")), (entry["id"], sel["file"])
            else:
                assert "config" in sel, (entry["id"], sel)
            if sel.get("file", "").endswith(".csv"):
                assert "column" in sel, entry["id"]
            elif sel.get("file", "").endswith(".npz"):
                assert "array" in sel, entry["id"]
            elif sel.get("file", "").endswith(".h5"):
                assert "dataset" in sel, entry["id"]
            elif "file" in sel and sel["file"].startswith("results/"):
                assert "key" in sel, entry["id"]


def test_figures_name_figures_the_paper_draws(registry):
    """Each `figures:` entry is the file-name prefix of a figure of that paper (report captions match on it), so it
    starts with the name of one of the paper's figure functions (lossatlas/figures/<paper>.py)."""
    for paper in PAPERS:
        source = (REPO / "workflow_scripts" / "lossatlas" / "figures" / f"{paper}.py").read_text()
        drawn = set(re.findall(r"^def ((?:fig|table)\d\d[a-z]*|robustness)", source, re.M))
        for entry in (e for e in registry if e["paper"] == paper):
            for fig in entry["figures"]:
                assert any(fig.startswith(d) for d in drawn), f"{entry['id']}: no {paper} figure '{fig}'"


def _dig(obj, key: str):
    for part in key.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def test_config_checks_name_existing_keys(registry):
    configs = {}
    for entry in registry:
        check = entry["check"]
        if check["kind"] != "config":
            continue
        path = check.get("file", PAPER_CONFIGS[entry["paper"]])
        cfg = configs.setdefault(path, yaml.safe_load((REPO / path).read_text()))
        try:
            _dig(cfg, check["key"])
        except (KeyError, IndexError, TypeError) as missing:
            pytest.fail(f"{entry['id']}: {path} has no {check['key']} ({missing!r})")


def test_evaluates_over_the_registry_without_raising(tmp_path):
    # An empty results tree: every result-based claim is "not run" with its reason, config claims are judged.
    rows = evaluate_claims(tmp_path, REPO, REGISTRY)
    assert len(rows) == len(load_registry())
    counts = tally(rows)
    assert counts["finding"]["not run"] > 0 and counts["setting"]["holds"] > 0
    for r in rows:
        assert r.reason, r.id
        if r.outcome == "not run":
            assert "results/analysis/" in r.reason or "configs/" in r.reason, (r.id, r.reason)


def test_evaluates_over_this_checkouts_results():
    rows = evaluate_claims(REPO, REPO, REGISTRY)
    assert {r.outcome for r in rows} <= set(OUTCOMES)
    if all((REPO / "results" / "analysis" / paper).is_dir() for paper in PAPERS):
        # After a full run every any-scale finding and setting finds its inputs: a "not run" among them means a
        # claim points at an analysis output that was renamed or never written.
        missing = [(r.id, r.reason) for r in rows if r.outcome == "not run" and r.claim_scale != "paper"]
        assert not missing, missing


def judged(entry: dict) -> bool:
    """A check that gives a verdict (a value without ``expect`` is only reported)."""
    return entry["check"]["kind"] != "value" or "expect" in entry["check"]


def test_enough_findings_are_judged_at_default_scale(registry):
    """Settings are no reproductions and paper-scale numbers wait for paper scale: at least 100 findings are
    judged at any scale (correlations among them are reported when underpowered)."""
    judged_any = [e for e in registry if e["kind"] == "finding" and e["scale"] == "any" and judged(e)]
    assert len(judged_any) >= 100, len(judged_any)


def test_every_judged_finding_says_why_it_fails(registry):
    for entry in registry:
        if entry["kind"] == "finding" and judged(entry):
            assert entry.get("why", "").strip(), entry["id"]
            entry["why"].format(ours="x", reason="y")  # only the placeholders the evaluator fills
