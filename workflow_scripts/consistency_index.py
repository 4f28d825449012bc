import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.consistency import index_list  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
job = dict(snakemake.params.job)
kind = job.pop("kind")
index_list(kind, snakemake.input.scores, snakemake.output[0], original_dataset=snakemake.input.original,
           **job)
