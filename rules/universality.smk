# Rules of the universality study (figures are appended to FIGURES).
# universality_patterns.txt: the learning-rate rule of §4 (rule lr_probe, one job per configuration, read by
# rule train for optimizers with `lr: probe`), one analysis job (curves of every run, the overlap tables, the
# isotonic fits, the headline numbers, Table 1) and one job per figure.
# Library: lossatlas/analysis/universality.py and lossatlas/figures/universality.py.

UNI = study_config("universality")
UNI_DIR = "results/analysis/universality"
UNI_FIGS = "results/figures/universality"
UNI_LIB = f"{LIB}/analysis/universality.py"
UNI_FIG_LIB = f"{LIB}/figures/universality.py"
# = lossatlas.analysis.universality.ANALYSIS_FILES (not imported here: the Snakefile stays free of numpy)
UNI_ANALYSIS_FILES = ["curves.csv", "overlap_curves.csv", "overlap.csv", "fits.csv", "panels.json",
                      "headline.json", "datasets.csv"]
# One terminal target per paper figure; the file stem is the drawing function's name.
UNI_FIGURES = [
    "table01_datasets",
    "fig01_train_loss_vs_error",
    "fig02_test_loss_vs_error",
    "fig03_pairs_across_optimizers",
    "fig04_pairs_across_losses",
    "fig05_deep_vs_shallow",
    "fig06_train_loss_vs_error_imagenet20",
    "fig07_widths",
    "fig08_test_loss_vs_error_imagenet20",
    "fig09_all_pairs",
    "fig10_all_pairs_imagenet20",
    "fig11_all_pairs_seeds",
    "fig12_all_pairs_seeds_imagenet20",
    "fig13_pairs_across_optimizers_imagenet20",
    "fig14_pairs_across_losses_imagenet20",
    "fig15_pairs_across_random_pixels",
    "fig16_pairs_across_random_labels",
]
# Shared drawing helpers: editing one reruns every figure, editing a figure's own function reruns only it.
UNI_FIG_HELPERS = ["_load", "_save", "_suptitle", "_sort_key", "_colors", "_group_label", "_fit_line", "_curve_D",
                   "_group_summary", "_axis_limit", "_curve_figure", "_pairs_figure"]
# The probe does not depend on these run settings (nor on the seeds), so changing them does not re-probe.
UNI_PROBE_IGNORES = ("seeds", "epochs", "checkpoints", "eval", "stop_at_train_loss")


if study_enabled("universality"):
    _check_pair_metrics()


# ------------------------------------------------------------------------------------ learning-rate probe


rule lr_probe:
    input:
        dataset=lambda wc: dataset_h5(wc.dataset),
    output:
        "results/lr_probe/{study}/{recipe}/{dataset}/{arch}/{optimizer}/{loss}.json",
    params:
        spec=_lr_probe_spec,
        probe=_lr_probe_settings,
        code=source_hash(UNI_LIB, "lr_probe") + source_hash(UNI_LIB, "choose_learning_rate"),
    log:
        "results/logs/lr_probe/{study}/{recipe}/{dataset}/{arch}/{optimizer}/{loss}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/universality_lr_probe.py"


# ---------------------------------------------------------------------------------------- analysis, figures


if study_enabled("universality"):

    rule universality_analysis:
        input:
            metrics=[r.metrics for r in _uni_runs()],
            datasets=[dataset_h5(n) for n in _uni_datasets()],
        output:
            [f"{UNI_DIR}/{name}" for name in UNI_ANALYSIS_FILES],
        params:
            runs=[{"recipe": r.recipe, "dataset": r.dataset, "arch": r.arch, "optimizer": r.optimizer,
                   "loss": r.loss} for r in _uni_runs()],
            dataset_names=_uni_datasets(),
            roles=UNI["roles"],
            pair_metrics=UNI["pair_metrics"],
            informative_range=UNI["informative_range"],
            widths=_uni_widths(),
            out_dir=lambda wc, output: str(Path(output[0]).parent),
            code=source_hash(UNI_LIB),
        log:
            "results/logs/universality/analysis.log",
        resources:
            mem_mb=4000,
            runtime=30,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/universality_analysis.py"

    rule universality_figure:
        input:
            [f"{UNI_DIR}/{name}" for name in UNI_ANALYSIS_FILES],
        output:
            figure_report(f"{UNI_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            function=lambda wc: wc.figure,
            analysis_dir=lambda wc, input: str(Path(input[0]).parent),
            code=lambda wc: source_hash(UNI_FIG_LIB, wc.figure)
            + "".join(source_hash(UNI_FIG_LIB, h) for h in UNI_FIG_HELPERS),
        log:
            "results/logs/universality/figures/{figure}.log",
        wildcard_constraints:
            figure=_alternation(UNI_FIGURES),
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/universality_figure.py"

    FIGURES.extend(f"{UNI_FIGS}/{name}.png" for name in UNI_FIGURES)
