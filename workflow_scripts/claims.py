from pathlib import Path

from lossatlas.claims import write_claims
from lossatlas.entry import setup

setup(snakemake)
write_claims(snakemake.output.csv, snakemake.output.md, snakemake.output.rst, scale=snakemake.params.scale,
             repo=Path(snakemake.scriptdir).parent)
