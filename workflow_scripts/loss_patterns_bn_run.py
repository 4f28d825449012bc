from lossatlas.analysis.loss_patterns import run_bn_experiment
from lossatlas.entry import setup

setup(snakemake)
run_bn_experiment(snakemake.params.spec, snakemake.input.dataset, snakemake.output[0])
