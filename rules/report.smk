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
        registry=file_fingerprint(f"{LIB}/claims.yaml"),
        # settings claims read the paper-scale configs: their contents, not the checkout's path, rerun the table
        configs=[file_fingerprint(p) for p in sorted(Path(workflow.basedir, "configs").glob("*.yaml"))],
        code=code_fingerprint("claims.py"),
    log:
        "results/logs/claims.log",
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/claims.py"


# `snakemake readme`: refresh the README's gallery (small copies in docs/gallery/) and claims headline from this
# run. Not part of all_figures: it rewrites tracked files, which a maintainer commits after a default run.
GALLERY = {
    "universality": "results/figures/universality/fig01_train_loss_vs_error.png",
    "consistency": "results/figures/consistency/fig01_consistency_phases.png",
    "normalized_loss": "results/figures/normalized_loss/fig03_normalized_vs_unnormalized.png",
    "loss_patterns": "results/figures/loss_patterns/fig01a_test_loss_surface.png",
    "embedding": "results/figures/embedding/fig03a_hessian_spectrum_1d.png",
}
# The default run's copies in docs/gallery/, a medium run's in docs/gallery/medium/ (README has a block for each).
GALLERY_DIR = "docs/gallery" if config["scale"] == "default" else f"docs/gallery/{config['scale']}"

localrules:
    readme_gallery,
    readme,


rule readme_gallery:
    input:
        figures=list(GALLERY.values()),
        claims=rules.claims.output.csv,
    output:
        [f"{GALLERY_DIR}/{paper}.png" for paper in GALLERY],
    params:
        captions=[f"{PAPER_TITLES[p]}: {Path(f).stem}" for p, f in GALLERY.items()],
        readme=str(Path(workflow.basedir) / "README.md"),
        code=code_fingerprint("readme_gallery.py"),
    log:
        "results/logs/readme_gallery.log",
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/readme_gallery.py"


rule readme:
    input:
        rules.readme_gallery.output,
