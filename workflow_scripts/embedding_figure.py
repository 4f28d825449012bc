from lossatlas.entry import setup
from lossatlas.figures.embedding import draw

setup(snakemake)
# params.functions names functions of lossatlas/figures/embedding.py (each figure's own name), one per output.
for function, out_path in zip(snakemake.params.functions, snakemake.output, strict=True):
    draw(function, snakemake.input.arrays, out_path)
