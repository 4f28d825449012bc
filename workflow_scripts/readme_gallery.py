import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lossatlas.entry import setup  # noqa: E402
from lossatlas.gallery import make_gallery  # noqa: E402

setup(snakemake)
make_gallery(list(snakemake.input.figures), list(snakemake.output), snakemake.params.captions,
             snakemake.input.claims, snakemake.params.readme)
