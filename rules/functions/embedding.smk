# Functions of rules/embedding.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _emb_code(function, helpers, path):
    return "".join(source_hash(path, f) for f in [function, *helpers])
