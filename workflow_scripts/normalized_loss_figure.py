import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.figures import normalized_loss  # noqa: E402

setup(snakemake, threads=1)
# The output file is named after the figure function (rules/normalized_loss.smk NL_FIGURES).
getattr(normalized_loss, snakemake.wildcards.name)(dict(snakemake.input.items()), snakemake.output[0])
