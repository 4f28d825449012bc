import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.claims import write_claims  # noqa: E402
from lossatlas.entry import setup  # noqa: E402

setup(snakemake)
write_claims(snakemake.output.csv, snakemake.output.md, snakemake.output.rst, scale=snakemake.params.scale,
             repo=snakemake.params.repo)
