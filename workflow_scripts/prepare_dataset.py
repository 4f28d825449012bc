import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.datasets import build_source_dataset  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
build_source_dataset(
    snakemake.wildcards.name,
    snakemake.params.spec,
    snakemake.output[0],
    raw_dir=snakemake.input.get("raw"),
    imagenet_dir=snakemake.params.imagenet_dir,
)
