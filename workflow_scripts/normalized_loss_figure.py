from lossatlas.entry import setup
from lossatlas.figures import normalized_loss

setup(snakemake, threads=1)
# The output file is named after the figure function (rules/normalized_loss.smk NL_FIGURES).
getattr(normalized_loss, snakemake.wildcards.name)(dict(snakemake.input.items()), snakemake.output[0])
