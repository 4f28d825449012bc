from lossatlas.analysis.loss_patterns import run_search
from lossatlas.entry import setup

setup(snakemake)
run_search(snakemake.params.spec, snakemake.input.dataset, snakemake.output.h5, snakemake.output.summary)
