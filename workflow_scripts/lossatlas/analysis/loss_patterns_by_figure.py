"""The loss_patterns search summaries keyed by paper figure (issue 10: claims that work at every scale).

Search names differ between configs (``studies.loss_patterns.searches``); the figures they feed do not
(``studies.loss_patterns.figures``: fig01a, fig01b, fig02 name one search, fig05 and fig06 a list). This writes
``searches_by_figure.json`` so a claim can say "the Fig 1a search" instead of a config-specific name.

Kept apart from lossatlas/analysis/loss_patterns.py because the search and BN rules hash that whole module:
a table written from finished searches should not invalidate them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lossatlas.io import write_json

# What each entry keeps from a search summary (lossatlas.analysis.loss_patterns.search_summary / run_search).
KEPT = ("search", "picture", "dataset", "architecture", "grid", "final_scale", "train_test_log_ce_pearson",
        "train", "test")


def _entry(summary: dict) -> dict[str, Any]:
    missing = [k for k in ("test", "train_test_log_ce_pearson", "final_scale") if k not in summary]
    if missing:
        raise ValueError(f"search summary of '{summary.get('search')}' lacks {missing}")
    return {k: summary[k] for k in KEPT if k in summary}


def searches_by_figure(figures: dict[str, str | list[str]], summary_paths: dict[str, str | Path],
                       out_json: str | Path) -> dict:
    """``figures``: figure key -> search name or list of names (the study's ``figures:``); ``summary_paths``:
    search name -> its summary JSON. One search: the figure's entry is that search's numbers. Several: the
    entry has ``searches`` (in config order) and the smallest test accuracy gap and train/test log-CE Pearson r
    over them (``test_acc_gap_min``, ``train_test_log_ce_pearson_min``: "any pattern" / "every search")."""
    summaries: dict[str, dict] = {}
    for name in {n for v in figures.values() for n in ([v] if isinstance(v, str) else v)}:
        if name not in summary_paths:
            raise ValueError(f"studies.loss_patterns.figures names search '{name}' with no summary file")
        summaries[name] = json.loads(Path(summary_paths[name]).read_text())
    out: dict[str, Any] = {}
    for figure, names in sorted(figures.items()):
        if isinstance(names, str):
            out[figure] = _entry(summaries[names])
            continue
        entries = [_entry(summaries[n]) for n in names]
        out[figure] = {"searches": entries,
                       "test_acc_gap_min": min(e["test"]["acc_gap"] for e in entries),
                       "train_test_log_ce_pearson_min": min(e["train_test_log_ce_pearson"] for e in entries)}
    write_json(out_json, out)
    return out
