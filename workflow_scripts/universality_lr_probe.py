from lossatlas.analysis.universality import lr_probe
from lossatlas.entry import setup

setup(snakemake)
lr_probe(
    snakemake.params.spec,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output[0],
    epochs=snakemake.params.probe["epochs"],
    seed=snakemake.params.probe["seed"],
    tolerance=snakemake.params.probe["tolerance"],
)
