from lossatlas.analysis.loss_patterns import summarize_bn_experiment
from lossatlas.entry import setup

setup(snakemake)
summarize_bn_experiment(list(snakemake.input.without_bn), list(snakemake.input.with_bn), snakemake.output.json,
                        snakemake.output.csv)
