# Rules of the normalized_loss study (figures are appended to FIGURES).
# Liao et al., A Surprising Linear Relationship Predicts Test Performance in Deep Networks: one post-processing
# job per experiment (snapshot selection, BN absorption, layerwise normalisation, losses; imports torch), one
# fit table, one job per figure. Post-processing reads checkpoints.h5 only (it measures the training loss of
# every checkpoint itself, in float64), so this study needs no evaluate jobs. Library: lossatlas/analysis/normalized_loss.py, lossatlas/figures/normalized_loss.py.

NL = study_config("normalized_loss")
NL_DIR = "results/analysis/normalized_loss"
NL_FIGS = "results/figures/normalized_loss"
NL_LIB = f"{LIB}/analysis/normalized_loss.py"
NL_FIG_LIB = f"{LIB}/figures/normalized_loss.py"

# Figure (function in lossatlas/figures/normalized_loss.py = file name) -> the experiment whose points it draws.
# Post-processing reads checkpoints.h5 itself (float64 losses of every checkpoint): no evaluate jobs.
STUDIES_WITHOUT_EVALUATION.add("normalized_loss")

NL_FIGURES = {
    "fig01_corruption_vs_generalization": "bn_corruption",
    "fig02_init_std_vs_generalization": "bn_init",
    "fig03_normalized_vs_unnormalized": "conv3_corruption",
    "fig04_corruption_four_panels": "bn_corruption",
    "fig05_init_four_panels": "bn_init",
    "fig06_natural_and_random_labels": "conv3_natural",
    "fig07_wide_net_init": "conv3_wide_init",
    "fig08_wide_net_init_random_labels": "conv3_wide_init",
    "fig09_corruption_many_classes": "bn_corruption_many_classes",
    "fig10_init_std_many_classes": "bn_init_many_classes",
    "fig11_corruption_four_panels_many_classes": "bn_corruption_many_classes",
    "fig12_init_four_panels_many_classes": "bn_init_many_classes",
    "fig13_l1_normalization": "conv3_corruption",
    "fig14_stopped_at_equal_loss": "conv3_stop",
    "fig15_natural_only": "conv3_natural",
    "fig16_natural_and_random_labels_fit": "conv3_natural",
    "fig17_corruption_and_random_labels_fit": "conv3_corruption",
    "fig18_product_norm_vs_test_error": "conv3_stop",
    "fig19_max_logit_normalized": "conv3_wide_init",
    "fig20_max_logit_unnormalized": "conv3_wide_init",
}


if study_enabled("normalized_loss"):
    nl_check_config()
    NL_EXPERIMENTS = sorted(NL.get("experiments", {}))
    NL_ACTIVE_FIGURES = [f for f, exp in NL_FIGURES.items() if exp in NL_EXPERIMENTS]
    FIGURES.extend(f"{NL_FIGS}/{f}.png" for f in NL_ACTIVE_FIGURES)

    rule nl_postprocess:
        input:
            unpack(nl_post_inputs),
        output:
            points=f"{NL_DIR}/{{experiment}}/points.csv",
            max_logits=f"{NL_DIR}/{{experiment}}/max_logits.h5",
        params:
            runs=nl_post_runs,
            settings=nl_settings,
            code=source_hash(NL_LIB),
        log:
            f"results/logs/normalized_loss/postprocess_{{experiment}}.log",
        wildcard_constraints:
            experiment=_alternation(NL_EXPERIMENTS),
        threads: config["threads"]
        resources:
            mem_mb=8000,
            runtime=60,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/normalized_loss_postprocess.py"

    # Figs 19/20 statistics come from the experiment of the max-logit histograms, when it is configured.
    NL_HIST = "conv3_wide_init"

    rule nl_fits:
        input:
            points=[nl_points(e) for e in NL_EXPERIMENTS],
            max_logits=[f"{NL_DIR}/{NL_HIST}/max_logits.h5"] if NL_HIST in NL_EXPERIMENTS else [],
        output:
            fits=f"{NL_DIR}/fits.csv",
            correlations=f"{NL_DIR}/correlations.csv",
            max_logits=f"{NL_DIR}/max_logits.csv",
            loss_differences=f"{NL_DIR}/loss_differences.json",
        params:
            experiments=NL_EXPERIMENTS,
            histogram_points=lambda wc, input: nl_points_among(input.points, NL_HIST),
            # App. F loss differences: the Fig 3 points (conv3_corruption), when configured
            fig03_points=lambda wc, input: nl_points_among(input.points, "conv3_corruption"),
            code=source_hash(NL_LIB),
        log:
            "results/logs/normalized_loss/fits.log",
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/normalized_loss_fits.py"

    # Editing a figure function reruns that figure; editing a shared drawing helper reruns them all.
    NL_FIG_HELPERS_HASH = "".join(
        source_hash(NL_FIG_LIB, f)
        for f in ("_save", "_points", "_fit_row", "_fit_text", "_scatter", "_fit_panel", "_sweep_panels",
                  "_four_panels", "_two_fits", "_max_logit_hist")
    )

    rule nl_figure:
        input:
            unpack(nl_figure_inputs),
        output:
            figure_report(f"{NL_FIGS}/{{name}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            code=lambda wc: source_hash(NL_FIG_LIB, wc.name) + NL_FIG_HELPERS_HASH,
        log:
            f"results/logs/normalized_loss/{{name}}.log",
        wildcard_constraints:
            name=_alternation(NL_ACTIVE_FIGURES),
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/normalized_loss_figure.py"
