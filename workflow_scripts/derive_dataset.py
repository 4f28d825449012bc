import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.datasets import derive_dataset  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
derive_dataset(
    snakemake.wildcards.name,
    snakemake.params.spec,
    snakemake.input.parent,
    snakemake.output[0],
    index_file=snakemake.input.get("index_file"),
)
