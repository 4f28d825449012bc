from lossatlas.entry import setup
from lossatlas.figures import loss_patterns as figures

setup(snakemake)
# params.function names one function of lossatlas/figures/loss_patterns.py (the figure's own name); it draws
# every panel of that figure, one PNG per output.
render = getattr(figures, snakemake.params.function)
render(dict(snakemake.input), dict(snakemake.output), dict(getattr(snakemake.params, "options", {}) or {}))
