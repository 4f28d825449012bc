from lossatlas.analysis.consistency import ensemble_scores
from lossatlas.entry import setup

setup(snakemake)
ensemble_scores(list(snakemake.input.metrics), snakemake.output[0], label=snakemake.params.label)
