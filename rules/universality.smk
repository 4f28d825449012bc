# Rules of the universality study (figures are registered with register_figure).
# universality_patterns.txt: the learning-rate rule of §4 (rule lr_probe, one job per configuration, read by
# rule train for optimizers with `lr: probe`), one analysis job (curves of every run, the overlap tables, the
# isotonic fits, the panels and the curves each draws, the headline numbers, Table 1) and one figure rule
# (one file per job).
# Library: lossatlas/analysis/universality.py and lossatlas/figures/universality.py.
from lossatlas.fingerprint import code_fingerprint

UNI = study_config("universality")
UNI_DIR = "results/analysis/universality"
UNI_FIGS = "results/figures/universality"
# The analysis job's tables (lossatlas.analysis.universality.analyse), by the role name figures read them by.
UNI_ANALYSIS = {
    "curves": f"{UNI_DIR}/curves.csv",
    "overlap_curves": f"{UNI_DIR}/overlap_curves.csv",
    "overlap": f"{UNI_DIR}/overlap.csv",
    "fits": f"{UNI_DIR}/fits.csv",
    "panels": f"{UNI_DIR}/panels.json",
    "panel_curves": f"{UNI_DIR}/panel_curves.csv",
    "headline": f"{UNI_DIR}/headline.json",
    "datasets": f"{UNI_DIR}/datasets.csv",
}
# Figure file stem (= drawing function) -> the dataset roles its panels draw (None: every dataset), for the
# audit's per-figure runs; = lossatlas.figures.universality.FIGURES (tests/test_paper_shape.py keeps them equal).
UNI_FIGURES = {
    "table01_datasets": None,
    "fig01_train_loss_vs_error": ("cifar10",),
    "fig02_test_loss_vs_error": ("cifar10",),
    "fig03_pairs_across_optimizers": ("cifar10",),
    "fig04_pairs_across_losses": ("cifar10",),
    "fig05_deep_vs_shallow": ("cifar10",),
    "fig06_train_loss_vs_error_imagenet20": ("imagenet20",),
    "fig07_widths": ("cifar10",),
    "fig08_test_loss_vs_error_imagenet20": ("imagenet20",),
    "fig09_all_pairs": ("cifar10",),
    "fig10_all_pairs_imagenet20": ("imagenet20",),
    "fig11_all_pairs_seeds": ("cifar10",),
    "fig12_all_pairs_seeds_imagenet20": ("imagenet20",),
    "fig13_pairs_across_optimizers_imagenet20": ("imagenet20",),
    "fig14_pairs_across_losses_imagenet20": ("imagenet20",),
    "fig15_pairs_across_random_pixels": ("cifar10", "random_pixels"),
    "fig16_pairs_across_random_labels": ("cifar10", "random_labels"),
}
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
        # its output feeds training, whose code edits deliberately retrain (and so re-probe) nothing
        code=code_fingerprint("universality_lr_probe.py", exclude_code_of="train.py"),
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
            **UNI_ANALYSIS,
        params:
            runs=[{"recipe": r.recipe, "dataset": r.dataset, "arch": r.arch, "optimizer": r.optimizer,
                   "loss": r.loss} for r in _uni_runs()],
            dataset_names=_uni_datasets(),
            roles=UNI["roles"],
            pair_metrics=UNI["pair_metrics"],
            informative_range=UNI["informative_range"],
            widths=_uni_widths(),
            code=code_fingerprint("universality_analysis.py"),
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
            **UNI_ANALYSIS,
        output:
            figure_report(f"{UNI_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            code=code_fingerprint("universality_figure.py"),
        log:
            "results/logs/universality/figures/{figure}.log",
        wildcard_constraints:
            figure=_alternation(list(UNI_FIGURES)),
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/universality_figure.py"

    for name in UNI_FIGURES:
        register_figure(f"{UNI_FIGS}/{name}.png", runs=_uni_figure_runs(name))
