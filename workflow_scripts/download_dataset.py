from lossatlas.datasets import download_source
from lossatlas.entry import setup

setup(snakemake)
download_source(snakemake.wildcards.source, snakemake.output[0], mirror=snakemake.params.mirror)
