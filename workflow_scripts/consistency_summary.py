from lossatlas.analysis.consistency import summary_table
from lossatlas.entry import setup

setup(snakemake)
summary_table(
    {role: snakemake.input[role] for role in snakemake.params.roles},
    snakemake.input.classifiers,
    {which: snakemake.input[f"index_{which}"] for which in snakemake.params.moves},
    snakemake.params.cross_pairs,
    out_csv=snakemake.output.csv,
    out_md=snakemake.output.md,
    out_json=snakemake.output.json,
    figure_options=dict(snakemake.params.figure_options),
)
