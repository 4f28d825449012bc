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


def _gpu_job_outputs():
    """Output pattern of each GPU job kind beyond train/evaluate whose rule exists (its study is enabled)."""
    from lossatlas.audit import GPU_JOB_RULES

    defined = {r.name for r in workflow.rules}
    out = {}
    for kind, (rule, key) in GPU_JOB_RULES.items():
        if rule in defined:
            outputs = getattr(rules, rule).output
            out[kind] = str(outputs[key] if isinstance(key, int) else getattr(outputs, key))
    return out
