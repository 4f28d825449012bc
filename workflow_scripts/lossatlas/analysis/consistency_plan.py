"""Which files the consistency study makes from which: the plan rules/consistency.smk reads.

Imported by the Snakefile at every start (also inside every cluster job), so standard library only. Every
function takes the study's config section (``studies.consistency``, schema defaults filled in).
"""

from __future__ import annotations

from collections.abc import Callable

ANALYSIS_DIR = "results/analysis/consistency"
FIGURE_DIR = "results/figures/consistency"
ROLES = ("main", "linear", "small", "random_labels")


class PlanError(ValueError):
    """A config problem of the consistency study, naming the key path."""


def scores_path(ens: dict) -> str:
    """scores.h5 of an ensemble {recipe, dataset, arch}."""
    return f"{ANALYSIS_DIR}/scores/{ens['recipe']}/{ens['dataset']}/{ens['arch']}.h5"


def index_path(dataset: str) -> str:
    """The index file (ids to remove or move) that derives ``dataset``."""
    return f"{ANALYSIS_DIR}/index/{dataset}.txt"


def ensemble(study: dict, name: str) -> dict:
    try:
        return study["ensembles"][name]
    except KeyError:
        raise PlanError(f"studies.consistency.ensembles: no ensemble named '{name}'") from None


def index_plan(study: dict) -> dict[str, dict]:
    """Derived dataset name -> how its index file is made: ``kind`` (remove | move_<which>), ``parent`` (the
    ensemble whose train-set speed of learning ranks the examples) and the kind's parameters.

    Hard dataset: iteration i removes from the dataset of iteration i−1 (the main dataset for i = 1), ranked by
    the ensemble trained on that dataset.
    """
    plan: dict[str, dict] = {}
    main = ensemble(study, "main")
    hard = study.get("hard_dataset")
    if hard:
        parent = main
        for i, name in enumerate(hard["datasets"], start=1):
            plan[name] = {"kind": "remove", "parent": parent, "iteration": i, "steps": len(hard["datasets"]),
                          "keep_fraction": hard["keep_fraction"]}
            parent = {"recipe": hard["recipe"], "dataset": name, "arch": main["arch"]}
    moves = study.get("moves")
    if moves:
        for which, name in moves["datasets"].items():
            plan[name] = {"kind": f"move_{which}", "parent": main, "fraction": moves["fraction"],
                          "seed": moves["seed"]}
    return plan


def role_scores(study: dict) -> dict[str, str]:
    """Every scores file the table and figures read, by role: the named ensembles, 'hard_final',
    'random_subset' and 'move_<which>'."""
    main = ensemble(study, "main")
    roles = {name: scores_path(ens) for name, ens in study["ensembles"].items()}
    hard = study.get("hard_dataset")
    if hard:
        roles["hard_final"] = scores_path({"recipe": hard["recipe"], "dataset": hard["datasets"][-1],
                                           "arch": main["arch"]})
        roles["random_subset"] = scores_path({"recipe": hard["recipe"], "dataset": hard["random_dataset"],
                                              "arch": main["arch"]})
    moves = study.get("moves")
    if moves:
        for which, name in moves["datasets"].items():
            roles[f"move_{which}"] = scores_path({"recipe": moves["recipe"], "dataset": name, "arch": main["arch"]})
    return roles


def move_files(study: dict) -> dict[str, str]:
    moves = study.get("moves")
    return {which: index_path(name) for which, name in moves["datasets"].items()} if moves else {}


def figures(study: dict) -> dict[str, tuple[dict, list[str]]]:
    """Figure name -> (input key -> role, None = classifiers.h5; the ``figures:`` options it uses)."""
    pair = study["cross_pairs"][0]
    figs: dict[str, tuple[dict, list[str]]] = {
        "fig01_consistency_phases": ({"main": "main"}, ["phase_epochs"]),
        "fig02_consistency_epochs": ({"ensemble": study["fig02_ensemble"]}, ["fig02_epochs"]),
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
    if study.get("hard_dataset"):
        figs["fig08d_hard_dataset"] = ({"hard_final": "hard_final", "random_subset": "random_subset",
                                        "main": "main"}, [])
    if study.get("moves"):
        figs["robustness_moves"] = ({f"move_{w}": f"move_{w}" for w in study["moves"]["datasets"]}, [])
    return figs


def figure_inputs(study: dict, figure: str) -> dict[str, str]:
    figs = figures(study)
    if figure not in figs:
        raise PlanError(f"{figure} is not a figure of the consistency study")
    roles = role_scores(study)
    inputs = {key: f"{ANALYSIS_DIR}/classifiers.h5" if role is None else roles[role]
              for key, role in figs[figure][0].items()}
    if figure == "robustness_moves":
        inputs.update({f"index_{w}": p for w, p in move_files(study).items()})
    return inputs


def figure_options(study: dict, figure: str) -> dict:
    roles, keys = figures(study)[figure]
    return {**{k: study["figures"][k] for k in keys}, "roles": dict(roles)}


def check(study: dict, datasets: dict, combos: Callable[[str, str, str], set]) -> list[str]:
    """Cross-key rules of the study that a schema cannot say, as 'key.path: problem' lines.

    ``combos(recipe, dataset, arch)`` returns the (optimizer, loss) pairs of the study's runs of that triple.
    """
    where = "studies.consistency"
    errs = [f"{where}.ensembles: the role '{r}' is missing" for r in ROLES if r not in study["ensembles"]]
    for name, ens in study["ensembles"].items():
        found = combos(ens["recipe"], ens["dataset"], ens["arch"])
        if not found:
            errs.append(f"{where}.ensembles.{name}: recipe '{ens['recipe']}' trains no "
                        f"{ens['dataset']} x {ens['arch']}")
        elif len(found) > 1:
            errs.append(f"{where}.ensembles.{name}: recipe '{ens['recipe']}' has several optimizers or losses; "
                        "an ensemble needs exactly one")
    for i, pair in enumerate(study["cross_pairs"]):
        errs += [f"{where}.cross_pairs[{i}]: no ensemble named '{n}'" for n in pair if n not in study["ensembles"]]
    if study["fig02_ensemble"] not in study["ensembles"]:
        errs.append(f"{where}.fig02_ensemble: no ensemble named '{study['fig02_ensemble']}'")
    if errs:
        return errs
    main = ensemble(study, "main")
    for name, job in index_plan(study).items():
        spec = datasets.get(name)
        if spec is None:
            errs.append(f"{where}: dataset '{name}' is not defined under datasets:")
            continue
        if spec.get("index_file") != index_path(name):
            errs.append(f"datasets.{name}.index_file: must be {index_path(name)} (computed by this study)")
        if spec.get("derive_from") != job["parent"]["dataset"]:
            errs.append(f"datasets.{name}.derive_from: must be '{job['parent']['dataset']}'")
    trained = []
    if study.get("hard_dataset"):
        hard = study["hard_dataset"]
        trained += [(hard["recipe"], n) for n in hard["datasets"] + [hard["random_dataset"]]]
    if study.get("moves"):
        trained += [(study["moves"]["recipe"], n) for n in study["moves"]["datasets"].values()]
    for recipe, name in trained:
        if not combos(recipe, name, main["arch"]):
            errs.append(f"{where}.recipes.{recipe}: must train {name} x {main['arch']} (the main architecture)")
    return errs
