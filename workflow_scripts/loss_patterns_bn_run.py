import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.loss_patterns import run_bn_experiment  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
run_bn_experiment(snakemake.params.spec, snakemake.input.dataset, snakemake.output[0])
