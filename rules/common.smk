# Shared state of the workflow: the run grid, path helpers and input functions used by every rules file.
from lossatlas.costs import dataset_mem_mb, run_cost
from lossatlas.config import (
    PAPERS,
    dataset_lineage,
    expand_runs,
    index_runs,
    jsonable,
    select_runs,
    source_hash,
)

RUNS = expand_runs(config)
RUN_BY_DIR = index_runs(RUNS)
DATASETS = config["datasets"]
SOURCE_DATASETS = sorted(n for n, d in DATASETS.items() if "source" in d)
DERIVED_DATASETS = sorted(n for n, d in DATASETS.items() if "derive_from" in d)
DOWNLOADED_SOURCES = ("cifar10", "cifar100", "mnist", "fashion_mnist")
LIB = "workflow_scripts/lossatlas"

# Every paper's rules file appends its terminal figure paths here; all_figures collects them.
FIGURES = []
# Studies whose analyses read checkpoints.h5 directly and never need metrics.h5 (for the audit).
STUDIES_WITHOUT_EVALUATION = set()
# figure path -> the run directories it is drawn from (for the audit); register_figure() fills both.
FIGURE_RUNS = {}


def register_figure(path, runs=None):
    """Make ``path`` a terminal target of all_figures; ``runs`` (Run objects) are what it is drawn from."""
    FIGURES.append(path)
    if runs is not None:
        FIGURE_RUNS[path] = sorted({r.dir for r in runs})
    return path


def _alternation(names):
    """A wildcard constraint matching exactly these names (or nothing when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def dataset_h5(name):
    return f"data/{name}.h5"


def runs_of(study, **where):
    """Runs of a study, filtered by Run attributes (recipe=, dataset=, arch=, optimizer=, loss=)."""
    return select_runs(RUNS, study=study, **where)


def run_of_wildcards(wc):
    key = f"results/runs/{wc.study}/{wc.recipe}/{wc.dataset}/{wc.arch}/{wc.optimizer}/{wc.loss}/{wc.block}"
    try:
        return RUN_BY_DIR[key]
    except KeyError:
        raise WorkflowError(f"{key} is not a run of the current config") from None


def study_config(paper):
    return config["studies"].get(paper, {})


def study_enabled(paper):
    return paper in config["studies"] and config["studies"][paper].get("enabled", True)


wildcard_constraints:
    study=_alternation(PAPERS),
    block=r"s[0-9][0-9_-]*",
