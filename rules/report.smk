# The claims table (lossatlas/claims.py, registry lossatlas/claims.yaml) and what `snakemake --report` shows.

CONFIG_NAME = ", ".join(str(f) for f in workflow.overwrite_configfiles) or "config.yaml"
SCALE = "default" if not workflow.overwrite_configfiles else "paper (" + CONFIG_NAME + ")"
PAPER_TITLES = {
    "universality": "Universality patterns in the training of neural networks",
    "consistency": "Hacohen & Weinshall, All neural networks are created equal",
    "normalized_loss": "Liao et al., A surprising linear relationship predicts test performance in deep networks",
    "loss_patterns": "Skorokhodov & Burtsev, Loss patterns of neural networks",
    "embedding": "Zhang et al., Embedding principle of loss landscape of deep neural networks",
}


def _claims_by_figure():
    import yaml

    out = {}
    for entry in yaml.safe_load(open(Path(workflow.basedir) / LIB / "claims.yaml")):
        for fig in entry.get("figures", []):
            out.setdefault((entry["paper"], fig), []).append(entry["id"])
    return out


CLAIMS_BY_FIGURE = _claims_by_figure()


def figure_caption(path):
    """Report caption of a figure: paper, figure number, config, and the claims it bears on."""
    paper, name = path.split("/")[2], Path(path).stem
    number = name.split("_")[0]
    claims = CLAIMS_BY_FIGURE.get((paper, number), [])
    text = (
        f"**{PAPER_TITLES[paper]}** — {number.replace('fig', 'Figure ').replace('table', 'Table ')} "
        f"(``{name}``). Config: ``{CONFIG_NAME}`` ({SCALE.split(' ')[0]} scale). "
    )
    text += ("Claims it bears on: " + ", ".join(f"``{c}``" for c in claims) + " (see the claims table).") if claims \
        else "No quantitative claim of the paper rests on this figure alone."
    return text


def figure_report(path):
    """Wrap a figure output so `snakemake --report` shows it under its paper with its caption."""
    paper = path.split("/")[2]
    return report(path, caption="../report/figure.rst", category=PAPER_TITLES[paper],
                  labels={"paper": paper, "figure": Path(path).stem})


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
