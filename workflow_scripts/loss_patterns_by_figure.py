import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.loss_patterns_by_figure import searches_by_figure  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
searches_by_figure(dict(snakemake.params.figures),
                   dict(zip(snakemake.params.searches, snakemake.input.summaries, strict=True)),
                   snakemake.output[0])
