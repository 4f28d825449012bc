# Rules of the loss_patterns study (figures are appended to FIGURES).
# Skorokhodov & Burtsev, Loss Patterns of Neural Networks: multi-point optimisation of a 2-D plane in weight
# space. The study trains its planes itself (no generic train/evaluate): one job per pattern search, one job per
# (model, run seed) of the BN experiment (all fill probabilities of a run fitted together), a torch-free summary
# of Fig 4's numbers, one rule per figure with one PNG per panel.
# Library: lossatlas/analysis/loss_patterns.py and lossatlas/figures/loss_patterns.py.

LP = study_config("loss_patterns")
LP_DIR = "results/analysis/loss_patterns"
LP_FIGS = "results/figures/loss_patterns"
LP_LIB = f"{LIB}/analysis/loss_patterns.py"
LP_FIG_LIB = f"{LIB}/figures/loss_patterns.py"
LP_VARIANTS = ("without_bn", "with_bn")


if study_enabled("loss_patterns"):
    lp_check_config()
    LP_BN = LP["bn_experiment"]
    LP_FIGURE_OUTPUTS = {
        "fig01": {"a": f"{LP_FIGS}/fig01a_test_loss_surface.png", "b": f"{LP_FIGS}/fig01b_test_loss_surface.png"},
        "fig02": {"a": f"{LP_FIGS}/fig02a_picture.png", "b": f"{LP_FIGS}/fig02b_pattern_mask.png",
                  "c": f"{LP_FIGS}/fig02c_accuracy_surface.png"},
        "fig03": {"a": f"{LP_FIGS}/fig03a_random_mask.png", "b": f"{LP_FIGS}/fig03b_without_bn.png",
                  "c": f"{LP_FIGS}/fig03c_with_bn.png"},
        "fig04": {"a": f"{LP_FIGS}/fig04a_accuracy_difference.png", "b": f"{LP_FIGS}/fig04b_mean_accuracy.png"},
        "fig05": {"a": f"{LP_FIGS}/fig05_more_test_loss_surfaces.png"},
        "fig06": {"a": f"{LP_FIGS}/fig06_train_test_surfaces.png"},
    }
    FIGURES.extend(path for panels in LP_FIGURE_OUTPUTS.values() for path in panels.values())

    rule lp_search:
        input:
            dataset=lambda wc: dataset_h5(LP["searches"][wc.search]["dataset"]),
        output:
            h5=f"{LP_DIR}/searches/{{search}}.h5",
            summary=f"{LP_DIR}/searches/{{search}}.json",
        params:
            spec=lambda wc: lp_search_spec(wc.search),
            code=source_hash(LP_LIB),
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
            f"{LP_DIR}/bn/{{variant}}/s{{seed}}.h5",
        params:
            spec=lambda wc: lp_bn_spec(wc.variant, wc.seed),
            code=source_hash(LP_LIB),
        log:
            "results/logs/loss_patterns/bn_{variant}_s{seed}.log",
        wildcard_constraints:
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

    rule lp_bn_summary:
        input:
            without_bn=[lp_bn_run("without_bn", s) for s in LP_BN["seeds"]],
            with_bn=[lp_bn_run("with_bn", s) for s in LP_BN["seeds"]],
        output:
            json=f"{LP_DIR}/fig04_bn_accuracy.json",
            csv=f"{LP_DIR}/fig04_bn_accuracy.csv",
        params:
            code=source_hash(LP_LIB, "summarize_bn_experiment"),
        log:
            "results/logs/loss_patterns/bn_summary.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_bn_summary.py"

    # The search summaries keyed by figure, so claims name figures, not config-specific search names.
    LP_FIGURE_SEARCHES = sorted({n for v in LP["figures"].values() for n in ([v] if isinstance(v, str) else v)})
    FIGURES.append(f"{LP_DIR}/searches_by_figure.json")

    rule lp_searches_by_figure:
        input:
            summaries=[f"{LP_DIR}/searches/{n}.json" for n in LP_FIGURE_SEARCHES],
        output:
            f"{LP_DIR}/searches_by_figure.json",
        params:
            figures=LP["figures"],
            searches=LP_FIGURE_SEARCHES,
            code=source_hash(f"{LIB}/analysis/loss_patterns_by_figure.py"),
        log:
            "results/logs/loss_patterns/searches_by_figure.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_by_figure.py"

    rule lp_fig01:
        input:
            a=lp_search(LP["figures"]["fig01a"]),
            b=lp_search(LP["figures"]["fig01b"]),
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig01"].items()},
        params:
            **lp_figure_params("fig01_test_loss_surfaces"),
        log:
            "results/logs/loss_patterns/fig01.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"

    rule lp_fig02:
        input:
            search=lp_search(LP["figures"]["fig02"]),
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig02"].items()},
        params:
            **lp_figure_params("fig02_pattern_to_accuracy_surface"),
        log:
            "results/logs/loss_patterns/fig02.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"

    rule lp_fig03:
        input:
            without_bn=lp_bn_run("without_bn", LP_BN["seeds"][0]),
            with_bn=lp_bn_run("with_bn", LP_BN["seeds"][0]),
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig03"].items()},
        params:
            **lp_figure_params("fig03_random_mask_without_with_bn"),
            options={"fill_probability": LP_BN["example_probability"]},
        log:
            "results/logs/loss_patterns/fig03.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"

    rule lp_fig04:
        input:
            summary=f"{LP_DIR}/fig04_bn_accuracy.json",
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig04"].items()},
        params:
            **lp_figure_params("fig04_bn_accuracy"),
        log:
            "results/logs/loss_patterns/fig04.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"

    rule lp_fig05:
        input:
            searches=[lp_search(n) for n in LP["figures"]["fig05"]],
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig05"].items()},
        params:
            **lp_figure_params("fig05_more_test_loss_surfaces"),
        log:
            "results/logs/loss_patterns/fig05.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"

    rule lp_fig06:
        input:
            searches=[lp_search(n) for n in LP["figures"]["fig06"]],
        output:
            **{k: figure_report(v) for k, v in LP_FIGURE_OUTPUTS["fig06"].items()},
        params:
            **lp_figure_params("fig06_train_test_surfaces"),
        log:
            "results/logs/loss_patterns/fig06.log",
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/loss_patterns_figure.py"
