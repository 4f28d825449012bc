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


def role_ensembles(study: dict) -> dict[str, dict]:
    """Every ensemble the table and figures read, by role: the named ensembles, 'hard_final',
    'random_subset' and 'move_<which>'."""
    main = ensemble(study, "main")
    roles = dict(study["ensembles"])
    hard = study.get("hard_dataset")
    if hard:
        roles["hard_final"] = {"recipe": hard["recipe"], "dataset": hard["datasets"][-1], "arch": main["arch"]}
        roles["random_subset"] = {"recipe": hard["recipe"], "dataset": hard["random_dataset"], "arch": main["arch"]}
    moves = study.get("moves")
    if moves:
        for which, name in moves["datasets"].items():
            roles[f"move_{which}"] = {"recipe": moves["recipe"], "dataset": name, "arch": main["arch"]}
    return roles


def role_scores(study: dict) -> dict[str, str]:
    """The scores file of every role (:func:`role_ensembles`)."""
    return {role: scores_path(ens) for role, ens in role_ensembles(study).items()}


def move_files(study: dict) -> dict[str, str]:
    moves = study.get("moves")
    return {which: index_path(name) for which, name in moves["datasets"].items()} if moves else {}


def figure_roles(study: dict, sources: tuple[str, ...]) -> list[str] | None:
    """The roles of the ensembles a figure is drawn from, given its sources in rules/consistency.smk: role
    names, 'pair' (the first of ``cross_pairs``), 'fig02_ensemble' or 'moves' (every moved dataset). None when
    the study lacks one of them (no hard dataset, no moves): the figure is not drawn."""
    roles: list[str] = []
    for source in sources:
        if source == "pair":
            roles += list(study["cross_pairs"][0])
        elif source == "fig02_ensemble":
            roles.append(study["fig02_ensemble"])
        elif source == "moves":
            if not study.get("moves"):
                return None
            roles += [f"move_{w}" for w in study["moves"]["datasets"]]
        else:
            roles.append(source)
    available = role_ensembles(study)
    return roles if all(r in available for r in roles) else None


def figure_data_path(figure: str) -> str:
    """What the analysis writes for ``figure`` and the figure job reads."""
    return f"{ANALYSIS_DIR}/figure_data/{figure}.h5"


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
