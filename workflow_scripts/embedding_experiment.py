from lossatlas.analysis.embedding import run_experiment
from lossatlas.entry import setup

setup(snakemake)
run_experiment(snakemake.wildcards.experiment, snakemake.params.cfg, snakemake.input.dataset,
               snakemake.output.arrays, threads=snakemake.threads)
