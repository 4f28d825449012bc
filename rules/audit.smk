# `snakemake audit`: what each study and figure needs, what is done, and the GPU-hours left
# (lossatlas/audit.py). It has no outputs, so it runs whenever it is named, and trains nothing.


localrules:
    audit,


rule audit:
    params:
        figure_runs=_figure_runs(),
        unevaluated_studies=sorted(STUDIES_WITHOUT_EVALUATION),
        gpu_job_outputs=_gpu_job_outputs(),
    log:
        "results/logs/audit.log",
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/audit.py"
