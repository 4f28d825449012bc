from lossatlas.entry import setup
from lossatlas.gallery import make_gallery

setup(snakemake)
make_gallery(list(snakemake.input.figures), list(snakemake.output), snakemake.params.captions,
             snakemake.input.claims, snakemake.params.readme)
