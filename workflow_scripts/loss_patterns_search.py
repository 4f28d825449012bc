from lossatlas.analysis.loss_patterns_mpo import run_search
from lossatlas.entry import setup

setup(snakemake)
run_search(snakemake.params.spec, snakemake.input.dataset, snakemake.output.h5, snakemake.output.summary)
