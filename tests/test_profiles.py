"""The profiles name only rules that exist, `--profile slurm` resolves from the repository root, and the SLURM
profile builds the DAG of every shipped config (job groups that a DAG path leaves and re-enters fail here)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .conftest import REPO, VENV_BIN
from .slurm_plugin import dry_run_env

PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
# Every rule that trains or evaluates networks (the GPU jobs); a new one belongs here and in the profile.
GPU_RULES = {"train", "evaluate", "lr_probe", "lp_search", "lp_bn_run", "nl_postprocess", "embedding_analysis"}
# configs/paper.yaml is the profile's own configfile: `snakemake -n --profile slurm all_figures` covers it.
SHIPPED_CONFIGS = ["config.yaml", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*.yaml")
                                          if p.name != "paper.yaml")]


def workflow_rules() -> set[str]:
    names = set()
    for smk in (REPO / "rules").glob("*.smk"):
        names |= set(re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M))
    return names


def dry_run_jobs(text: str) -> list[tuple[str, str]]:
    """(rule, resources line) of every job a dry run lists."""
    return re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", text, re.M)


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
    assert not (REPO / "profiles" / "default").exists(), "snakemake would apply a profiles/default silently"


def check_profile_dry_run(out: str, configfile: str | None) -> None:
    """The output of `snakemake -n --profile slurm all_figures [--configfile=X]`: the config used, and a GPU for
    exactly the jobs of GPU_RULES; without a configfile, the paper-scale study of all five papers."""
    used = re.search(r"Config file\(s\): \[PosixPath\('([^']+)'\)\]", out)
    assert used and used.group(1) == str(REPO / (configfile or "configs/paper.yaml")), out[-2000:]
    jobs = dry_run_jobs(out)
    assert jobs, out[-2000:]
    for rule, resources in jobs:
        on_gpu = "slurm_partition=gpu" in resources and "gres=gpu:1" in resources
        assert on_gpu == (rule in GPU_RULES), (rule, resources)
    if configfile is None:
        assert len(jobs) > 1000
        assert GPU_RULES <= {rule for rule, _ in jobs}


def documented_configs() -> set[str | None]:
    """Configs whose `snakemake -n --profile slurm all_figures` a documented command runs (tests/
    test_docs_commands.py checks those with check_profile_dry_run; a DAG of the paper study costs seconds)."""
    from .test_docs_commands import distinct_checks, dry_run_args

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
