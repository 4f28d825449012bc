# Rules of the consistency study (figures are appended to FIGURES).
# Hacohen & Weinshall, All Neural Networks are Created Equal: ensemble scores per (recipe, dataset, arch),
# the index lists that derive the hard / moved datasets, the other classifiers, the table, one rule per
# figure.
# Library: lossatlas/analysis/consistency.py and lossatlas/figures/consistency.py.

from lossatlas.analysis import consistency_plan as cons_plan

CONS = study_config("consistency")
CONS_DIR = cons_plan.ANALYSIS_DIR
CONS_FIGS = cons_plan.FIGURE_DIR
CONS_LIB = f"{LIB}/analysis/consistency.py"
CONS_FIG_LIB = f"{LIB}/figures/consistency.py"


CONS_SCORE_CODE = cons_code("ensemble_scores", "load_ensemble", "consistency_scores", "consensus_scores",
                            "label_counts", "modal_labels", "pearson_bimodality", "training_epochs",
                            "speed_of_learning", "split_halves")
CONS_READ_CODE = cons_code("read_scores", "read_ids", "nearest_checkpoint", "pearson_r", "training_epochs")


# Editing one figure function reruns that figure; editing a shared drawing helper reruns them all.
CONS_FIG_HELPERS_HASH = "".join(
    source_hash(CONS_FIG_LIB, f)
    for f in ("_save", "_hist", "_epoch_label", "_b", "_phases", "_score_grid", "_scatter",
              "_read_classifiers")
)
CONS_FIG_ANALYSIS_CODE = CONS_READ_CODE + cons_code(
    "phase_checkpoints", "example_patterns", "match_epochs", "matched_pair_near", "consistency_histogram_2d",
    "bimodality_summary", "moved_accuracy", "matched_targets")


if study_enabled("consistency"):
    _problems = cons_plan.check(CONS, DATASETS, _cons_combos)
    if _problems:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(_problems))
    FIGURES.extend(f"{CONS_FIGS}/{name}.png" for name in cons_plan.figures(CONS))
    FIGURES.append(f"{CONS_DIR}/summary.md")


rule consistency_scores:
    input:
        metrics=lambda wc: [r.metrics for r in runs_of("consistency", recipe=wc.recipe, dataset=wc.dataset,
                                                       arch=wc.arch)],
    output:
        f"{CONS_DIR}/scores/{{recipe}}/{{dataset}}/{{arch}}.h5",
    params:
        label=lambda wc: f"{wc.recipe}/{wc.dataset}/{wc.arch}",
        code=CONS_SCORE_CODE,
    log:
        f"results/logs/consistency/scores/{{recipe}}/{{dataset}}/{{arch}}.log",
    wildcard_constraints:
        recipe=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        arch=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_scores.py"


rule consistency_index:
    input:
        scores=_cons_index_scores,
        original=lambda wc: dataset_h5(CONS["ensembles"]["main"]["dataset"]),
    output:
        f"{CONS_DIR}/index/{{name}}.txt",
    params:
        job=lambda wc: jsonable({k: v for k, v in cons_plan.index_plan(CONS)[wc.name].items()
                                 if k != "parent"}),
        code=cons_code("index_list", "removal_count", "rank_easiest_first", "moved_ids", "write_ids",
                       "_train_size", "read_scores"),
    log:
        f"results/logs/consistency/index/{{name}}.log",
    wildcard_constraints:
        name=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_index.py"


rule consistency_classifiers:
    input:
        dataset=lambda wc: dataset_h5(CONS["ensembles"]["main"]["dataset"]),
        scores=lambda wc: cons_plan.scores_path(CONS["ensembles"]["main"]),
    output:
        f"{CONS_DIR}/classifiers.h5",
    params:
        classifiers=lambda wc: CONS["classifiers"],
        adaboost=lambda wc: CONS["adaboost"],
        cnn_epochs=lambda wc: CONS["figures"]["fig07_epochs"],
        code=cons_code("other_classifiers", "adaboost_staged_correct", "tercile_groups", "_classifier",
                       "_flat") + CONS_READ_CODE,
    log:
        "results/logs/consistency/classifiers.log",
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_classifiers.py"


rule consistency_summary:
    input:
        unpack(lambda wc: {"classifiers": f"{CONS_DIR}/classifiers.h5", **cons_plan.role_scores(CONS),
                           **{f"index_{w}": p for w, p in cons_plan.move_files(CONS).items()}}),
    output:
        csv=f"{CONS_DIR}/summary.csv",
        md=f"{CONS_DIR}/summary.md",
        json=f"{CONS_DIR}/summary.json",
    params:
        roles=lambda wc: sorted(cons_plan.role_scores(CONS)),
        moves=lambda wc: sorted(cons_plan.move_files(CONS)),
        cross_pairs=lambda wc: CONS["cross_pairs"],
        figure_options=lambda wc: CONS["figures"],
        code=cons_code("summary_table", "bimodality_summary", "moved_accuracy", "_matched_rows",
                       "_fig09_fig11_rows", "matched_targets", "matched_pair_near", "match_epochs",
                       "consistency_histogram_2d", "corner_peak_ratios", "histogram_modes", "beginning_phase",
                       "classes_at_one", "climb_times") + CONS_READ_CODE,
    log:
        "results/logs/consistency/summary.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_summary.py"


rule consistency_figure:
    input:
        unpack(lambda wc: cons_plan.figure_inputs(CONS, wc.figure)),
    output:
        figure_report(f"{CONS_FIGS}/{{figure}}.png"),
    params:
        caption=lambda wc, output: figure_caption(output),
        function=lambda wc: wc.figure,
        options=lambda wc: jsonable(cons_plan.figure_options(CONS, wc.figure)),
        code=lambda wc: [source_hash(CONS_FIG_LIB, wc.figure), CONS_FIG_HELPERS_HASH,
                         *CONS_FIG_ANALYSIS_CODE],
    log:
        f"results/logs/consistency/figures/{{figure}}.log",
    wildcard_constraints:
        figure=r"(fig[0-9]+[a-z]*_|robustness_)[A-Za-z0-9_]+",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_figure.py"
