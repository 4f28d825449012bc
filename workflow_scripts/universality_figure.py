from lossatlas.entry import setup
from lossatlas.figures.universality import draw

setup(snakemake)
# params.function names one function of lossatlas/figures/universality.py (the figure's own name).
draw(snakemake.params.function, snakemake.params.analysis_dir, snakemake.output[0])
