from lossatlas.datasets import build_source_dataset
from lossatlas.entry import setup

setup(snakemake)
build_source_dataset(
    snakemake.wildcards.name,
    snakemake.params.spec,
    snakemake.output[0],
    raw_dir=snakemake.input.get("raw"),
    imagenet_dir=snakemake.params.imagenet_dir,
)
