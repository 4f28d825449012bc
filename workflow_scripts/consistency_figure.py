from lossatlas.entry import setup
from lossatlas.figures import consistency as figures

setup(snakemake)
# params.function names one function of lossatlas/figures/consistency.py (the figure's own name).
render = getattr(figures, snakemake.params.function)
render(dict(snakemake.input), snakemake.params.options, snakemake.output[0])
