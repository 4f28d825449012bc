"""Minimal recomputation: after a finished run of the tiny config, each change reruns exactly what it should.

One real snakemake run on tests/configs/tiny.yaml (plus a second architecture in its recipe, so that "only its
runs" means something) in a throwaway copy of the repository, for two figures of the universality study (which
need every run, its evaluation and the study's analysis: the whole chain, at a fraction of all_figures' cost),
then dry runs (``-n``) of the same targets after each change, asserting on the job list (rule and output of
every job): touching nothing reruns nothing; changing one
architecture's hyper-parameter reruns only its runs and their dependents; adding a seed trains only the new seed
block; changing a figure's drawing code reruns only that figure (not the other one);
changing a metric's code reruns evaluation and analyses but not training; changing training code reruns
nothing (documented in rules/train.smk: use --forcerun train). Code changes are made in the copy, never in the
repository, and undone after each test.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from lossatlas.config import expand_runs, validate_config

from .reliability_helpers import TINY_CONFIG, Job, copy_repo, dry_run_jobs, job_counts, snakemake

pytestmark = pytest.mark.slow

EXTRA_ARCH = "rel_mlp8"
FIGURE_MODULE = "workflow_scripts/lossatlas/figures/universality.py"
FIGURE_FUNCTION = "fig01_train_loss_vs_error"
TARGETS = [f"results/figures/universality/{name}.png" for name in (FIGURE_FUNCTION, "fig02_test_loss_vs_error")]
DATA_RULES = {"prepare_dataset", "derive_dataset", "download_dataset"}


def tiny_config(**edits) -> dict:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["architectures"][EXTRA_ARCH] = {"model": "mlp", "hidden": [8], "batchnorm": True}
    recipe = config["studies"]["universality"]["recipes"]["tiny"]
    recipe["architectures"] = [*recipe["architectures"], EXTRA_ARCH]
    # The universality study's default pair metrics include the l_0.5 error (Fig 9); make sure it is evaluated.
    lp = recipe.setdefault("eval", {}).setdefault("lp", [1, 2, "inf"])
    if 0.5 not in lp:
        lp.insert(0, 0.5)
    for edit in edits.values():
        edit(config)
    return config


def runs_of(config: dict) -> list:
    return expand_runs(validate_config(yaml.safe_load(yaml.safe_dump(config))))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("recompute")
    repo = copy_repo(root / "repo")
    config = tiny_config()
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    workdir = root / "work"
    proc = snakemake(workdir, *TARGETS, configfile=config_path, snakefile=repo / "Snakefile", timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return {"root": root, "repo": repo, "config": config, "config_path": config_path, "workdir": workdir}


def dry_run(finished: dict, config: dict | None = None) -> list[Job]:
    config_path = finished["config_path"]
    if config is not None:
        config_path = finished["root"] / "changed.yaml"
        config_path.write_text(yaml.safe_dump(config))
    proc = snakemake(finished["workdir"], "-n", *TARGETS, configfile=config_path,
                     snakefile=finished["repo"] / "Snakefile")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    jobs = dry_run_jobs(text)
    counts = job_counts(text)
    listed: dict[str, int] = {}
    for job in jobs:
        listed[job.rule] = listed.get(job.rule, 0) + 1
    assert listed == counts, f"job blocks {listed} disagree with the Job stats table {counts}"
    if not jobs:
        assert "Nothing to be done" in text, text[-3000:]
    return jobs


def outputs(jobs: list[Job], rule: str) -> set[str]:
    return {o for j in jobs if j.rule == rule for o in j.outputs}


def rules(jobs: list[Job]) -> set[str]:
    return {j.rule for j in jobs}


@contextmanager
def edited(path: Path, edit) -> Iterator[None]:
    original = path.read_text()
    try:
        path.write_text(edit(original))
        yield
    finally:
        path.write_text(original)


def add_line_to_function(source: str, function: str) -> str:
    """Insert a harmless statement at the top of ``function``'s body (a real code change)."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):  # after the docstring
        first = node.body[1]
    lines = source.splitlines(keepends=True)
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}_edited = True  # reliability test: a code change\n")
    return "".join(lines)


def test_touching_nothing_reruns_nothing(finished):
    assert dry_run(finished) == []


def test_changing_one_architecture_reruns_only_its_runs_and_their_dependents(finished):
    def widen(config):
        config["architectures"][EXTRA_ARCH]["hidden"] = [12]

    changed = tiny_config(widen=widen)
    jobs = dry_run(finished, changed)
    mine = [r for r in runs_of(changed) if r.arch == EXTRA_ARCH]
    assert mine and len(mine) < len(runs_of(changed))
    assert outputs(jobs, "train") == {r.checkpoints for r in mine}
    assert outputs(jobs, "evaluate") == {r.metrics for r in mine}
    assert not rules(jobs) & DATA_RULES
    assert rules(jobs) == {"train", "evaluate", "universality_analysis", "universality_figure"}
    assert outputs(jobs, "universality_figure") == set(TARGETS), "the figures depend on every run"


def test_adding_a_seed_trains_only_the_new_seed_block(finished):
    def add_seed(config):
        recipe = config["studies"]["universality"]["recipes"]["tiny"]
        recipe["seeds"] = [*recipe["seeds"], max(recipe["seeds"]) + 1]

    changed = tiny_config(add_seed=add_seed)
    before = {r.dir for r in runs_of(finished["config"])}
    new = [r for r in runs_of(changed) if r.dir not in before]
    assert new and all(len(r.seeds) == 1 for r in new), "block_size 2: the third seed is a block of its own"
    jobs = dry_run(finished, changed)
    assert outputs(jobs, "train") == {r.checkpoints for r in new}
    assert outputs(jobs, "evaluate") == {r.metrics for r in new}
    assert not rules(jobs) & DATA_RULES


def test_changing_a_figures_drawing_code_reruns_only_the_papers_figures(finished):
    # The fingerprint's unit is the module (lossatlas/fingerprint.py): every figure of the paper, nothing upstream.
    module = finished["repo"] / FIGURE_MODULE
    with edited(module, lambda s: add_line_to_function(s, FIGURE_FUNCTION)):
        jobs = dry_run(finished)
    assert rules(jobs) == {"universality_figure"}
    assert outputs(jobs, "universality_figure") == set(TARGETS)
    assert dry_run(finished) == [], "undoing the edit restores the finished state"


def test_changing_a_metrics_code_reruns_evaluation_and_analyses_but_not_training(finished):
    module = finished["repo"] / "workflow_scripts/lossatlas/metrics.py"
    with edited(module, lambda s: s + "\n\n_RELIABILITY_PROBE = 1  # a change to the metric code\n"):
        jobs = dry_run(finished)
    all_runs = runs_of(finished["config"])
    assert outputs(jobs, "evaluate") == {r.metrics for r in all_runs}
    assert "train" not in rules(jobs) and not rules(jobs) & DATA_RULES
    assert "universality_analysis" in rules(jobs) and "universality_figure" in rules(jobs)


def test_changing_training_code_reruns_nothing(finished):
    """Documented choice (rules/train.smk): training is the expensive part; retrain with --forcerun train."""
    module = finished["repo"] / "workflow_scripts/lossatlas/training.py"
    with edited(module, lambda s: s + "\n\n_RELIABILITY_PROBE = 1  # a change to the training code\n"):
        assert dry_run(finished) == []


def test_a_truncated_metrics_file_fails_the_analysis_and_leaves_no_analysis_output(finished, tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(finished["workdir"], workdir, symlinks=True)
    run = runs_of(finished["config"])[0]
    metrics = workdir / run.metrics
    data = metrics.read_bytes()
    metrics.write_bytes(data[: len(data) // 2])
    proc = snakemake(workdir, *TARGETS, configfile=finished["config_path"], snakefile=finished["repo"] / "Snakefile")
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Error in rule universality_analysis" in log, log[-4000:]
    assert "truncated file" in log, "the error must say what is wrong with the input"
    assert run.metrics in log, "snakemake's error report names the job's inputs"
    assert not list((workdir / "results/analysis/universality").glob("*.*")), "a failed analysis left outputs"
    assert set(job_counts(log)) <= {"universality_analysis", "universality_figure"}, \
        "only the jobs downstream of the damaged file may run (no retraining, no re-evaluation)"
