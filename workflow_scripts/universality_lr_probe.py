from lossatlas.entry import setup
from lossatlas.lr_probe import lr_probe

setup(snakemake)
lr_probe(
    snakemake.params.spec,
    dataset_path=snakemake.input.dataset,
    out_path=snakemake.output[0],
    epochs=snakemake.params.probe["epochs"],
    seed=snakemake.params.probe["seed"],
    tolerance=snakemake.params.probe["tolerance"],
    spike_fraction=snakemake.params.probe["spike_fraction"],
)
