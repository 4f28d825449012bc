"""The consistency study's plan: index lists chained through the hard-dataset iterations, and config checks."""

from __future__ import annotations

import copy

import pytest

from lossatlas.analysis import consistency_plan as plan
from lossatlas.config import validate_config

STUDY = {
    "ensembles": {r: {"recipe": "main", "dataset": "d", "arch": a}
                  for r, a in (("main", "net"), ("linear", "lin"), ("small", "sm"))}
    | {"random_labels": {"recipe": "rl", "dataset": "d_rl", "arch": "net"}},
    "cross_pairs": [["main", "small"]],
    "fig02_ensemble": "main",
    "hard_dataset": {"recipe": "hard", "datasets": ["h1", "h2", "h3"], "random_dataset": "r20",
                     "keep_fraction": 0.2},
    "moves": {"recipe": "mv", "fraction": 0.025, "seed": 0, "datasets": {"easiest": "me", "hardest": "mh"}},
    "figures": {"phase_epochs": None, "speed_split": "test"},
}
DATASETS = {
    "d": {"source": "digits"},
    "h1": {"derive_from": "d", "index_file": plan.index_path("h1")},
    "h2": {"derive_from": "h1", "index_file": plan.index_path("h2")},
    "h3": {"derive_from": "h2", "index_file": plan.index_path("h3")},
    "me": {"derive_from": "d", "index_file": plan.index_path("me")},
    "mh": {"derive_from": "d", "index_file": plan.index_path("mh")},
}


def all_trained(recipe, dataset, arch):
    return {("sgd", "ce")}


def test_hard_iterations_chain_through_the_previous_ensemble():
    p = plan.index_plan(STUDY)
    assert p["h1"]["parent"] == STUDY["ensembles"]["main"]
    assert p["h3"]["parent"] == {"recipe": "hard", "dataset": "h2", "arch": "net"}
    assert [p[n]["iteration"] for n in ("h1", "h2", "h3")] == [1, 2, 3] and p["h2"]["steps"] == 3
    assert p["mh"]["kind"] == "move_hardest"
    roles = plan.role_scores(STUDY)
    assert roles["hard_final"] == plan.scores_path({"recipe": "hard", "dataset": "h3", "arch": "net"})
    assert plan.move_files(STUDY) == {"easiest": plan.index_path("me"), "hardest": plan.index_path("mh")}
    assert plan.role_ensembles(STUDY)["move_hardest"] == {"recipe": "mv", "dataset": "mh", "arch": "net"}
    assert plan.figure_roles(STUDY, ("moves",)) == ["move_easiest", "move_hardest"]
    assert plan.figure_roles(STUDY, ("pair",)) == ["main", "small"]
    assert plan.figure_roles(STUDY, ("fig02_ensemble", "linear")) == ["main", "linear"]
    without = {k: v for k, v in STUDY.items() if k not in ("hard_dataset", "moves")}
    assert plan.figure_roles(without, ("hard_final", "main")) is None  # no hard dataset: no Fig 8d
    assert plan.figure_roles(without, ("moves",)) is None


def test_check_accepts_a_consistent_study():
    assert plan.check(STUDY, DATASETS, all_trained) == []


def test_check_names_the_broken_keys():
    study = copy.deepcopy(STUDY)
    del study["ensembles"]["linear"]
    study["cross_pairs"].append(["main", "nope"])
    errs = plan.check(study, DATASETS, all_trained)
    assert "studies.consistency.ensembles: the role 'linear' is missing" in errs
    assert "studies.consistency.cross_pairs[1]: no ensemble named 'nope'" in errs
    datasets = copy.deepcopy(DATASETS)
    datasets["h2"]["derive_from"] = "d"
    datasets["me"]["index_file"] = "elsewhere.txt"
    errs = plan.check(STUDY, datasets, all_trained)
    assert any(e.startswith("datasets.h2.derive_from: must be 'h1'") for e in errs)
    assert any(e.startswith("datasets.me.index_file: must be") for e in errs)
    errs = plan.check(STUDY, DATASETS, lambda r, d, a: set() if d == "r20" else {("sgd", "ce")})
    assert errs == ["studies.consistency.recipes.hard: must train r20 x net (the main architecture)"]
    errs = plan.check(STUDY, DATASETS, lambda r, d, a: {("sgd", "ce"), ("adam", "ce")})
    assert any("several optimizers" in e for e in errs)


@pytest.mark.parametrize("path", ["config.yaml", "configs/consistency.yaml"])
def test_shipped_configs_pass_the_check(path):
    import yaml

    from lossatlas.config import REPO_ROOT, expand_runs, select_runs

    config = validate_config(yaml.safe_load((REPO_ROOT / path).read_text()))
    runs = expand_runs(config)

    def combos(recipe, dataset, arch):
        return {(r.optimizer, r.loss) for r in select_runs(runs, study="consistency", recipe=recipe,
                                                            dataset=dataset, arch=arch)}

    assert plan.check(config["studies"]["consistency"], config["datasets"], combos) == []
