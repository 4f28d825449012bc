# Functions of rules/loss_patterns.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def lp_check_config():
    """Names the study uses must be defined; the figures must name searches; Fig 3's p must be fitted."""
    where = "studies.loss_patterns"
    for name, search in LP["searches"].items():
        if search["dataset"] not in DATASETS:
            raise WorkflowError(f"{where}.searches.{name}.dataset: undefined dataset '{search['dataset']}'")
        if search["architecture"] not in config["architectures"]:
            raise WorkflowError(f"{where}.searches.{name}.architecture: undefined architecture "
                                f"'{search['architecture']}'")
    for fig, names in LP["figures"].items():
        for name in [names] if isinstance(names, str) else names:
            if name not in LP["searches"]:
                raise WorkflowError(f"{where}.figures.{fig}: no search named '{name}' under {where}.searches")
    bn = LP["bn_experiment"]
    if bn["dataset"] not in DATASETS:
        raise WorkflowError(f"{where}.bn_experiment.dataset: undefined dataset '{bn['dataset']}'")
    for variant in LP_VARIANTS:
        if bn[variant] not in config["architectures"]:
            raise WorkflowError(f"{where}.bn_experiment.{variant}: undefined architecture '{bn[variant]}'")
        for protocol, settings in bn["protocols"].items():
            if settings.get(variant, bn[variant]) not in config["architectures"]:
                raise WorkflowError(f"{where}.bn_experiment.protocols.{protocol}.{variant}: undefined architecture "
                                    f"'{settings[variant]}'")
    if not any(abs(p - bn["example_probability"]) < 1e-9 for p in bn["fill_probabilities"]):
        raise WorkflowError(f"{where}.bn_experiment.example_probability: {bn['example_probability']} is not one "
                            "of fill_probabilities")



def lp_search_spec(name):
    """One search's spec (lossatlas.loss_patterns_specs.search_spec)."""
    from lossatlas.loss_patterns_specs import search_spec

    return jsonable(search_spec(LP, config["architectures"], name, config["device"]))



def lp_bn_spec(protocol, variant, seed):
    """One BN run's spec (lossatlas.loss_patterns_specs.bn_run_spec)."""
    from lossatlas.loss_patterns_specs import bn_run_spec

    return jsonable(bn_run_spec(LP, config["architectures"], protocol, variant, seed, config["device"]))



def lp_figure_caption(figure, output):
    """The report caption; Fig 4's names the BN experiment's protocols (which masks, cells, clamp and γ)."""
    from lossatlas.loss_patterns_specs import bn_protocols_caption

    caption = figure_caption(output)
    if figure.startswith("fig04"):
        caption += " " + bn_protocols_caption(LP, config["architectures"])
    return caption


def lp_search(name):
    return f"{LP_DIR}/searches/{name}.h5"



def lp_bn_run(protocol, variant, seed):
    return f"{LP_DIR}/bn/{protocol}/{variant}/s{seed}.h5"


def lp_bn_runs(variant):
    """Every run of ``variant``, protocol by protocol (config order), each protocol's seeds in order."""
    bn = LP["bn_experiment"]
    return [lp_bn_run(protocol, variant, s) for protocol in bn["protocols"] for s in bn["seeds"]]



def lp_figure_searches():
    """The searches the figures name (studies.loss_patterns.figures), sorted."""
    return sorted({n for v in LP["figures"].values() for n in ([v] if isinstance(v, str) else v)})



def lp_figure_data(figure):
    """What the analysis writes for ``figure`` and the figure job reads."""
    return f"{LP_DIR}/figure_data/{figure}.h5"
