import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.embedding import run_experiment  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
# params.function names the experiment's function in lossatlas/analysis/embedding.py.
run_experiment(snakemake.params.function, snakemake.params.cfg, snakemake.input.dataset, snakemake.output.arrays,
               threads=snakemake.threads)
