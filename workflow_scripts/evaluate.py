from lossatlas.entry import setup
from lossatlas.evaluation import evaluate_run

setup(snakemake)
evaluate_run(
    snakemake.params.spec,
    checkpoints_path=snakemake.input.checkpoints,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output.metrics,
)
