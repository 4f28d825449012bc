from lossatlas.analysis.loss_patterns_by_figure import searches_by_figure
from lossatlas.entry import setup

setup(snakemake)
searches_by_figure(dict(snakemake.params.figures),
                   dict(zip(snakemake.params.searches, snakemake.input.summaries, strict=True)),
                   snakemake.output[0])
