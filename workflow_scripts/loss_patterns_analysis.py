from lossatlas.analysis.loss_patterns import bn_runs_by_protocol, loss_patterns_analysis
from lossatlas.entry import setup

setup(snakemake)
out = snakemake.output
loss_patterns_analysis(
    dict(snakemake.params.figures),
    dict(zip(snakemake.params.searches, snakemake.input.searches, strict=True)),
    bn_runs_by_protocol(list(snakemake.params.protocols), snakemake.params.seeds,
                        {"without_bn": list(snakemake.input.without_bn), "with_bn": list(snakemake.input.with_bn)}),
    snakemake.params.fig03_fill_probability,
    bn_json=out.bn_json,
    bn_csv=out.bn_csv,
    searches_json=out.searches_json,
    figure_data={name: getattr(out, name) for name in snakemake.params.figure_names},
)
