import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.figures.embedding import draw  # noqa: E402

setup(snakemake)
# params.functions names functions of lossatlas/figures/embedding.py (each figure's own name), one per output.
for function, out_path in zip(snakemake.params.functions, snakemake.output, strict=True):
    draw(function, snakemake.input.arrays, out_path)
