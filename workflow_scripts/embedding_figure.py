import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.figures.embedding import draw  # noqa: E402

setup(snakemake)
# params.function names one function of lossatlas/figures/embedding.py (the figure's own name).
draw(snakemake.params.function, snakemake.input.arrays, snakemake.output[0])
