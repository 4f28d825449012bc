from lossatlas.analysis.normalized_loss import analyse
from lossatlas.entry import setup

setup(snakemake, threads=1)
analyse(dict(zip(snakemake.params.experiments, snakemake.input.points, strict=True)),
        dict(zip(snakemake.params.experiments, snakemake.input.max_logits, strict=True)),
        dict(snakemake.output.items()))
