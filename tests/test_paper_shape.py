"""Every paper has one shape: experiments -> one `<paper>_analysis` rule -> one wildcard `<paper>_figure` rule whose
entry script calls `lossatlas.figures.<paper>.draw(name, inputs, output)`; the figure names the rules know at parse
time (without importing the figure module: the Snakefile stays free of numpy/matplotlib) are its FIGURES."""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from lossatlas.config import REPO_ROOT

# (paper, the rules file's parse-time figure list: a dict or list literal keyed by figure file stem)
PAPERS = [
    ("universality", "UNI_FIGURES"),
    ("normalized_loss", "NL_FIGURES"),
    ("embedding", "EMB_FIGURES"),
    ("consistency", "CONS_FIGURES"),
    ("loss_patterns", "LP_FIGURES"),
]


def _rules_text(paper: str) -> str:
    return (REPO_ROOT / "rules" / f"{paper}.smk").read_text()


def _literal(text: str, name: str):
    """The literal assigned to ``name`` in a rules file (from its `name = {` / `name = [` line to the closing
    bracket alone on a line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name} = "))
    end = next(i for i in range(start, len(lines)) if lines[i].strip() in ("}", "]"))
    source = "\n".join(line.strip() for line in lines[start:end + 1]).split("=", 1)[1]
    return ast.literal_eval(source.strip())


@pytest.mark.parametrize(("paper", "figure_list"), PAPERS)
def test_one_analysis_rule_and_one_figure_rule(paper, figure_list):
    rules = re.findall(r"^\s*rule (\w+):", _rules_text(paper), flags=re.M)
    assert rules.count(f"{paper}_analysis") == 1
    assert rules.count(f"{paper}_figure") == 1
    assert [r for r in rules if "figure" in r or r.startswith(f"{paper}_fig")] == [f"{paper}_figure"]


@pytest.mark.parametrize(("paper", "figure_list"), PAPERS)
def test_figure_module_has_figures_and_draw(paper, figure_list):
    module = importlib.import_module(f"lossatlas.figures.{paper}")
    assert callable(module.draw)
    assert all(callable(fn) and fn.__name__ == name for name, fn in module.FIGURES.items())
    with pytest.raises(ValueError, match="no figure named"):
        module.draw("fig99_nothing", {}, "unused.png")


@pytest.mark.parametrize(("paper", "figure_list"), PAPERS)
def test_parse_time_figure_list_is_the_figure_module(paper, figure_list):
    module = importlib.import_module(f"lossatlas.figures.{paper}")
    assert list(_literal(_rules_text(paper), figure_list)) == list(module.FIGURES)


@pytest.mark.parametrize(("paper", "figure_list"), PAPERS)
def test_entry_script_draws_by_the_wildcard(paper, figure_list):
    script = (REPO_ROOT / "workflow_scripts" / f"{paper}_figure.py").read_text()
    assert f"from lossatlas.figures.{paper} import draw" in script
    assert "draw(snakemake.wildcards.figure, snakemake.input, snakemake.output[0])" in script
    assert "sys.path" not in script
