import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.datasets import download_source  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
download_source(snakemake.wildcards.source, snakemake.output[0], mirror=snakemake.params.mirror)
