import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.normalized_loss import postprocess_experiment  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
postprocess_experiment(
    snakemake.wildcards.experiment,
    runs=snakemake.params.runs,
    settings=snakemake.params.settings,
    out_points=snakemake.output.points,
    out_logits=snakemake.output.max_logits,
)
