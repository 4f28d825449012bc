# Functions of rules/audit.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _figure_runs():
    """Registered runs per figure; a figure that registered none is charged all runs of its study."""
    out = {}
    for path in FIGURES:
        if path in FIGURE_RUNS:
            out[path] = FIGURE_RUNS[path]
        else:
            paper = path.split("/")[2]
            out[path] = [r.dir for r in runs_of(paper)]
    return out
