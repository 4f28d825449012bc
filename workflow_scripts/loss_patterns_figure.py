from lossatlas.entry import setup
from lossatlas.figures.loss_patterns import draw

setup(snakemake)
draw(snakemake.wildcards.figure, snakemake.input, snakemake.output[0])
