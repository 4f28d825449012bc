import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.consistency import ensemble_scores  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
ensemble_scores(list(snakemake.input.metrics), snakemake.output[0], label=snakemake.params.label)
