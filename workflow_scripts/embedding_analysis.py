from lossatlas.analysis.embedding import analyse
from lossatlas.entry import setup

setup(snakemake)
analyse(dict(zip(snakemake.params.experiments, snakemake.input.arrays, strict=True)), dict(snakemake.output.items()))
