from lossatlas.audit import write_audit
from lossatlas.config import expand_runs
from lossatlas.entry import setup

log = setup(snakemake)
report_md = write_audit(snakemake.config, expand_runs(snakemake.config), snakemake.params.figure_runs,
                        "results/audit.md", "results/audit.csv",
                        unevaluated_studies=set(snakemake.params.unevaluated_studies),
                        gpu_job_outputs=dict(snakemake.params.gpu_job_outputs))
log.info("audit written to results/audit.md")
print(report_md)
