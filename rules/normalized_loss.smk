# Rules of the normalized_loss study (figures are registered with register_figure).
# Liao et al., A Surprising Linear Relationship Predicts Test Performance in Deep Networks: one post-processing
# job per experiment (snapshot selection, BN absorption, layerwise normalisation, losses; imports torch), one
# analysis job (fits, correlations, max logits, loss differences, ψ overlays), one figure rule (one file per job).
# Post-processing reads checkpoints.h5 only (it measures the training loss of every checkpoint itself, in
# float64), so this study needs no evaluate jobs.
# Library: lossatlas/analysis/normalized_loss.py, lossatlas/figures/normalized_loss.py.
from lossatlas.fingerprint import code_fingerprint

NL = study_config("normalized_loss")
NL_DIR = "results/analysis/normalized_loss"
NL_FIGS = "results/figures/normalized_loss"

STUDIES_WITHOUT_EVALUATION.add("normalized_loss")

# Figure file stem (= drawing function) -> the experiment whose points it draws;
# = lossatlas.figures.normalized_loss.FIGURES (tests/test_paper_shape.py keeps them equal).
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

# The analysis job's tables (lossatlas.analysis.normalized_loss.analyse), by the role name figures read them by.
NL_ANALYSIS = {
    "fits": f"{NL_DIR}/fits.csv",
    "correlations": f"{NL_DIR}/correlations.csv",
    "max_logits": f"{NL_DIR}/max_logits.csv",
    "max_logit_values": f"{NL_DIR}/max_logit_values.npz",
    "loss_differences": f"{NL_DIR}/loss_differences.json",
    "psi_overlay": f"{NL_DIR}/psi_overlay.csv",
}


if study_enabled("normalized_loss"):
    nl_check_config()
    NL_EXPERIMENTS = sorted(NL.get("experiments", {}))
    NL_ACTIVE_FIGURES = [f for f, exp in NL_FIGURES.items() if exp in NL_EXPERIMENTS]

    rule normalized_loss_postprocess:
        input:
            unpack(nl_post_inputs),
        output:
            points=f"{NL_DIR}/{{experiment}}/points.csv",
            max_logits=f"{NL_DIR}/{{experiment}}/max_logits.h5",
        params:
            runs=nl_post_runs,
            settings=nl_settings,
            code=code_fingerprint("normalized_loss_postprocess.py"),
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

    rule normalized_loss_analysis:
        input:
            points=[nl_points(e) for e in NL_EXPERIMENTS],
            max_logits=[f"{NL_DIR}/{e}/max_logits.h5" for e in NL_EXPERIMENTS],
        output:
            **NL_ANALYSIS,
        params:
            experiments=NL_EXPERIMENTS,
            code=code_fingerprint("normalized_loss_analysis.py"),
        log:
            "results/logs/normalized_loss/analysis.log",
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/normalized_loss_analysis.py"

    rule normalized_loss_figure:
        input:
            points=lambda wc: nl_points(NL_FIGURES[wc.figure]),
            **NL_ANALYSIS,
        output:
            figure_report(f"{NL_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            code=code_fingerprint("normalized_loss_figure.py"),
        log:
            f"results/logs/normalized_loss/{{figure}}.log",
        wildcard_constraints:
            figure=_alternation(NL_ACTIVE_FIGURES),
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/normalized_loss_figure.py"

    for name in NL_ACTIVE_FIGURES:
        register_figure(f"{NL_FIGS}/{name}.png", runs=nl_experiment_runs(NL_FIGURES[name]))
