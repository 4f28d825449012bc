import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.loss_patterns import run_search  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
run_search(snakemake.params.spec, snakemake.input.dataset, snakemake.output.h5, snakemake.output.summary)
