# Rules of the consistency study: experiments -> one analysis job -> one wildcard figure rule.
# Hacohen & Weinshall, All Neural Networks are Created Equal. Experiments: the ensembles (train/evaluate), their
# scores per (recipe, dataset, arch), the index lists that derive the hard / moved datasets (whose ensembles
# train on them: scores -> index -> derived dataset -> train -> scores), the other classifiers. One analysis job
# writes the summary table and every figure's data; one job per figure file draws it.
# Library: lossatlas/analysis/consistency_{scores,index,classifiers}.py (experiments), lossatlas/analysis/
# consistency.py (analysis), lossatlas/figures/consistency.py (drawing), lossatlas/analysis/consistency_plan.py
# (which files come from which).

from lossatlas.analysis import consistency_plan as cons_plan
from lossatlas.fingerprint import code_fingerprint

CONS = study_config("consistency")
CONS_DIR = cons_plan.ANALYSIS_DIR
CONS_FIGS = cons_plan.FIGURE_DIR
# Every figure file of the study -> what it is drawn from (cons_plan.figure_roles: ensemble roles, 'pair',
# 'fig02_ensemble', 'moves'; the classifier figures: the main ensemble, the CNN they compare with). The names
# are the functions' names in lossatlas/figures/consistency.py and lossatlas/analysis/consistency.py.
CONS_FIGURES = {
    "fig01_consistency_phases": ("main",),
    "fig02_consistency_epochs": ("fig02_ensemble",),
    "fig03_consensus_phases": ("main",),
    "fig04a_speed_two_halves": ("main",),
    "fig04b_speed_cross_arch": ("pair",),
    "fig04cd_matched_epochs_2d": ("pair",),
    "fig05ab_linear_vs_nonlinear": ("main", "linear"),
    "fig05c_linear_consistency": ("main", "linear"),
    "fig06a_adaboost_groups": ("main",),
    "fig06b_adaboost_vs_cnn": ("main",),
    "fig07_other_classifiers": ("main",),
    "fig08abc_random_labels": ("random_labels",),
    "fig08d_hard_dataset": ("hard_final", "random_subset", "main"),
    "fig09_class_hierarchy": ("main",),
    "fig10_consistency_over_time": ("main",),
    "fig11_example_trajectories": ("main",),
    "robustness_moves": ("moves",),
}
CONS_FIGURE_ROLES = {}  # the figures this config draws -> the roles of their ensembles

if study_enabled("consistency"):
    _problems = cons_plan.check(CONS, DATASETS, _cons_combos)
    if _problems:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(_problems))
    CONS_FIGURE_ROLES = {name: roles for name, sources in CONS_FIGURES.items()
                         if (roles := cons_plan.figure_roles(CONS, sources)) is not None}
    _cons_ensembles = cons_plan.role_ensembles(CONS)
    for _name, _roles in CONS_FIGURE_ROLES.items():
        register_figure(f"{CONS_FIGS}/{_name}.png",
                        [r for role in _roles for r in runs_of("consistency", **_cons_ensembles[role])])
    # The table the claims read (claims depend on FIGURES).
    FIGURES.append(f"{CONS_DIR}/summary.md")


rule consistency_scores:
    input:
        metrics=lambda wc: [r.metrics for r in runs_of("consistency", recipe=wc.recipe, dataset=wc.dataset,
                                                       arch=wc.arch)],
    output:
        f"{CONS_DIR}/scores/{{recipe}}/{{dataset}}/{{arch}}.h5",
    params:
        label=lambda wc: f"{wc.recipe}/{wc.dataset}/{wc.arch}",
        code=code_fingerprint("consistency_scores.py"),
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
        code=code_fingerprint("consistency_index.py"),
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
        code=code_fingerprint("consistency_classifiers.py"),
    log:
        "results/logs/consistency/classifiers.log",
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_classifiers.py"


rule consistency_analysis:
    input:
        unpack(lambda wc: {"classifiers": f"{CONS_DIR}/classifiers.h5", **cons_plan.role_scores(CONS),
                           **{f"index_{w}": p for w, p in cons_plan.move_files(CONS).items()}}),
    output:
        csv=f"{CONS_DIR}/summary.csv",
        md=f"{CONS_DIR}/summary.md",
        json=f"{CONS_DIR}/summary.json",
        **{name: cons_plan.figure_data_path(name) for name in CONS_FIGURE_ROLES},
    params:
        roles=lambda wc: sorted(cons_plan.role_scores(CONS)),
        moves=lambda wc: sorted(cons_plan.move_files(CONS)),
        cross_pairs=lambda wc: CONS["cross_pairs"],
        fig02_ensemble=lambda wc: CONS["fig02_ensemble"],
        options=lambda wc: CONS["figures"],
        figure_names=lambda wc: list(CONS_FIGURE_ROLES),
        code=code_fingerprint("consistency_analysis.py"),
    log:
        "results/logs/consistency/analysis.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_analysis.py"


rule consistency_figure:
    input:
        data=lambda wc: cons_plan.figure_data_path(wc.figure),
    output:
        figure_report(f"{CONS_FIGS}/{{figure}}.png"),
    params:
        caption=lambda wc, output: figure_caption(output),
        code=code_fingerprint("consistency_figure.py"),
    log:
        f"results/logs/consistency/figures/{{figure}}.log",
    wildcard_constraints:
        figure=_alternation(list(CONS_FIGURE_ROLES)),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/lossatlas.yaml"
    script:
        "../workflow_scripts/consistency_figure.py"
