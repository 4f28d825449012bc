from lossatlas.analysis.normalized_loss import postprocess_experiment
from lossatlas.entry import setup

setup(snakemake)
postprocess_experiment(
    snakemake.wildcards.experiment,
    runs=snakemake.params.runs,
    settings=snakemake.params.settings,
    out_points=snakemake.output.points,
    out_logits=snakemake.output.max_logits,
)
