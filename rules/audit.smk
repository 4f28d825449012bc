# `snakemake audit`: what each study and figure needs, what is done, and the GPU-hours left
# (lossatlas/audit.py). It has no outputs, so it runs whenever it is named, and trains nothing.


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


localrules:
    audit,


rule audit:
    run:
        from lossatlas.audit import write_audit

        print(write_audit(config, RUNS, _figure_runs(), "results/audit.md", "results/audit.csv",
                          unevaluated_studies=STUDIES_WITHOUT_EVALUATION))
