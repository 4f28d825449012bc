from lossatlas.analysis.embedding import run_experiment
from lossatlas.entry import setup

setup(snakemake)
# params.function names the experiment's function in lossatlas/analysis/embedding.py.
run_experiment(snakemake.params.function, snakemake.params.cfg, snakemake.input.dataset, snakemake.output.arrays,
               threads=snakemake.threads)
