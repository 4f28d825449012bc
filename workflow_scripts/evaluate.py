import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.evaluation import evaluate_run  # noqa: E402

setup(snakemake)
evaluate_run(
    snakemake.params.spec,
    checkpoints_path=snakemake.input.checkpoints,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output.metrics,
)
