import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.loss_patterns import summarize_bn_experiment  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
summarize_bn_experiment(list(snakemake.input.without_bn), list(snakemake.input.with_bn), snakemake.output.json,
                        snakemake.output.csv)
