"""The profiles name only rules that exist, and `--profile slurm` resolves from the repository root."""

from __future__ import annotations

import re

import yaml

from .conftest import REPO


def workflow_rules() -> set[str]:
    names = set()
    for smk in (REPO / "rules").glob("*.smk"):
        names |= set(re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M))
    return names


def test_slurm_profile_names_existing_rules():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    rules = workflow_rules()
    grouped = {entry.split("=")[0] for entry in profile["groups"]}
    assert grouped <= rules, grouped - rules
    assert set(profile["set-resources"]) <= rules
    assert profile["executor"] == "slurm"
    assert profile["set-resources"]["train"]["gres"].startswith("gpu")


def test_profile_name_slurm_resolves_from_the_repository_root():
    link = REPO / "slurm"
    assert link.is_symlink() and link.resolve() == (REPO / "profiles" / "slurm").resolve()
    assert not (REPO / "profiles" / "default").exists(), "snakemake would apply a profiles/default silently"
