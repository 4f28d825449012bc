from lossatlas.analysis.consistency import index_list
from lossatlas.entry import setup

setup(snakemake)
job = dict(snakemake.params.job)
kind = job.pop("kind")
index_list(kind, snakemake.input.scores, snakemake.output[0], original_dataset=snakemake.input.original,
           **job)
