from lossatlas.analysis.universality import analyse
from lossatlas.entry import setup

setup(snakemake)
analyse(
    metrics_paths=list(snakemake.input.metrics),
    runs=snakemake.params.runs,
    dataset_paths=dict(zip(snakemake.params.dataset_names, snakemake.input.datasets, strict=True)),
    roles=snakemake.params.roles,
    pair_metrics=snakemake.params.pair_metrics,
    informative_range=snakemake.params.informative_range,
    widths=snakemake.params.widths,
    out_dir=snakemake.params.out_dir,
)
