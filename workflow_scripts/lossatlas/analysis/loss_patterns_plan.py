"""Which files the loss_patterns study makes: the plan rules/loss_patterns.smk reads.

Imported by the Snakefile at every start (also inside every cluster job), so standard library only.
"""

from __future__ import annotations

ANALYSIS_DIR = "results/analysis/loss_patterns"
FIGURE_DIR = "results/figures/loss_patterns"
VARIANTS = ("without_bn", "with_bn")

# Every figure file of the study, by name (lossatlas/figures/loss_patterns.py draws each, the function of the
# same name in lossatlas/analysis/loss_patterns.py makes its data; a test keeps the three in step).
FIGURES = (
    "fig01a_test_loss_surface",
    "fig01b_test_loss_surface",
    "fig02a_picture",
    "fig02b_pattern_mask",
    "fig02c_accuracy_surface",
    "fig03a_random_mask",
    "fig03b_without_bn",
    "fig03c_with_bn",
    "fig04a_accuracy_difference",
    "fig04b_mean_accuracy",
    "fig05_more_test_loss_surfaces",
    "fig06_train_test_surfaces",
)


def search_path(name: str) -> str:
    return f"{ANALYSIS_DIR}/searches/{name}.h5"


def bn_run_path(variant: str, seed: int) -> str:
    return f"{ANALYSIS_DIR}/bn/{variant}/s{seed}.h5"


def figure_data_path(figure: str) -> str:
    """What the analysis writes for ``figure`` and the figure job reads."""
    return f"{ANALYSIS_DIR}/figure_data/{figure}.h5"


def figure_searches(study: dict) -> list[str]:
    """The searches the figures name (``studies.loss_patterns.figures``), sorted."""
    return sorted({n for v in study["figures"].values() for n in ([v] if isinstance(v, str) else v)})
