"""The profiles name only rules that exist, `--profile slurm` resolves from the repository root, and the SLURM
profile builds the DAG of every shipped config (job groups that a DAG path leaves and re-enters fail here)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .conftest import REPO, VENV_BIN
from .docs_commands import distinct_checks, dry_run_args
from .slurm_plugin import GPU_RULES, check_profile_dry_run, dry_run_env

PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
# configs/paper.yaml is the profile's own configfile: `snakemake -n --profile slurm all_figures` covers it.
SHIPPED_CONFIGS = ["config.yaml", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*.yaml")
                                          if p.name != "paper.yaml")]


def workflow_rules() -> set[str]:
    names = set()
    for smk in (REPO / "rules").glob("*.smk"):
        names |= set(re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M))
    return names


def profile_dry_run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(VENV_BIN / "snakemake"), "-n", "--profile", "slurm", "--directory", str(tmp_path), *args]
    return subprocess.run(cmd, cwd=REPO, env=dry_run_env(), capture_output=True, text=True)


def test_slurm_profile_names_existing_rules():
    rules = workflow_rules()
    grouped = {entry.split("=")[0] for entry in PROFILE["groups"]}
    assert grouped <= rules, grouped - rules
    assert set(PROFILE["set-resources"]) <= rules, set(PROFILE["set-resources"]) - rules
    assert set(PROFILE["set-threads"]) <= rules, set(PROFILE["set-threads"]) - rules
    assert PROFILE["executor"] == "slurm"


def test_every_network_rule_asks_for_a_gpu_and_the_audit_counts_it():
    from lossatlas.audit import GPU_JOB_RULES

    gpu = {rule for rule, res in PROFILE["set-resources"].items() if str(res.get("gres", "")).startswith("gpu")}
    assert gpu == GPU_RULES
    assert set(PROFILE["set-threads"]) == GPU_RULES
    assert {rule for rule, _ in GPU_JOB_RULES.values()} | {"train", "evaluate"} == GPU_RULES


def test_profile_name_slurm_resolves_from_the_repository_root():
    link = REPO / "slurm"
    assert link.is_symlink() and link.resolve() == (REPO / "profiles" / "slurm").resolve()



def test_the_workflow_profile_only_sets_the_rerun_triggers():
    # Snakemake applies profiles/default/ to every run (beside any --profile): it holds exactly the rerun triggers
    # without the script-mtime code trigger (the rules' code fingerprints replace it), nothing else.
    default = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert default == {"rerun-triggers": ["mtime", "params", "input", "software-env"]}


def documented_configs() -> set[str | None]:
    """Configs whose `snakemake -n --profile slurm all_figures` a documented command runs (tests/
    test_docs_commands.py checks those with check_profile_dry_run: a DAG of the paper study costs seconds)."""
    out: set[str | None] = set()
    for command in distinct_checks():
        args = dry_run_args(command)
        if command.split()[0].endswith("snakemake") and args[:4] == ["-n", "--profile", "slurm", "all_figures"]:
            out.add(next((a.split("=", 1)[1] for a in args if a.startswith("--configfile=")), None))
    return out


def test_documented_commands_cover_the_profiles_own_study():
    assert None in documented_configs()


@pytest.mark.slow
@pytest.mark.parametrize("configfile", [c for c in SHIPPED_CONFIGS if c not in documented_configs()])
def test_slurm_profile_builds_the_dag_of_every_shipped_config(tmp_path, configfile):
    proc = profile_dry_run(tmp_path, "all_figures", f"--configfile={configfile}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    check_profile_dry_run(proc.stdout + proc.stderr, configfile)
