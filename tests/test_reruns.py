"""Code edits rerun what they reach: on a finished tiny run of all five papers (tests/configs/tiny_papers.yaml, in
a throwaway copy of the repository), each code edit is dry-run against ``all_figures``.

What each edit must schedule comes from the code closures of the rules' entry scripts (lossatlas/fingerprint.py):
every job of every rule whose script reaches the edited file, and at most those rules and what runs downstream of
them. The training exemption: train has no fingerprint, and a rule upstream of training other than the dataset
rules answers only for the code the train job does not run, so training code edits retrain nothing (an edit can
retrain only through what training reads: rebuilt data, a learning rate probed anew). A file that
no fingerprinted job reaches schedules nothing. Every library module is edited in turn (the list is the package's
files, so a new module is covered without touching this test), plus a sample of functions and module constants.
Dry runs use ``--rerun-triggers params``: the fingerprints in the rules' params are what is under test.
"""

from __future__ import annotations

import ast
import queue
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lossatlas.fingerprint import ENTRY_SCRIPTS, code_closure

from .conftest import REPO
from .reliability_helpers import copy_repo, job_counts, snakemake

pytestmark = pytest.mark.slow

CONFIG = REPO / "tests" / "configs" / "tiny_papers.yaml"
LIBRARY = "workflow_scripts/lossatlas"
# Rules without a code fingerprint, on purpose: training (GPU-days; `--forcerun train`) and raw downloads (their
# files are verified against the official checksums, whatever the code).
EXEMPT_RULES = {"train", "download_dataset"}
DATA_RULES = {"prepare_dataset", "derive_dataset"}
PROBE = "\n_FINGERPRINT_PROBE = 1  # tests/test_reruns.py: a code edit\n"

LIBRARY_MODULES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / LIBRARY).rglob("*.py"))
# (file, function) edits: a statement at the top of the function's body.
FUNCTION_SAMPLES = [
    ("figures/loss_patterns.py", "_stats"),
    ("analysis/loss_patterns.py", "read_search"),
    ("analysis/consistency.py", "_n"),
    ("figures/embedding.py", "draw"),
    ("figures/universality.py", "draw"),
    ("analysis/consistency_plan.py", "index_plan"),
    ("analysis/consistency_plan.py", "role_scores"),
]
# (file, constant) edits: the constant's definition rewritten to an equal value.
CONSTANT_SAMPLES = [
    ("figures/common.py", "DPI"),
    ("figures/consistency.py", "PHASE_NAMES"),
    ("figures/embedding.py", "BLUE"),
    ("analysis/consistency_scores.py", "SPLITS"),
    ("figures/universality.py", "LOSS_LABEL"),
]


# ---------------------------------------------------------------------------------------------------- edits


def append_probe(source: str) -> str:
    return source + PROBE


def edit_function(function: str):
    """An edit that puts a statement at the top of ``function``'s body (after its docstring)."""

    def edit(source: str) -> str:
        tree = ast.parse(source)
        node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
        assert node is not None, f"sample function {function} is gone: update FUNCTION_SAMPLES"
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(node.body) > 1:
            first = node.body[1]
        lines = source.splitlines(keepends=True)
        lines.insert(first.lineno - 1, f"{' ' * first.col_offset}_fingerprint_probe = 1\n")
        return "".join(lines)

    return edit


def edit_constant(name: str):
    """An edit that rewrites the module constant ``name = v`` as ``name = (v) if True else None``."""

    def edit(source: str) -> str:
        tree = ast.parse(source)
        node = next((n for n in tree.body if isinstance(n, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)), None)
        assert node is not None, f"sample constant {name} is gone: update CONSTANT_SAMPLES"
        value = node.value
        lines = [line.encode() for line in source.splitlines(keepends=True)]  # AST offsets count UTF-8 bytes
        end, start = value.end_lineno - 1, value.lineno - 1
        lines[end] = lines[end][: value.end_col_offset] + b") if True else None" + lines[end][value.end_col_offset:]
        lines[start] = lines[start][: value.col_offset] + b"(" + lines[start][value.col_offset:]
        return b"".join(lines).decode()

    return edit


# ------------------------------------------------------------------------------------------- expectations


def rule_scripts(repo: Path) -> dict[str, tuple[str, bool]]:
    """Rule name -> (its entry script in workflow_scripts/, whether its fingerprint leaves out the train job's
    code), read from rules/*.smk."""
    out = {}
    for smk in sorted((repo / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            script = re.search(r"workflow_scripts/(\w+\.py)", body)
            if script:
                out[name] = (script.group(1), 'exclude_code_of="train.py"' in body)
    return out


def rule_graph(repo: Path, workdir: Path) -> dict[str, set[str]]:
    """Rule -> the rules that consume its outputs (from ``snakemake --rulegraph``)."""
    proc = snakemake(workdir, "--rulegraph", "dot", "all_figures", configfile=CONFIG, snakefile=repo / "Snakefile",
                     env=_env(repo))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', proc.stdout, flags=re.MULTILINE))
    consumers: dict[str, set[str]] = {name: set() for name in names.values()}
    for src, dst in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, flags=re.MULTILINE):
        consumers[names[src]].add(names[dst])
    return consumers


def downstream(rules: set[str], consumers: dict[str, set[str]]) -> set[str]:
    out, todo = set(rules), list(rules)
    while todo:
        for nxt in consumers.get(todo.pop(), ()):
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return out


def upstream(rules: set[str], consumers: dict[str, set[str]]) -> set[str]:
    producers: dict[str, set[str]] = {}
    for rule, users in consumers.items():
        for user in users:
            producers.setdefault(user, set()).add(rule)
    return downstream(rules, producers)


def closure(script: str) -> set[str]:
    return {p.relative_to(ENTRY_SCRIPTS).as_posix() for p in code_closure(script)}


def reaching_rules(module: str, closures: dict[str, set[str]]) -> set[str]:
    """Fingerprinted rules whose entry script reaches ``module`` (a path relative to workflow_scripts/)."""
    return {rule for rule, files in closures.items() if module in files}


def _env(repo: Path) -> dict[str, str]:
    # Jobs import the copy's library (the venv's editable install may point at another checkout).
    return {"PYTHONPATH": str(repo / "workflow_scripts")}


# ----------------------------------------------------------------------------------------------- fixture

# The dry runs are independent: two at a time, each in its own copy of the repository, against the one finished
# run (a dry run only reads the working directory).
DRY_RUN_WORKERS = 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """A finished all_figures run of the tiny five-paper config in a copy of the repository."""
    root = tmp_path_factory.mktemp("reruns")
    repos = [copy_repo(root / f"repo{i}") for i in range(DRY_RUN_WORKERS)]  # identical copies, made together
    repo = repos[0]
    workdir = root / "work"
    proc = snakemake(workdir, "all_figures", configfile=CONFIG, snakefile=repo / "Snakefile", timeout=1800,
                     env=_env(repo))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    totals = job_counts(proc.stdout + proc.stderr)
    assert totals, "the run listed no jobs"
    scripts = rule_scripts(repo)
    consumers = rule_graph(repo, workdir)
    train_code = closure(scripts["train"][0])
    data_code = set().union(*(closure(scripts[r][0]) for r in DATA_RULES if r in scripts))
    # The policy: whatever feeds training (other than the data, whose code edits do retrain) answers only for code
    # training does not run.
    feeds_training = upstream({"train"}, consumers) - DATA_RULES - {"train"}
    unexempt = sorted(r for r in feeds_training if r in scripts and not scripts[r][1]
                      and (closure(scripts[r][0]) & train_code) - data_code)
    assert not unexempt, f"rules upstream of training must fingerprint without the train job's code: {unexempt}"
    closures = {rule: closure(script) - (train_code if excludes_training else set())
                for rule, (script, excludes_training) in scripts.items()
                if rule in totals and rule not in EXEMPT_RULES}
    assert closures, "no fingerprinted rule found in rules/*.smk"
    return {"repos": repos, "workdir": workdir, "totals": totals, "closures": closures, "consumers": consumers,
            "train_code": train_code, "feeds_training": feeds_training | (DATA_RULES & set(totals)),
            "data_code": set().union(*(closures[r] for r in DATA_RULES if r in closures))}


def edit_cases(finished: dict) -> dict[str, dict[str, object]]:
    """Every edit the tests check, by test id: library file -> edit function."""
    reached = {m for m in LIBRARY_MODULES
               if reaching_rules(m.removeprefix("workflow_scripts/"), finished["closures"])}
    unreached = {m.removeprefix(f"{LIBRARY}/"): append_probe for m in LIBRARY_MODULES if m not in reached}
    unreached["_fingerprint_probe_module.py"] = append_probe
    training = {m.removeprefix("lossatlas/"): append_probe for m in finished["train_code"] - finished["data_code"]
                if m.startswith("lossatlas/")}
    return {
        "nothing": {},
        **{f"module {m}": {m.removeprefix(f"{LIBRARY}/"): append_probe} for m in sorted(reached)},
        **{f"function {m}:{f}": {m: edit_function(f)} for m, f in FUNCTION_SAMPLES},
        **{f"constant {m}:{c}": {m: edit_constant(c)} for m, c in CONSTANT_SAMPLES},
        "unreached": unreached,
        "training": training,
        "docstring": {"metrics.py": edit_docstring_and_comment},
    }


@pytest.fixture(scope="module")
def outcomes(finished) -> dict[str, dict[str, int]]:
    """Jobs per rule that each edit case schedules (dry runs of all_figures), by case id."""
    cases = edit_cases(finished)
    free = queue.Queue()
    for repo in finished["repos"]:
        free.put(repo)

    def run(edits):
        repo = free.get()
        try:
            return scheduled_after(repo, finished["workdir"], edits)
        finally:
            free.put(repo)

    with ThreadPoolExecutor(max_workers=len(finished["repos"])) as pool:
        futures = {name: pool.submit(run, edits) for name, edits in cases.items()}
    return {name: future.result() for name, future in futures.items()}


def scheduled_after(repo: Path, workdir: Path, edits: dict[str, object]) -> dict[str, int] | str:
    """Apply ``edits`` (library file -> edit function) in ``repo``, dry-run all_figures, restore; the jobs per
    rule, or the output of a failed dry run."""
    originals = {}
    try:
        for rel, edit in edits.items():
            path = repo / LIBRARY / rel
            originals[path] = path.read_text() if path.exists() else None
            path.write_text(edit(originals[path] or ""))
        proc = snakemake(workdir, "-n", "--nolock", "--quiet", "rules", "--rerun-triggers=params",
                         "all_figures", configfile=CONFIG, snakefile=repo / "Snakefile", env=_env(repo))
    finally:
        for path, text in originals.items():
            if text is None:
                path.unlink()
            else:
                path.write_text(text)
    text = proc.stdout + proc.stderr
    counts = job_counts(text)
    if proc.returncode != 0 or not (counts or "Nothing to be done" in text):
        return text[-4000:]
    return counts


def scheduled(outcomes: dict, case: str) -> dict[str, int]:
    counts = outcomes[case]
    assert isinstance(counts, dict), f"the dry run of case {case!r} failed:\n{counts}"
    return counts


def check_edit(finished: dict, outcomes: dict, case: str, rel: str) -> None:
    """The edit of ``rel`` schedules every job of the rules it reaches and nothing beyond them and downstream."""
    direct = reaching_rules(f"lossatlas/{rel}", finished["closures"])
    counts = scheduled(outcomes, case)
    missing = {rule: f"{counts.get(rule, 0)} of {finished['totals'][rule]}" for rule in direct
               if counts.get(rule, 0) != finished["totals"][rule]}
    assert not missing, f"editing {rel} left jobs of the rules that run it unscheduled: {missing}"
    allowed = downstream(direct, finished["consumers"])
    extra = set(counts) - allowed
    assert not extra, f"editing {rel} scheduled rules that do not reach it (nor depend on one): {sorted(extra)}"
    if "train" in counts:  # only through what training reads: rebuilt data, a learning rate probed anew
        assert counts.keys() & finished["feeds_training"], f"editing {rel} retrains without rebuilding its inputs"


def edit_docstring_and_comment(source: str) -> str:
    """A module's docstring and a comment edited: not code."""
    doc_line = ast.parse(source).body[0].lineno - 1
    lines = source.splitlines(keepends=True)
    lines[doc_line] = lines[doc_line].replace('"""', '"""Edited. ', 1)
    return "# tests/test_reruns.py: a comment\n" + "".join(lines)


# ------------------------------------------------------------------------------------------------- tests


def test_finished_run_schedules_nothing(outcomes):
    assert scheduled(outcomes, "nothing") == {}


@pytest.mark.parametrize("module", [m.removeprefix(f"{LIBRARY}/") for m in LIBRARY_MODULES])
def test_module_edit_reruns_the_jobs_that_reach_it(finished, outcomes, module):
    if not reaching_rules(f"lossatlas/{module}", finished["closures"]):
        pytest.skip("no fingerprinted job reaches it: covered by test_unreached_modules_schedule_nothing")
    check_edit(finished, outcomes, f"module {LIBRARY}/{module}", module)


def test_unreached_modules_schedule_nothing(outcomes):
    """Modules no job runs (parse-time helpers, training-only code) and a new module, edited at once: editing more
    files can only change more fingerprints, so nothing scheduled for all means nothing for each."""
    assert scheduled(outcomes, "unreached") == {}


def test_training_code_edits_retrain_nothing(finished, outcomes):
    """Every module the train job runs that no dataset rule runs, edited at once: no training, no data rebuilt
    (edits only add changed fingerprints, so nothing for all means nothing for each)."""
    assert "training.py" in edit_cases(finished)["training"]
    counts = scheduled(outcomes, "training")
    assert not counts.keys() & {"train", *DATA_RULES}, f"editing the training code retrains: {counts}"


@pytest.mark.parametrize(("module", "function"), FUNCTION_SAMPLES)
def test_function_edit_reruns_the_jobs_that_reach_it(finished, outcomes, module, function):
    check_edit(finished, outcomes, f"function {module}:{function}", module)


@pytest.mark.parametrize(("module", "constant"), CONSTANT_SAMPLES)
def test_constant_edit_reruns_the_jobs_that_reach_it(finished, outcomes, module, constant):
    check_edit(finished, outcomes, f"constant {module}:{constant}", module)


def test_docstring_and_comment_edits_schedule_nothing(finished, outcomes):
    """A reached module's docstring and comments are not code: editing them reruns nothing."""
    assert reaching_rules("lossatlas/metrics.py", finished["closures"])
    assert scheduled(outcomes, "docstring") == {}


def test_newer_entry_scripts_rerun_nothing(finished, outcomes):
    """A checkout or `git pull` gives entry scripts new file times: with the workflow's own rerun triggers
    (profiles/default drops Snakemake's script-mtime trigger; the fingerprints cover the scripts' code) that
    reruns nothing, so it retrains nothing. (After the edit cases: it leaves the scripts newer.)"""
    repo = finished["repos"][0]
    for script in (repo / "workflow_scripts").glob("*.py"):
        script.touch()
    proc = snakemake(finished["workdir"], "all_figures", "-n", "--quiet", "rules", configfile=CONFIG,
                     snakefile=repo / "Snakefile", env=_env(repo))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert job_counts(text) == {}, text[-4000:]
