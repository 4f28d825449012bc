from lossatlas.datasets import derive_dataset
from lossatlas.entry import setup

setup(snakemake)
derive_dataset(
    snakemake.wildcards.name,
    snakemake.params.spec,
    snakemake.input.parent,
    snakemake.output[0],
    index_file=snakemake.input.get("index_file"),
)
