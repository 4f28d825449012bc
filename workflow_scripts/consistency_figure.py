import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.figures import consistency as figures  # noqa: E402

setup(snakemake)
# params.function names one function of lossatlas/figures/consistency.py (the figure's own name).
render = getattr(figures, snakemake.params.function)
render(dict(snakemake.input), snakemake.params.options, snakemake.output[0])
