"""lossatlas: the library behind the Snakemake pipeline (one module per concept; see README.md)."""
