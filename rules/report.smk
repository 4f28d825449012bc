# The claims table (lossatlas/claims.py, registry lossatlas/claims.yaml) and what `snakemake --report` shows.

rule claims:
    input:
        FIGURES,
    output:
        csv=report("results/claims.csv", caption="../report/claims.rst", category="Claims"),
        md="results/claims.md",
        rst="results/claims.rst",
    params:
        scale=SCALE,
        registry=source_hash(f"{LIB}/claims.yaml"),
        code=source_hash(f"{LIB}/claims.py"),
    log:
        "results/logs/claims.log",
    script:
        "../workflow_scripts/claims.py"
