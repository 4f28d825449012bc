from lossatlas.analysis.consistency import consistency_analysis
from lossatlas.entry import setup

setup(snakemake)
consistency_analysis(
    {role: snakemake.input[role] for role in snakemake.params.roles},
    snakemake.input.classifiers,
    {which: snakemake.input[f"index_{which}"] for which in snakemake.params.moves},
    snakemake.params.cross_pairs,
    snakemake.params.fig02_ensemble,
    dict(snakemake.params.options),
    out_csv=snakemake.output.csv,
    out_md=snakemake.output.md,
    out_json=snakemake.output.json,
    figure_data={name: getattr(snakemake.output, name) for name in snakemake.params.figure_names},
)
