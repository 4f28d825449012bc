from lossatlas.entry import setup
from lossatlas.figures.consistency import draw

setup(snakemake)
draw(snakemake.wildcards.figure, snakemake.input, snakemake.output[0])
