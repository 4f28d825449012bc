# Rules of the loss_patterns study: experiments -> one analysis job -> one wildcard figure rule.
# Skorokhodov & Burtsev, Loss Patterns of Neural Networks: multi-point optimisation of a 2-D plane in weight
# space. The study trains its planes itself (no generic train/evaluate): one job per pattern search, one job per
# (model, run seed) of the BN experiment (all fill probabilities of a run fitted together); one torch-free
# analysis job writes every table and every figure's data; one job per figure file draws it.
# Library: lossatlas/analysis/loss_patterns_mpo.py (experiments), lossatlas/analysis/loss_patterns.py (analysis),
# lossatlas/figures/loss_patterns.py (drawing).

from lossatlas.fingerprint import code_fingerprint

LP = study_config("loss_patterns")
LP_DIR = "results/analysis/loss_patterns"
LP_FIGS = "results/figures/loss_patterns"
LP_VARIANTS = ("without_bn", "with_bn")
# Every figure file of the study; the names are the functions' names in lossatlas/figures/loss_patterns.py (which
# draws it) and lossatlas/analysis/loss_patterns.py (which makes its data).
LP_FIGURES = [
    "fig01a_test_loss_surface",
    "fig01b_test_loss_surface",
    "fig02a_picture",
    "fig02b_pattern_mask",
    "fig02c_accuracy_surface",
    "fig03a_random_mask",
    "fig03b_without_bn",
    "fig03c_with_bn",
    "fig04a_accuracy_difference",
    "fig04b_mean_accuracy",
    "fig05_more_test_loss_surfaces",
    "fig06_train_test_surfaces",
]


if study_enabled("loss_patterns"):
    lp_check_config()
    LP_BN = LP["bn_experiment"]
    for _name in LP_FIGURES:
        register_figure(f"{LP_FIGS}/{_name}.png")  # no Run objects: the study trains its planes itself
    # Tables the claims read (claims depend on FIGURES).
    FIGURES.append(f"{LP_DIR}/searches_by_figure.json")

    rule lp_search:
        input:
            dataset=lambda wc: dataset_h5(LP["searches"][wc.search]["dataset"]),
        output:
            h5=f"{LP_DIR}/searches/{{search}}.h5",
            summary=f"{LP_DIR}/searches/{{search}}.json",
        params:
            spec=lambda wc: lp_search_spec(wc.search),
            code=code_fingerprint("loss_patterns_search.py", exclude_code_of="train.py"),
        log:
            "results/logs/loss_patterns/search_{search}.log",
        wildcard_constraints:
            search=_alternation(list(LP["searches"])),
        threads: config["threads"]
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_search.py"

    rule lp_bn_run:
        input:
            dataset=dataset_h5(LP_BN["dataset"]),
        output:
            f"{LP_DIR}/bn/{{protocol}}/{{variant}}/s{{seed}}.h5",
        params:
            spec=lambda wc: lp_bn_spec(wc.protocol, wc.variant, wc.seed),
            code=code_fingerprint("loss_patterns_bn_run.py", exclude_code_of="train.py"),
        log:
            "results/logs/loss_patterns/bn_{protocol}_{variant}_s{seed}.log",
        wildcard_constraints:
            protocol=_alternation(list(LP_BN["protocols"])),
            variant="without_bn|with_bn",
            seed=r"\d+",
        threads: config["threads"]
        resources:
            mem_mb=4000,
            runtime=240,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_bn_run.py"

    rule loss_patterns_analysis:
        input:
            searches=[lp_search(n) for n in lp_figure_searches()],
            without_bn=lp_bn_runs("without_bn"),
            with_bn=lp_bn_runs("with_bn"),
        output:
            bn_json=f"{LP_DIR}/fig04_bn_accuracy.json",
            bn_csv=f"{LP_DIR}/fig04_bn_accuracy.csv",
            searches_json=f"{LP_DIR}/searches_by_figure.json",
            **{name: lp_figure_data(name) for name in LP_FIGURES},
        params:
            figures=LP["figures"],
            searches=lp_figure_searches(),
            fig03_fill_probability=LP_BN["example_probability"],
            protocols=list(LP_BN["protocols"]),
            seeds=len(LP_BN["seeds"]),
            figure_names=LP_FIGURES,
            code=code_fingerprint("loss_patterns_analysis.py"),
        log:
            "results/logs/loss_patterns/analysis.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_analysis.py"

    rule loss_patterns_figure:
        input:
            data=lambda wc: lp_figure_data(wc.figure),
        output:
            figure_report(f"{LP_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: lp_figure_caption(wc.figure, output),
            code=code_fingerprint("loss_patterns_figure.py"),
        log:
            "results/logs/loss_patterns/figures/{figure}.log",
        wildcard_constraints:
            figure=_alternation(LP_FIGURES),
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"
