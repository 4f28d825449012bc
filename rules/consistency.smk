# Rules of the consistency study (figures are appended to FIGURES).
# Hacohen & Weinshall, All Neural Networks are Created Equal: ensemble scores per (recipe, dataset, arch),
# the index lists that derive the hard / moved datasets, the other classifiers, the table, one rule per figure.
# Library: lossatlas/analysis/consistency.py and lossatlas/figures/consistency.py.

CONS = study_config("consistency")
CONS_DIR = "results/analysis/consistency"
CONS_FIGS = "results/figures/consistency"
CONS_LIB = f"{LIB}/analysis/consistency.py"
CONS_FIG_LIB = f"{LIB}/figures/consistency.py"


def cons_code(*functions):
    """Hashes of the analysis functions a rule runs: editing the figure or table code does not re-derive the
    hard / moved datasets (which would retrain their ensembles)."""
    return [source_hash(CONS_LIB, f) for f in functions]


CONS_SCORE_CODE = cons_code("ensemble_scores", "load_ensemble", "consistency_scores", "consensus_scores",
                            "label_counts", "modal_labels", "pearson_bimodality", "training_epochs",
                            "speed_of_learning", "split_halves")
CONS_READ_CODE = cons_code("read_scores", "read_ids", "nearest_checkpoint", "pearson_r", "training_epochs")


def cons_scores_path(ens):
    """scores.h5 of an ensemble given as a dict {recipe, dataset, arch}."""
    return f"{CONS_DIR}/scores/{ens['recipe']}/{ens['dataset']}/{ens['arch']}.h5"


def cons_ensemble(name):
    try:
        return CONS["ensembles"][name]
    except KeyError:
        raise WorkflowError(f"studies.consistency.ensembles: no ensemble named '{name}'") from None


def cons_main_arch():
    return cons_ensemble("main")["arch"]


def cons_index_plan():
    """derived dataset name -> how its index file is made: kind, the parent ensemble, iteration."""
    plan = {}
    main = cons_ensemble("main")
    hard = CONS.get("hard_dataset")
    if hard:
        parent = main
        for i, name in enumerate(hard["datasets"], start=1):
            plan[name] = {"kind": "remove", "parent": parent, "iteration": i, "steps": len(hard["datasets"]),
                          "keep_fraction": hard["keep_fraction"]}
            parent = {"recipe": hard["recipe"], "dataset": name, "arch": main["arch"]}
    moves = CONS.get("moves")
    if moves:
        for which, name in moves["datasets"].items():
            plan[name] = {"kind": f"move_{which}", "parent": main, "fraction": moves["fraction"],
                          "seed": moves["seed"]}
    return plan


def cons_check_config():
    """Cross-key rules of the study that a schema cannot say, with the key path that breaks them."""
    where = "studies.consistency"
    for role in ("main", "linear", "small", "random_labels"):
        if role not in CONS["ensembles"]:
            raise WorkflowError(f"{where}.ensembles: the role '{role}' is missing")
    for name, ens in CONS["ensembles"].items():
        runs = runs_of("consistency", recipe=ens["recipe"], dataset=ens["dataset"], arch=ens["arch"])
        if not runs:
            raise WorkflowError(f"{where}.ensembles.{name}: recipe '{ens['recipe']}' trains no "
                                f"{ens['dataset']} x {ens['arch']}")
        if len({(r.optimizer, r.loss) for r in runs}) > 1:
            raise WorkflowError(f"{where}.ensembles.{name}: recipe '{ens['recipe']}' has several optimizers or "
                                "losses; an ensemble needs exactly one")
    for pair in CONS["cross_pairs"] + [[CONS["fig02_ensemble"], CONS["fig02_ensemble"]]]:
        for name in pair:
            cons_ensemble(name)
    main = cons_ensemble("main")
    for name, job in cons_index_plan().items():
        spec = DATASETS.get(name)
        if spec is None:
            raise WorkflowError(f"{where}: dataset '{name}' is not defined under datasets:")
        want = f"{CONS_DIR}/index/{name}.txt"
        if spec.get("index_file") != want:
            raise WorkflowError(f"datasets.{name}.index_file: must be {want} (computed by this study)")
        if spec.get("derive_from") != job["parent"]["dataset"]:
            raise WorkflowError(f"datasets.{name}.derive_from: must be '{job['parent']['dataset']}'")
    hard = CONS.get("hard_dataset")
    if hard:
        for name in hard["datasets"] + [hard["random_dataset"]]:
            if not runs_of("consistency", recipe=hard["recipe"], dataset=name, arch=main["arch"]):
                raise WorkflowError(f"{where}.recipes.{hard['recipe']}: must train {name} x {main['arch']}")
    moves = CONS.get("moves")
    if moves:
        for name in moves["datasets"].values():
            if not runs_of("consistency", recipe=moves["recipe"], dataset=name, arch=main["arch"]):
                raise WorkflowError(f"{where}.recipes.{moves['recipe']}: must train {name} x {main['arch']}")


def cons_role_scores():
    """Every scores file the table reads, by role."""
    main = cons_ensemble("main")
    roles = {name: cons_scores_path(ens) for name, ens in CONS["ensembles"].items()}
    hard = CONS.get("hard_dataset")
    if hard:
        roles["hard_final"] = cons_scores_path(
            {"recipe": hard["recipe"], "dataset": hard["datasets"][-1], "arch": main["arch"]})
        roles["random_subset"] = cons_scores_path(
            {"recipe": hard["recipe"], "dataset": hard["random_dataset"], "arch": main["arch"]})
    moves = CONS.get("moves")
    if moves:
        for which, name in moves["datasets"].items():
            roles[f"move_{which}"] = cons_scores_path({"recipe": moves["recipe"], "dataset": name,
                                                       "arch": main["arch"]})
    return roles


def cons_move_files():
    moves = CONS.get("moves")
    return {w: f"{CONS_DIR}/index/{n}.txt" for w, n in moves["datasets"].items()} if moves else {}


# figure name -> (inputs by role, the `figures:` options it uses)
def cons_figures():
    pair = CONS["cross_pairs"][0]
    figs = {
        "fig01_consistency_phases": ({"main": "main"}, ["phase_epochs"]),
        "fig02_consistency_epochs": ({"ensemble": CONS["fig02_ensemble"]}, ["fig02_epochs"]),
        "fig03_consensus_phases": ({"main": "main"}, ["phase_epochs"]),
        "fig04a_speed_two_halves": ({"main": "main"}, ["speed_split"]),
        "fig04b_speed_cross_arch": ({"a": pair[0], "b": pair[1]}, ["speed_split"]),
        "fig04cd_matched_epochs_2d": ({"a": pair[0], "b": pair[1]},
                                      ["matched_accuracies", "match_tolerance", "match_split", "saturation"]),
        "fig05ab_linear_vs_nonlinear": ({"main": "main", "linear": "linear"}, ["fig05_epochs"]),
        "fig05c_linear_consistency": ({"main": "main", "linear": "linear"}, []),
        "fig06a_adaboost_groups": ({"classifiers": None}, []),
        "fig06b_adaboost_vs_cnn": ({"classifiers": None}, []),
        "fig07_other_classifiers": ({"classifiers": None}, []),
        "fig08abc_random_labels": ({"random_labels": "random_labels"}, ["fig08_epochs"]),
        "fig09_class_hierarchy": ({"main": "main"}, ["phase_epochs", "fig09_epochs"]),
        "fig10_consistency_over_time": ({"main": "main"}, []),
        "fig11_example_trajectories": ({"main": "main"}, []),
    }
    if CONS.get("hard_dataset"):
        figs["fig08d_hard_dataset"] = ({"hard_final": "hard_final", "random_subset": "random_subset",
                                        "main": "main"}, [])
    if CONS.get("moves"):
        figs["robustness_moves"] = ({f"move_{w}": f"move_{w}" for w in CONS["moves"]["datasets"]}, [])
    return figs


# Editing one figure function reruns that figure; editing a shared drawing helper reruns them all.
CONS_FIG_HELPERS_HASH = "".join(
    source_hash(CONS_FIG_LIB, f)
    for f in ("_save", "_hist", "_epoch_label", "_b", "_phases", "_score_grid", "_scatter", "_read_classifiers")
)
CONS_FIG_ANALYSIS_CODE = CONS_READ_CODE + cons_code(
    "phase_checkpoints", "example_patterns", "match_epochs", "matched_pair_near", "consistency_histogram_2d",
    "bimodality_summary", "moved_accuracy")


def _cons_figure_inputs(wc):
    figs = cons_figures()
    if wc.figure not in figs:
        raise WorkflowError(f"{wc.figure} is not a figure of the consistency study")
    roles = cons_role_scores()
    inputs = {}
    for key, role in figs[wc.figure][0].items():
        inputs[key] = f"{CONS_DIR}/classifiers.h5" if role is None else roles[role]
    if wc.figure == "robustness_moves":
        inputs.update({f"index_{w}": p for w, p in cons_move_files().items()})
    return inputs


def _cons_figure_options(wc):
    opts = {k: CONS["figures"][k] for k in cons_figures()[wc.figure][1]}
    opts["roles"] = {k: v for k, v in cons_figures()[wc.figure][0].items()}
    return jsonable(opts)


if study_enabled("consistency"):
    cons_check_config()
    FIGURES.extend(f"{CONS_FIGS}/{name}.png" for name in cons_figures())
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
    script:
        "../workflow_scripts/consistency_scores.py"


rule consistency_index:
    input:
        scores=lambda wc: cons_scores_path(cons_index_plan()[wc.name]["parent"]),
        original=lambda wc: dataset_h5(cons_ensemble("main")["dataset"]),
    output:
        f"{CONS_DIR}/index/{{name}}.txt",
    params:
        job=lambda wc: jsonable({k: v for k, v in cons_index_plan()[wc.name].items() if k != "parent"}),
        code=cons_code("index_list", "removal_count", "rank_easiest_first", "moved_ids", "write_ids",
                       "_train_size", "read_scores"),
    log:
        f"results/logs/consistency/index/{{name}}.log",
    wildcard_constraints:
        name=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/consistency_index.py"


rule consistency_classifiers:
    input:
        dataset=lambda wc: dataset_h5(cons_ensemble("main")["dataset"]),
        scores=lambda wc: cons_scores_path(cons_ensemble("main")),
    output:
        f"{CONS_DIR}/classifiers.h5",
    params:
        classifiers=lambda wc: CONS["classifiers"],
        adaboost=lambda wc: CONS["adaboost"],
        cnn_epochs=lambda wc: CONS["figures"]["fig07_epochs"],
        code=cons_code("other_classifiers", "adaboost_staged_correct", "tercile_groups", "_classifier", "_flat")
        + CONS_READ_CODE,
    log:
        "results/logs/consistency/classifiers.log",
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow_scripts/consistency_classifiers.py"


rule consistency_summary:
    input:
        unpack(lambda wc: {"classifiers": f"{CONS_DIR}/classifiers.h5", **cons_role_scores(),
                           **{f"index_{w}": p for w, p in cons_move_files().items()}}),
    output:
        csv=f"{CONS_DIR}/summary.csv",
        md=f"{CONS_DIR}/summary.md",
        json=f"{CONS_DIR}/summary.json",
    params:
        roles=lambda wc: sorted(cons_role_scores()),
        moves=lambda wc: sorted(cons_move_files()),
        cross_pairs=lambda wc: CONS["cross_pairs"],
        code=cons_code("summary_table", "bimodality_summary", "moved_accuracy") + CONS_READ_CODE,
    log:
        "results/logs/consistency/summary.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/consistency_summary.py"


rule consistency_figure:
    input:
        unpack(_cons_figure_inputs),
    output:
        f"{CONS_FIGS}/{{figure}}.png",
    params:
        function=lambda wc: wc.figure,
        options=_cons_figure_options,
        code=lambda wc: [source_hash(CONS_FIG_LIB, wc.figure), CONS_FIG_HELPERS_HASH, *CONS_FIG_ANALYSIS_CODE],
    log:
        f"results/logs/consistency/figures/{{figure}}.log",
    wildcard_constraints:
        figure=r"(fig[0-9]+[a-z]*_|robustness_)[A-Za-z0-9_]+",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/consistency_figure.py"
