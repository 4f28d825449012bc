from lossatlas.entry import setup
from lossatlas.figures.normalized_loss import draw

setup(snakemake, threads=1)
draw(snakemake.wildcards.figure, snakemake.input, snakemake.output[0])
