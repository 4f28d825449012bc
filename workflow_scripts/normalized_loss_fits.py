from lossatlas.analysis.normalized_loss import fit_table, loss_differences, max_logit_table
from lossatlas.entry import setup

setup(snakemake, threads=1)
fit_table(
    dict(zip(snakemake.params.experiments, snakemake.input.points, strict=True)),
    out_fits=snakemake.output.fits,
    out_correlations=snakemake.output.correlations,
)
max_logit_table(snakemake.params.histogram_points, (snakemake.input.max_logits or [None])[0],
                snakemake.output.max_logits)
loss_differences(snakemake.params.fig03_points, snakemake.output.loss_differences)
