import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.analysis.universality import lr_probe  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
lr_probe(
    snakemake.params.spec,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output[0],
    epochs=snakemake.params.probe["epochs"],
    seed=snakemake.params.probe["seed"],
    tolerance=snakemake.params.probe["tolerance"],
)
