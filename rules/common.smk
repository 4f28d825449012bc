# Shared state of the workflow: the run grid, path helpers and input functions used by every rules file.
from lossatlas.costs import dataset_mem_mb, run_cost
from lossatlas.config import (
    PAPERS,
    dataset_lineage,
    expand_runs,
    index_runs,
    jsonable,
    select_runs,
)
from lossatlas.fingerprint import code_fingerprint, file_fingerprint
from lossatlas.io import read_yaml

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
    return paper in config["studies"] and config["studies"][paper]["enabled"]


# ---------------------------------------------------------------------- figures in `snakemake --report`
CONFIG_NAME = ", ".join(str(f) for f in workflow.overwrite_configfiles) or "config.yaml"
SCALE = config["scale"] if not workflow.overwrite_configfiles else f"{config['scale']} ({CONFIG_NAME})"
PAPER_TITLES = {
    "universality": "Universality patterns in the training of neural networks",
    "consistency": "Hacohen & Weinshall, All neural networks are created equal",
    "normalized_loss": "Liao et al., A surprising linear relationship predicts test performance in deep networks",
    "loss_patterns": "Skorokhodov & Burtsev, Loss patterns of neural networks",
    "embedding": "Zhang et al., Embedding principle of loss landscape of deep neural networks",
}


def _claims_by_figure():
    out = {}
    for entry in read_yaml(Path(workflow.basedir) / LIB / "claims.yaml"):
        for fig in entry.get("figures", []):
            out.setdefault((entry["paper"], fig), []).append(entry["id"])
    return out


CLAIMS_BY_FIGURE = _claims_by_figure()


def figure_caption(paths):
    """Report caption of a figure job's outputs: paper, figure number, config, and the claims it bears on."""
    paths = [str(p) for p in paths]
    paper, name = paths[0].split("/")[2], Path(paths[0]).stem
    number = name.split("_")[0]
    claims = CLAIMS_BY_FIGURE.get((paper, number[:5]), []) + CLAIMS_BY_FIGURE.get((paper, number), [])
    claims = sorted(set(claims))
    files = ", ".join(f"``{Path(p).name}``" for p in paths)
    text = (
        f"**{PAPER_TITLES[paper]}** — {number.replace('fig', 'Figure ').replace('table', 'Table ')} "
        f"({files}). Config: ``{CONFIG_NAME}`` ({config['scale']} scale). "
    )
    text += ("Claims it bears on: " + ", ".join(f"``{c}``" for c in claims) + " (see the claims table).") if claims \
        else "No quantitative claim of the paper rests on this figure alone."
    return text


def figure_report(path):
    """Wrap a figure output so `snakemake --report` shows it under its paper with its caption."""
    paper = path.split("/")[2]
    return report(path, caption="../report/figure.rst", category=PAPER_TITLES[paper],
                  labels={"paper": paper, "figure": Path(path).stem})



wildcard_constraints:
    study=_alternation(PAPERS),
    block=r"s[0-9][0-9_-]*",
